"""In-the-wild inference: 3D poses for one person's detected 2D keypoints, with no 3D ground
truth and no known camera.

The steps (docs/method.md, with the parts that need ground truth replaced):
1. COCO-17 keypoints (pixels) -> the model's input layout ('coco': unchanged, 'h36m': mapped),
   normalised with the image size.
2. The clip is cut into the model's F-frame evaluation windows (the last aligned to the end,
   short clips padded) and H hypotheses are sampled over K DDIM iterations with flip
   test-time augmentation; windows are reassembled per frame.
3. JPMA without ground truth: a pinhole camera (focal = 0.9 x the larger image side unless given), the root
   trajectory by least squares from the mean hypothesis and the 2D, then per frame and joint
   the hypothesis joint whose reprojection is nearest the 2D (mapped to Human3.6M joints,
   the layout of the 3D output).

lift_keypoints runs this on a keypoint file's person; lift_video first decodes a video, runs
a 2D detector on every frame (detectors.py), links the detections into people and lifts each.

The result types are in result.py, the checks of the inputs (layout, image size) in inputs.py,
the camera (guessed intrinsics, the virtual training camera) in root_depth.py, the animation
and timing summary in display.py.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..inference import aggregation as agg
from ..geometry.camera import normalize_screen_coordinates
from ..geometry.coco import coco_to_h36m, keypoints_for_model
from ..inference.core import InferenceCore
from ..uncertainty.factors import DEFAULT_COVERAGE, hypothesis_spread, radius
from ..storage.video import VideoFrames, probe_video
from .detectors import Detector, make_detector
from .inputs import check_frame_size
from .keypoints import Keypoints2D
from .people import people_from_detections
from .result import PeopleResult, VideoDetections, WildResult
from .root_depth import default_intrinsics, estimate_root_trajectory, to_virtual_camera


# ---------------------------------------------------------------------------- sampling

def aggregate_without_ground_truth(hypotheses: np.ndarray, target_2d: np.ndarray, cam: np.ndarray,
                                   confidence: np.ndarray | None = None, chunk: int = 1024):
    """Every aggregation mode that needs no ground truth (common.inference.aggregation.LIFTING_MODES:
    JPMA and the others), where neither the root trajectory nor the 3D pose is known.

    hypotheses (N, K, H, J, 3) root-relative metres; target_2d (N, J, 2) normalised, in the
    3D output's joint layout; cam (9,) normalised intrinsics; confidence (N, J) optional
    weights of the trajectory fit. The trajectory (N, 1, 3) is fitted once, to the mean of the
    last iteration's hypotheses, and used for every iteration. Returns ({mode: poses
    (N, K, J, 3)}, trajectory (N, 1, 3)).
    """
    cam_t = torch.from_numpy(np.asarray(cam, dtype=np.float32))
    poses = {}
    traj = np.empty((len(hypotheses), 1, 3), np.float32)
    for start in range(0, len(hypotheses), chunk):                     # bounded memory on long videos
        part = slice(start, start + chunk)                             # (the fit is per frame)
        traj[part] = estimate_root_trajectory(hypotheses[part, -1].mean(axis=1), target_2d[part], cam,
                                              None if confidence is None else confidence[part])
        hyps = torch.from_numpy(hypotheses[part]).permute(1, 2, 0, 3, 4)[None]       # (1, K, H, n, J, 3)
        x2d = torch.from_numpy(np.asarray(target_2d[part], dtype=np.float32))[None]  # (1, n, J, 2)
        chosen = agg.aggregate(hyps, None, x2d, torch.from_numpy(traj[part])[None], cam_t)  # mode -> (1, K, n, J, 3)
        for mode, p in chosen.items():
            if mode not in poses:
                poses[mode] = np.empty(hypotheses.shape[:2] + hypotheses.shape[3:], np.float32)
            poses[mode][part] = p[0].permute(1, 0, 2, 3).numpy()
    return poses, traj


def joint_uncertainty(hypotheses: np.ndarray, j_agg: np.ndarray, calibration=None,
                      coverage: float = DEFAULT_COVERAGE) -> np.ndarray | None:
    """(N, J) mm: the uncertainty radius of each J-Agg joint (N, J, 3) from the last
    iteration's hypotheses (N, K, H, J, 3); None for a single hypothesis."""
    if hypotheses.shape[2] < 2:
        return None
    last = torch.from_numpy(np.ascontiguousarray(hypotheses[:, -1].transpose(1, 0, 2, 3)))   # (H, N, J, 3)
    spread = hypothesis_spread(last, torch.from_numpy(np.asarray(j_agg, np.float32))).numpy()
    return 1000 * radius(spread, calibration, coverage)


