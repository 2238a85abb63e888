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

lift_keypoints runs this on a keypoint file's person; lift_video first decodes a video and
runs a 2D detector on every frame (detectors.py), following one person as for keypoint files.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import aggregation as agg
from ..camera import normalize_screen_coordinates
from ..coco import LAYOUTS, coco_to_h36m, keypoints_for_model
from ..inference import InferenceCore
from ..uncertainty import DEFAULT_COVERAGE, hypothesis_spread, radius
from ..video import VideoFrames, probe_video
from .detectors import Detector, make_detector
from .keypoints import Keypoints2D, keypoints_from_detections
from .root_depth import default_intrinsics, estimate_root_trajectory

# Frames the pipeline takes: the detector needs some pixels, and the model's input is
# normalised by the width, so very tall or very wide frames fall outside what it was trained on.
MIN_FRAME_SIDE = 32
MAX_ASPECT = 3.0


@dataclass
class VideoDetections:
    """What the detector found in every decoded frame of a video."""

    detector: str
    keypoint_names: tuple     # the detector's own keypoints (BlazePose-33 for mediapipe)
    keypoints: np.ndarray     # (N, P, J, 3) float32 x, y pixels, confidence; NaN where fewer than P people
    fps: float
    image_size: tuple         # (width, height) pixels
    declared_frames: int | None = None   # what the file says (None: unknown)
    truncated: bool = False
    problem: str = ""         # why decoding stopped early
    decode_s: float = 0.0
    detect_s: float = 0.0

    @property
    def frames(self) -> int:
        """Frames decoded (and given to the detector)."""
        return len(self.keypoints)

    @property
    def people(self) -> np.ndarray:
        """(N,) number of people found per frame."""
        return np.isfinite(self.keypoints[..., 0]).any(axis=-1).sum(axis=-1)

    @property
    def detected_frames(self) -> int:
        return int((self.people > 0).sum())

    def summary(self) -> str:
        cut = ""
        if self.truncated:
            cut = f"; the file is cut short{f' (it declares {self.declared_frames})' if self.declared_frames else ''}"
        return (f"{self.detector}: a person detected in {self.detected_frames} of {self.frames} decoded frames "
                f"({self.frames / self.fps:.1f} s at {self.fps:g} fps, {self.image_size[0]}x{self.image_size[1]} "
                f"pixels{cut})")


# The focal length of the cameras the models here are trained with (Human3.6M's, also the
# synthetic set's), in normalised screen units (focal px / half the image width).
TRAINING_FOCAL = 2.29


def training_focal(checkpoint: dict) -> float | None:
    """The normalised focal length of the cameras a checkpoint's model was trained with, where
    one focal fits them all: what our training recorded ('training_focal': None when the
    cameras' focal lengths differ or are unknown); for files without it (the authors', ours before),
    TRAINING_FOCAL, Human3.6M's."""
    args = checkpoint.get("args") or {}
    return args["training_focal"] if "training_focal" in args else TRAINING_FOCAL


def to_virtual_camera(x2d: np.ndarray, cam: np.ndarray, focal: float = TRAINING_FOCAL):
    """2D (..., J, 2) normalised, seen by the pinhole camera cam, as a camera at the same place
    with focal length `focal` and its principal point at the origin would see it: for a
    distortion-free camera this is exact (the same rays), and the root-relative 3D pose and the
    root position are unchanged. Returns (2D, that camera's 9-vector intrinsics)."""
    cam = np.asarray(cam, dtype=np.float32)
    virtual = np.zeros(9, np.float32)
    virtual[:2] = focal
    return ((np.asarray(x2d) - cam[2:4]) * (focal / cam[:2])).astype(np.float32), virtual


@dataclass
class WildResult:
    """3D output for one clip; 3D in metres, camera space, root-relative (pelvis = 0)."""

    hypotheses: np.ndarray    # (N, K, H, 17, 3) every iteration's hypotheses
    poses: dict               # mode -> (N, 17, 3): the last iteration's pose by every aggregation mode that
                              # needs no ground truth (common.aggregation.LIFTING_MODES: J-Agg, P-Agg, ...)
    trajectory: np.ndarray    # (N, 3) estimated root position, metres, camera space
    keypoints_2d: np.ndarray  # (N, 17, 2) the 2D as given, pixels, in keypoints_layout
    confidence: np.ndarray    # (N, 17) detector confidence (0 where filled in)
    frame_ids: np.ndarray     # (N,) frame number of each row
    intrinsics: np.ndarray    # (9,) normalised [fx, fy, cx, cy, k1, k2, k3, p1, p2] used by JPMA
    image_size: tuple         # (width, height) pixels
    input_layout: str         # the model's 2D input layout, 'coco' or 'h36m'
    keypoints_layout: str = "coco"  # joint order of keypoints_2d (a detector's COCO-17, or the model's)
    fps: float | None = None  # frame rate of the source video, when known
    source: Keypoints2D | None = None        # the followed person's 2D (warnings, interpolation counts)
    video: VideoDetections | None = None     # lift_video: the detector's output for every decoded frame
    timings: dict = field(default_factory=dict)   # seconds: decode, detect, lift (and write, render)
    uncertainty: np.ndarray | None = None  # (N, 17) mm: radius around each J-Agg joint (common.uncertainty)
    uncertainty_calibrated: bool = False   # radius for `coverage` from fitted factors, else the raw spread
    coverage: float = 0.9
    pose_mode: str = "J-Agg"  # the mode whose pose the .json, .csv, .bvh and the animation show

    @property
    def j_agg(self) -> np.ndarray:
        """(N, 17, 3) J-Agg pose of the last iteration."""
        return self.poses["J-Agg"]

    @property
    def p_agg(self) -> np.ndarray:
        """(N, 17, 3) mean of the last iteration's hypotheses."""
        return self.poses["P-Agg"]

    @property
    def shown(self) -> np.ndarray:
        """(N, 17, 3) the pose of `pose_mode`, which the .json, .csv, .bvh and the animation show."""
        return self.poses[self.pose_mode]

    def save(self, path) -> Path:
        """Write the result to path, in the format its suffix names (.npz, .json, .csv, .bvh;
        see exports.py)."""
        from .exports import write_outputs

        return write_outputs(self, [path])[0]


# ---------------------------------------------------------------------------- model and inputs

def input_layout_of(checkpoint: dict, requested: str = "auto") -> tuple[str, str]:
    """The 2D joint layout a checkpoint's model expects, and why: the flag when given,
    else what the training recorded ('input_layout', or a keypoints name containing 'coco')."""
    if requested != "auto":
        if requested not in LAYOUTS:
            raise ValueError(f"unknown input layout {requested!r}; expected one of {LAYOUTS}")
        return requested, "--input-layout"
    args = checkpoint.get("args") or {}
    if args.get("input_layout") in LAYOUTS:
        return args["input_layout"], "the checkpoint's training data"
    if "keypoints" in args:
        layout = "coco" if "coco" in str(args["keypoints"]) else "h36m"
        return layout, f"the checkpoint's training keypoints '-k {args['keypoints']}'"
    raise ValueError("the checkpoint does not say which 2D joint layout its model was trained on (the "
                     "authors' files do not); pass --input-layout coco for a model trained with "
                     "-k detectron_pt_coco, or --input-layout h36m for one trained on Human3.6M-layout 2D "
                     "(cpn_ft_h36m_dbb, gt)")


def image_size(keypoints: Keypoints2D, width: int | None = None, height: int | None = None,
               video=None) -> tuple[int, int]:
    """Image size in pixels: the flags, else the keypoint file's, else the video's."""
    if (width is None) != (height is None):
        raise ValueError("give both --width and --height (the image size in pixels)")
    if width is not None:
        return _positive_size(width, height, "--width/--height")
    if keypoints.res_w is not None and keypoints.res_h is not None:
        return _positive_size(keypoints.res_w, keypoints.res_h, "the keypoint file's image size")
    if video is not None:
        return _positive_size(*video_size(video), f"the size of {video}")
    raise ValueError("the keypoint file does not state the image size: give --width and --height "
                     "(pixels) or --video (the source video)")


def checked_image_size(size) -> tuple[int, int]:
    """An image size (width, height) in pixels given to the API, checked."""
    try:
        width, height = size
    except (TypeError, ValueError):
        raise ValueError(f"image_size={size!r}: give (width, height) in pixels, e.g. (1920, 1080)") from None
    return _positive_size(width, height, "image_size")


def _positive_size(width, height, source: str) -> tuple[int, int]:
    if width <= 0 or height <= 0:
        raise ValueError(f"{source} gives an image of {width}x{height} pixels; the image size must be positive: "
                         f"give the video's real size with --width and --height")
    return int(width), int(height)