@dataclass(frozen=True)
class LiftOptions:
    """What lifting needs beyond the inference core: the camera and the uncertainty.
    focal: pixels (None: 0.9 x the larger image side, default_intrinsics); virtual_focal: lift
    the 2D as a camera of that normalised focal length would see it (e.g. TRAINING_FOCAL, the
    training cameras'; to_virtual_camera), so that a person filmed with another lens appears at
    the sizes the model was trained on (None: the 2D as it is); calibration: the checkpoint's
    uncertainty factors (common.uncertainty.factors.Calibration), None for the raw spread."""

    focal: float | None = None
    virtual_focal: float | None = None
    calibration: object = None
    coverage: float = DEFAULT_COVERAGE


def lift_keypoints(core: InferenceCore, keypoints: Keypoints2D, size: tuple[int, int],
                   options: LiftOptions = LiftOptions()) -> WildResult:
    """The whole pipeline for one person's keypoints (COCO-17 or Human3.6M-17: keypoints.layout)
    in an image of size (w, h), sampled with the core (its model's 2D layout: core.layout.input_name)."""
    layout = core.layout.input_name
    pixels, confidence = keypoints_for_model(keypoints.keypoints, layout, keypoints.confidence, keypoints.layout)
    result = lift_pixels(core, pixels, confidence, keypoints.frame_ids, size, options)
    result.keypoints_2d, result.confidence = keypoints.keypoints, keypoints.confidence
    result.keypoints_layout, result.source = keypoints.layout, keypoints
    return result


def lift_pixels(core: InferenceCore, pixels: np.ndarray, confidence: np.ndarray, frame_ids: np.ndarray,
                size: tuple[int, int], options: LiftOptions = LiftOptions()) -> WildResult:
    """The pipeline for keypoints already in the model's input layout: pixels (N, 17, 2) and
    confidence (N, 17), gaps filled, in an image of size (w, h)."""
    start = time.perf_counter()
    w, h = size
    layout = core.layout.input_name
    x2d = normalize_screen_coordinates(pixels, w, h)
    target_px, target_conf = coco_to_h36m(pixels, confidence) if layout == "coco" else (pixels, confidence)
    target = normalize_screen_coordinates(target_px, w, h)             # (N, 17, 2) Human3.6M layout
    cam = default_intrinsics(w, h, options.focal)
    lift_cam = cam
    if options.virtual_focal is not None:
        x2d, _ = to_virtual_camera(x2d, cam, options.virtual_focal)
        target, lift_cam = to_virtual_camera(target, cam, options.virtual_focal)
    hyps = core.sample_clip(x2d)
    poses, traj = aggregate_without_ground_truth(hyps, target, lift_cam, target_conf)
    last = {mode: p[:, -1] for mode, p in poses.items()}
    return WildResult(hypotheses=hyps, poses=last, trajectory=traj[:, 0], keypoints_2d=pixels, confidence=confidence,
                      frame_ids=frame_ids, intrinsics=cam, image_size=(w, h), input_layout=layout,
                      keypoints_layout=layout, timings={"lift": time.perf_counter() - start},
                      uncertainty=joint_uncertainty(hyps, last["J-Agg"], options.calibration, options.coverage),
                      uncertainty_calibrated=options.calibration is not None, coverage=options.coverage)


# ---------------------------------------------------------------------------- video