def doubtful_input(result: "WildResult", keypoints: Keypoints2D) -> list[str]:
    """Warnings about a lifted clip whose numbers make no physical sense."""
    notes = []
    w, h = result.image_size
    depth = result.trajectory[:, 2]
    if (depth <= 0).any():
        notes.append(f"the estimated root depth is negative or zero in {(depth <= 0).sum()} of {len(depth)} frames "
                     f"(min {depth.min():.2f} m): check --width/--height/--focal and that the 2D is one person")
    elif depth.max() > 100:
        notes.append(f"the estimated root depth reaches {depth.max():.0f} m: check --width/--height/--focal")
    pixels = keypoints.keypoints
    outside = ((pixels < -0.5 * np.array([w, h])) | (pixels > 1.5 * np.array([w, h]))).any(axis=-1).mean()
    if outside > 0.1:
        notes.append(f"{outside:.0%} of the keypoints lie far outside the {w}x{h} image: is the image size right?")
    return notes


def video_size(path) -> tuple[int, int]:
    """(width, height) of a video's first stream (PyAV, else ffprobe)."""
    info = probe_video(path)
    return info.width, info.height


def check_frame_size(width: int, height: int, source) -> None:
    """Refuse frames the detector and the model cannot use (see MIN_FRAME_SIDE, MAX_ASPECT)."""
    if min(width, height) < MIN_FRAME_SIDE or max(width / height, height / width) > MAX_ASPECT:
        raise ValueError(f"{source}: frames of {width}x{height} pixels cannot be used: the pipeline needs at least "
                         f"{MIN_FRAME_SIDE} pixels a side and an aspect ratio within {MAX_ASPECT:g}:1 (the model's "
                         f"input is normalised by the image width); give a larger or less elongated video")


# ---------------------------------------------------------------------------- sampling

def aggregate_without_ground_truth(hypotheses: np.ndarray, target_2d: np.ndarray, cam: np.ndarray,
                                   confidence: np.ndarray | None = None, chunk: int = 1024):
    """Every aggregation mode that needs no ground truth (common.aggregation.LIFTING_MODES:
    JPMA and the others), where neither the root trajectory nor the 3D pose is known.

    hypotheses (N, K, H, J, 3) root-relative metres; target_2d (N, J, 2) normalised, in the
    3D output's joint layout; cam (9,) normalised intrinsics; confidence (N, J) optional
    weights of the trajectory fit. The trajectory (N, 1, 3) is fitted once, to the mean of the
    last iteration's hypotheses, and used for every iteration. Returns ({mode: poses
    (N, K, J, 3)}, trajectory (N, 1, 3)).
    """
    cam_t = torch.from_numpy(np.asarray(cam, dtype=np.float32))
    poses = {m: np.empty(hypotheses.shape[:2] + hypotheses.shape[3:], np.float32) for m in agg.LIFTING_MODES}
    traj = np.empty((len(hypotheses), 1, 3), np.float32)
    for start in range(0, len(hypotheses), chunk):                     # bounded memory on long videos
        part = slice(start, start + chunk)                             # (the fit is per frame)
        traj[part] = estimate_root_trajectory(hypotheses[part, -1].mean(axis=1), target_2d[part], cam,
                                              None if confidence is None else confidence[part])
        hyps = torch.from_numpy(hypotheses[part]).permute(1, 2, 0, 3, 4)[None]       # (1, K, H, n, J, 3)
        x2d = torch.from_numpy(np.asarray(target_2d[part], dtype=np.float32))[None]  # (1, n, J, 2)
        chosen = agg.aggregate(hyps, None, x2d, torch.from_numpy(traj[part])[None], cam_t)  # mode -> (1, K, n, J, 3)
        for mode, p in chosen.items():
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
    uncertainty factors (common.uncertainty.Calibration), None for the raw spread."""

    focal: float | None = None
    virtual_focal: float | None = None
    calibration: object = None
    coverage: float = DEFAULT_COVERAGE


def lift_keypoints(core: InferenceCore, keypoints: Keypoints2D, size: tuple[int, int],
                   options: LiftOptions = LiftOptions()) -> WildResult:
    """The whole pipeline for one person's COCO-17 keypoints in an image of size (w, h), sampled
    with the core (its model's 2D layout: core.layout.input_name)."""
    layout = core.layout.input_name
    pixels, confidence = keypoints_for_model(keypoints.keypoints, layout, keypoints.confidence)
    result = lift_pixels(core, pixels, confidence, keypoints.frame_ids, size, options)
    result.keypoints_2d, result.confidence, result.keypoints_layout = keypoints.keypoints, keypoints.confidence, "coco"
    result.source = keypoints
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
    from tqdm import tqdm

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
               progress: bool = False) -> WildResult:
    """From a video file to 3D: decode it, detect 2D keypoints in every frame, follow one
    person (as read_keypoints does for files: tracks linked by position, the longest kept,
    gaps over max_gap frames split, missing frames interpolated, over max_missing refused),
    map the detector's keypoints to COCO-17 (and to the model's layout), and lift them as
    lift_keypoints does. The result's `video` holds every frame's detections, its `source` the
    followed person's 2D and counts, `timings` the seconds spent decoding, detecting, lifting."""
    path = Path(path)
    owned = not isinstance(detector, Detector)
    detector = make_detector(detector)
    try:
        found = detect_video(path, detector, max_frames, progress)
    finally:
        if owned:
            detector.close()
    coco = detector.to_coco(found.keypoints)                          # (N, P, 17, 3)
    per_frame = {i: [(float(np.nanmean(person[:, 2])), person) for person in coco[i]
                     if np.isfinite(person[:, :2]).all()] for i in range(found.frames)}
    per_frame = {i: people for i, people in per_frame.items() if people}
    if not per_frame:
        raise ValueError(f"{path}: {found.detector} found no person in any of its {found.frames} frames: give a video "
                         f"in which one person is visible, or the 2D keypoints with --keypoints-file")
    keypoints = keypoints_from_detections(per_frame, str(path), threshold, max_gap, max_missing, *found.image_size)
    if found.truncated:
        keypoints.warnings.insert(0, f"{path.name} is cut short: {found.problem}; used the {found.frames} frames "
                                     f"that decode")
    result = lift_keypoints(core, keypoints, found.image_size, options)
    result.fps, result.video = found.fps, found
    result.timings = {"decode": found.decode_s, "detect": found.detect_s, **result.timings}
    return result