def detect_video(path, detector: Detector | str = "auto", max_frames: int | None = None,
                 progress: bool = False) -> VideoDetections:
    """Decode a video and run the 2D detector on every frame (the first max_frames when given).
    A file cut short gives the frames that decode (truncated, problem say so)."""
    path = Path(path)
    info = probe_video(path)
    check_frame_size(info.width, info.height, path)
    detector = make_detector(detector)
    frames = VideoFrames(path)
    found, detect_s = [], 0.0
    detector.start_video()
    total = info.frames if max_frames is None else min(max_frames, info.frames or max_frames)
    for image in tqdm(frames, total=total, desc=f"detecting {path.name}", unit="frame", disable=not progress):
        start = time.perf_counter()
        found.append(detector.detect(image))
        detect_s += time.perf_counter() - start
        if max_frames is not None and len(found) >= max_frames:
            break
    if not found:
        raise ValueError(f"{path}: no frame could be decoded ({frames.problem or 'the video is empty'}): "
                         f"give a complete video file")
    people = max(1, max(len(f) for f in found))
    keypoints = np.full((len(found), people, detector.num_keypoints, 3), np.nan, np.float32)
    for i, persons in enumerate(found):
        for p, points in enumerate(persons):
            keypoints[i, p] = points
    return VideoDetections(detector.name, tuple(detector.keypoint_names), keypoints, info.fps,
                           (info.width, info.height), info.frames, frames.truncated, frames.problem,
                           frames.decode_s, detect_s)


def lift_video(core: InferenceCore, path, options: LiftOptions = LiftOptions(), detector: Detector | str = "auto",
               threshold: float = 0.3, max_gap: int = 30, max_missing: float = 0.5, max_frames: int | None = None,
               progress: bool = False, person: int | str | None = None, min_frames: int = 30) -> PeopleResult:
    """From a video file to 3D for every person in it: decode it, detect 2D keypoints in every
    frame, link the detections into people (people.people_from_detections: tracks by
    position, ids 1, 2, ... in order of appearance, a person's missing frames interpolated),
    map the detector's keypoints to COCO-17 (and to the model's layout), and lift each person
    as lift_keypoints does, with their own root trajectory.

    person: None, everyone followed through at least min_frames frames; 'longest', the
    longest-followed person; an id, that person (over max_missing of their frames undetected:
    refused). The result's people each hold `video` (every frame's detections), `source` (the
    person's 2D and counts), `person_id`; its `timings` the seconds spent decoding, detecting
    and lifting everyone."""
    path = Path(path)
    owned = not isinstance(detector, Detector)
    detector = make_detector(detector)
    try:
        found = detect_video(path, detector, max_frames, progress)
    finally:
        if owned:
            detector.close()
    coco = detector.to_coco(found.keypoints)                          # (N, P, 17, 3)
    per_frame = {i: [(float(np.nanmean(someone[:, 2])), someone) for someone in coco[i]
                     if np.isfinite(someone[:, :2]).all()] for i in range(found.frames)}
    per_frame = {i: people for i, people in per_frame.items() if people}
    if not per_frame:
        raise ValueError(f"{path}: {found.detector} found no person in any of its {found.frames} frames: give a video "
                         f"in which one person is visible, or the 2D keypoints with --keypoints-file")
    chosen, warnings = people_from_detections(per_frame, str(path), threshold, max_gap, max_missing, min_frames,
                                              *found.image_size, person=person)
    if found.truncated:
        warnings.insert(0, f"{path.name} is cut short: {found.problem}; used the {found.frames} frames that decode")
    people = []
    for person_id, keypoints in chosen:
        result = lift_keypoints(core, keypoints, found.image_size, options)
        result.fps, result.video, result.person_id = found.fps, found, person_id
        result.timings = {"decode": found.decode_s, "detect": found.detect_s, **result.timings}
        people.append(result)
    timings = {"decode": found.decode_s, "detect": found.detect_s, "lift": sum(p.timings["lift"] for p in people)}
    return PeopleResult(people, found, warnings, timings)