def timing_summary(result: WildResult) -> str:
    """Seconds spent per step, and per second of video (detection and lifting together
    faster than 1 s per second means faster than the video plays)."""
    t = result.timings
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in t.items())
    if not result.fps:
        return f"time: {parts}"
    seconds = (result.video.frames if result.video is not None else len(result.frame_ids)) / result.fps
    per = ", ".join(f"{k} {v / seconds:.3f}" for k, v in t.items())
    work = t.get("detect", 0.0) + t.get("lift", 0.0)
    return (f"time: {parts} for {seconds:.1f} s of video; seconds per second of video: {per} "
            f"(detection + lifting {work / seconds:.3f}: {'faster' if work < seconds else 'slower'} than the video plays)")


def render_result(result: WildResult, out_path, video=None, fps: float | None = None, size: float = 5.0,
                  limit: int | None = None, downsample: int = 1, azim: float = -70.0) -> Path:
    """Animation of the 2D input over the video frame (when given; otherwise a blank image) and
    the pose of result.pose_mode (J-Agg by default) over the last iteration's hypotheses. For a lifted video (result.video),
    every decoded frame is drawn, those without a lifted pose with the frame alone; for a
    keypoint file, the frames from its first frame number on. H.264 MP4 with PyAV (or ffmpeg),
    else GIF; fps: the video's unless given."""
    from itertools import islice

    from ..coco import coco_skeleton
    from ..render import render_animation
    from ..skeleton import h36m_skeleton_17

    keypoints, shown, hyps, radii = result.keypoints_2d, result.shown, result.hypotheses[:, -1], result.uncertainty
    background = None
    if video is not None:
        background = iter(VideoFrames(video))
        if result.video is not None:                         # every decoded frame, NaN where not lifted
            rows = result.frame_ids
            keypoints, shown, hyps = (_spread(x, rows, result.video.frames) for x in (keypoints, shown, hyps))
            radii = None if radii is None else _spread(radii, rows, result.video.frames)
        else:
            background = islice(background, int(result.frame_ids[0]), None)
    fps = fps or result.fps or 25.0
    return render_animation(out_path, keypoints, {result.pose_mode: shown}, h36m_skeleton_17(),
                            fps=fps, size=size, hypotheses=hyps, background=background,
                            resolution=result.image_size, limit=limit, downsample=downsample, azim=azim,
                            skeleton_2d=coco_skeleton() if result.keypoints_layout == "coco" else None,
                            uncertainty=radii, uncertainty_label=_radius_label(result))


def _radius_label(result: WildResult) -> str:
    return (f"{result.coverage:.0%} radius, mm" if result.uncertainty_calibrated
            else "spread of the hypotheses, mm (uncalibrated)")


def _spread(values: np.ndarray, rows: np.ndarray, frames: int) -> np.ndarray:
    """values for frames `rows` -> (frames, ...) with NaN elsewhere."""
    out = np.full((frames,) + values.shape[1:], np.nan, np.float32)
    out[rows] = values
    return out
