"""Read one person's 2D keypoints (COCO-17, or Human3.6M-17 order) from a detector's output file.

Supported inputs (chosen by extension and content):
- AlphaPose results JSON: a list of detections {"image_id": "12.jpg" | 12, "keypoints":
  [x, y, c] * 17, "score", optional "idx" (track id)}. Halpe-26 / 136 and COCO-WholeBody
  133 keypoint sets are accepted too: their first 17 joints are COCO-17.
- COCO keypoint results JSON: the same list with integer "image_id" and optional "track_id".
- COCO-style dict {"images": [{"id", "width", "height", ...}], "annotations": [...]}:
  every listed image is a frame, in image-id order; the image size is returned.
- .npy / .npz holding (frames, 17, 2 | 3) pixels (third channel = confidence). For .npz the
  array named 'keypoints', 'reconstruction' or 'positions_2d' is used, else the first one;
  VideoPose3D's custom-video file (positions_2d = {video: {'custom': [array]}}) also works.

Joint order: JSON files are COCO-17. An array file is COCO-17 unless it says otherwise: a
`layout` entry in the .npz ('coco' or 'h36m'), or the caller's `layout` (the command line's
--keypoints-layout); the two must agree. Without either, an array whose geometry shows
Human3.6M-17 order (hips, knees and ankles where COCO has eyes and ears; guess_layout) is
refused rather than read as COCO-17; a stated order that the geometry contradicts is read as
stated, with a warning.

Several people per frame: with --track-id the tracked person is used; without it, the
person of the longest track (by track id when the file's ids tell people apart, else by
linking detections frame to frame by position) is followed through the clip.

Frames are ordered by frame number (the integer image id, or the last number in an image
file name such as 'frame_000012.jpg'); numbers between the first and the last with no
detection are missing frames. Frame numbers further apart than max_gap split the detections
into segments: the longest is kept (a warning says what was dropped), and a file whose
frame numbers do not look like one video's is refused. Missing joints (no detection, NaN, confidence < threshold)
are filled per joint by linear interpolation over time, holding the nearest valid value
at the ends.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..geometry.coco import COCO_NAMES, LAYOUTS, guess_layout
from ..geometry.skeleton import h36m_skeleton_17
from ..storage.safe_pickle import item, load_npz
from .tracks import link_by_position, longest_segment, track_array, track_rank

NUM_JOINTS = 17
NPZ_KEYS = ("keypoints", "reconstruction", "positions_2d")
WHOLE_SETS = (17, 26, 133, 136)  # keypoint counts whose first 17 joints are COCO-17


@dataclass
class Keypoints2D:
    """One person's 2D keypoints over a video, gaps filled."""

    keypoints: np.ndarray   # (F, 17, 2) float32 pixels in `layout` order, missing joints interpolated
    confidence: np.ndarray  # (F, 17) float32 detector confidence, 0 where nothing was detected
    frame_ids: np.ndarray   # (F,) int64 frame number of each row
    res_w: int | None = None  # image size in pixels when the file states it
    res_h: int | None = None
    warnings: list = field(default_factory=list)   # doubtful input, one line each
    filled_frames: int = 0    # frames with no detection (every joint interpolated)
    filled_joints: int = 0    # joint positions interpolated (no detection, NaN or below the threshold)
    layout: str = "coco"      # joint order: 'coco' (COCO-17) or 'h36m' (Human3.6M-17)

    def summary(self) -> str:
        """How much of the input was interpolated, in one line."""
        total = self.keypoints.shape[0] * self.keypoints.shape[1]
        return (f"filled by interpolation: {self.filled_frames} of {self.num_frames} frames (no detection), "
                f"{self.filled_joints} of {total} joint positions ({self.filled_joints / total:.1%})")

    @property
    def num_frames(self) -> int:
        return self.keypoints.shape[0]

    @property
    def layout_name(self) -> str:
        """The joint order in words: COCO-17 or Human3.6M-17."""
        return LAYOUT_NAMES[self.layout]


def read_keypoints(path, track_id: int | None = None, threshold: float = 0.3,
                   video: str | None = None, max_gap: int = 30, max_missing: float = 0.5,
                   layout: str = "auto") -> Keypoints2D:
    """Read one person's keypoints from a JSON / .npy / .npz file (see module docstring).

    layout: the joint order of an array file, 'coco' or 'h36m' ('auto': the file's `layout`
    entry, else COCO-17 unless the geometry shows Human3.6M-17 order: refused).

    track_id selects a tracked person in a JSON file (AlphaPose "idx", COCO "track_id");
    without it the longest track is followed. video picks one entry of a multi-video
    VideoPose3D .npz. max_gap: frame-number gaps above this split the detections (the longest
    segment is kept); max_missing: the largest share of frames without a detection accepted.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"keypoint file not found: {path}")
    suffix = path.suffix.lower()
    warnings = []
    if layout not in ("auto", *LAYOUTS):
        raise ValueError(f"unknown keypoint layout {layout!r}; expected auto, coco or h36m")
    if suffix == ".json":
        if layout == "h36m":
            raise ValueError(f"{path}: AlphaPose / COCO results files hold COCO-17 keypoints, not Human3.6M-17: "
                             f"drop --keypoints-layout h36m (or give the keypoints as a .npy / .npz array)")
        raw, frame_ids, res_w, res_h = _read_json(path, track_id, max_gap, warnings)
        layout = "coco"
    elif suffix in (".npy", ".npz"):
        raw, res_w, res_h, stated = _read_array_file(path, video)
        layout = _array_layout(raw, layout, stated, path, warnings)
        frame_ids = None
    else:
        raise ValueError(f"{path}: unknown keypoint format {suffix!r}; expected an AlphaPose or "
                         "COCO .json, or a .npy / .npz array of shape (frames, 17, 2 or 3)")
    return keypoints_from_array(raw, frame_ids, threshold, max_missing, source=str(path), res_w=res_w, res_h=res_h,
                                warnings=warnings, layout=layout)


LAYOUT_NAMES = {"coco": "COCO-17", "h36m": "Human3.6M-17"}


def _array_layout(raw: np.ndarray, requested: str, stated: str | None, path: Path, warnings: list) -> str:
    """The joint order of an array file's keypoints: the caller's and the file's, which must
    agree, checked against the geometry (guess_layout)."""
    if stated is not None and requested != "auto" and stated != requested:
        raise ValueError(f"{path} says its keypoints are in {LAYOUT_NAMES[stated]} order (its 'layout' entry) but "
                         f"--keypoints-layout says {requested}: drop the flag or correct the file")
    chosen = stated or (None if requested == "auto" else requested)
    seen = guess_layout(raw[..., :2], raw[..., 2])
    if chosen is None:
        if seen == "h36m":
            raise ValueError(f"{path}: the keypoints look like Human3.6M-17 order (joints 1-4 lie a leg's length from "
                             f"joint 0: hips, knees, ankles, not eyes and ears): pass --keypoints-layout h36m, or "
                             f"--keypoints-layout coco if they are COCO-17")
        return "coco"
    if seen is not None and seen != chosen:
        warnings.append(f"the keypoints are read in {LAYOUT_NAMES[chosen]} order as stated, but their geometry "
                        f"looks like {LAYOUT_NAMES[seen]}: check the joint order")
    return chosen


def keypoints_from_array(raw: np.ndarray, frame_ids=None, threshold: float = 0.3, max_missing: float = 0.5,
                         source: str = "keypoints", res_w: int | None = None, res_h: int | None = None,
                         warnings: list | None = None, layout: str = "coco") -> Keypoints2D:
    """One person's keypoints from an array (F, 17, 2 | 3) of pixels (third channel: confidence,
    1 when absent; NaN where nothing was detected): frames without any detection and joints that
    are missing or below `threshold` are filled by interpolation over time; a clip with more
    than `max_missing` of its frames undetected is refused. frame_ids: (F,) frame numbers
    (default 0..F-1); source names the input in messages; layout: the joint order ('coco' or
    'h36m')."""
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim != 3 or raw.shape[1] != NUM_JOINTS or raw.shape[2] not in (2, 3):
        raise ValueError(f"{source}: keypoint array of shape {raw.shape}; expected (frames, 17, 2) or "
                         f"(frames, 17, 3) pixels, with confidence as the third channel")
    if raw.shape[0] == 0:
        raise ValueError(f"{source}: the keypoint array has no frames")
    if raw.shape[2] == 2:
        raw = np.concatenate([raw, np.ones_like(raw[..., :1])], axis=-1)
    frame_ids = np.arange(raw.shape[0], dtype=np.int64) if frame_ids is None else np.asarray(frame_ids, np.int64)
    if frame_ids.shape != (raw.shape[0],):
        raise ValueError(f"{source}: {len(frame_ids)} frame numbers for {raw.shape[0]} frames of keypoints")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown keypoint layout {layout!r}; expected one of {LAYOUTS}")
    return fill_clip(raw, frame_ids, res_w, res_h, [] if warnings is None else warnings, threshold, max_missing,
                     source, "the input does not look like the frames of one video", layout)


def fill_clip(raw: np.ndarray, frame_ids, res_w, res_h, warnings: list, threshold: float, max_missing: float,
              source: str, why: str, layout: str = "coco") -> Keypoints2D:
    """raw (F, 17, 3) with NaN rows for frames without a detection -> Keypoints2D, gaps filled."""
    no_detection = ~np.isfinite(raw[..., :2]).any(axis=(1, 2))
    share = no_detection.mean()
    if share > max_missing:
        raise ValueError(f"{source}: {no_detection.sum()} of {len(raw)} frames ({share:.0%}) have no detection of "
                         f"the person, so most of the clip would be invented by interpolation; {why} "
                         f"(raise --max-missing-frames to accept it)")
    keypoints, confidence = fill_missing_joints(raw[..., :2], raw[..., 2], threshold, source=source, layout=layout)
    filled_joints = int((confidence < threshold).sum())
    if share > 0.2:
        warnings.append(f"{no_detection.sum()} of {len(raw)} frames ({share:.0%}) have no detection and were "
                        f"interpolated")
    return Keypoints2D(keypoints, confidence, frame_ids, res_w, res_h, warnings, int(no_detection.sum()),
                       filled_joints, layout)


def fill_missing_joints(keypoints: np.ndarray, confidence: np.ndarray, threshold: float = 0.3,
                        source: str = "keypoints", layout: str = "coco"):
    """Interpolate joints that are NaN or below threshold linearly over time, per joint.

    keypoints (F, J, 2), confidence (F, J). Returns (filled keypoints float32, confidence
    float32 with 0 where coordinates were NaN). Raises ValueError naming `source` and the
    joint (by its name in `layout`) when a joint is never valid.
    """
    finite = np.isfinite(keypoints).all(axis=-1)                    # (F, J)
    confidence = np.where(finite & np.isfinite(confidence), confidence, 0).astype(np.float32)
    valid = confidence >= threshold
    frames = np.arange(keypoints.shape[0])
    filled = np.empty(keypoints.shape, dtype=np.float32)
    for j in range(keypoints.shape[1]):
        ok = valid[:, j]
        if not ok.any():
            names = COCO_NAMES if layout == "coco" else h36m_skeleton_17().names
            name = f" ({names[j]})" if keypoints.shape[1] == NUM_JOINTS else ""
            raise ValueError(f"{source}: joint {j}{name} never has confidence >= {threshold} in "
                             f"any of {len(frames)} frames; lower the threshold or use a better detection")
        for axis in range(keypoints.shape[2]):
            filled[:, j, axis] = np.interp(frames, frames[ok], keypoints[ok, j, axis])
    return filled, confidence


def frame_number(image_id) -> int:
    """Frame number of an image id: the integer itself, or the last number in a file name."""
    if isinstance(image_id, (int, np.integer)):
        return int(image_id)
    digits = re.findall(r"\d+", Path(str(image_id)).stem)
    if not digits:
        raise ValueError(f"cannot read a frame number from image_id {image_id!r}; "
                         "expected an integer or a file name such as '12.jpg'")
    return int(digits[-1])


def _read_json(path: Path, track_id, max_gap: int, warnings: list):
    """JSON -> raw (F, 17, 3) with NaN rows for missing frames, frame ids, width, height."""
    with open(path) as f:
        data = json.load(f)
    res_w = res_h = None
    if isinstance(data, dict) and "annotations" in data:
        detections = data["annotations"]
        images = sorted(data.get("images", []), key=lambda im: frame_number(im["id"]))
        frame_ids = None
        if images:
            frame_ids = np.array([frame_number(im["id"]) for im in images], dtype=np.int64)
            res_w, res_h = int(images[0]["width"]), int(images[0]["height"])
    elif isinstance(data, list):
        detections, frame_ids = data, None
    else:
        raise ValueError(f"{path}: expected an AlphaPose / COCO results list of detections or a "
                         "COCO dict with 'annotations'")
    if not detections:
        raise ValueError(f"{path}: the file holds no person detections")
    best = _select_person(detections, track_id, path, warnings)       # frame -> (score, (17, 3))
    if frame_ids is None:
        best = longest_segment(best, max_gap, path, warnings)
        frame_ids = np.arange(min(best), max(best) + 1, dtype=np.int64)
    raw = track_array(best, frame_ids, NUM_JOINTS)
    return raw, frame_ids, res_w, res_h


def _select_person(detections, track_id, path: Path, warnings: list) -> dict:
    """{frame: (score, (17, 3))} of one person: track_id's, else the longest track (see module docstring)."""
    per_frame: dict[int, list] = {}
    for det in detections:
        kpts = _detection_keypoints(det, path)                        # (17, 3)
        score = float(det.get("score", np.nanmean(kpts[:, 2])))
        per_frame.setdefault(frame_number(det["image_id"]), []).append((score, kpts, _track_of(det)))
    all_tracks = {t for dets in per_frame.values() for _, _, t in dets}
    ids_usable = None not in all_tracks and len(all_tracks) > 1
    crowded = max(len(dets) for dets in per_frame.values())
    if track_id is not None and not ids_usable:
        if all_tracks != {track_id}:
            known = sorted(t for t in all_tracks if t is not None)
            raise ValueError(f"{path}: no detection with track id {track_id}; track ids in the file: {known}")
        if crowded > 1:
            warnings.append(f"every detection has track id {track_id}, so the ids do not tell people apart; "
                            f"following one person by position instead")
    if ids_usable:
        groups: dict = {}                                             # track id -> {frame: (score, (17, 3))}
        for frame, dets in per_frame.items():
            for score, kpts, t in dets:
                if frame not in groups.setdefault(t, {}) or score > groups[t][frame][0]:
                    groups[t][frame] = (score, kpts)
        if track_id is not None:
            if track_id not in groups:
                raise ValueError(f"{path}: no detection with track id {track_id}; track ids in the file: "
                                 f"{sorted(all_tracks)}")
            return groups[track_id]
        chosen = max(groups, key=lambda t: track_rank(groups[t]))
        warnings.append(f"{len(groups)} tracked people in the file; following track id {chosen} "
                        f"({len(groups[chosen])} frames), the longest (choose another with --track-id)")
        return groups[chosen]
    if crowded == 1:
        return {frame: dets[0][:2] for frame, dets in per_frame.items()}
    tracks = link_by_position({f: [d[:2] for d in dets] for f, dets in per_frame.items()})
    chosen = max(tracks, key=track_rank)
    warnings.append(f"up to {crowded} people per frame and no track ids: linked detections by position into "
                    f"{len(tracks)} tracks and followed the longest ({len(chosen)} of {len(per_frame)} frames)")
    return chosen


def _track_of(det: dict):
    """Track id of a detection (AlphaPose 'idx', possibly a one-element list; COCO 'track_id')."""
    track = det.get("track_id", det.get("idx"))
    if isinstance(track, list):
        track = track[0] if len(track) == 1 else None
    return None if track is None else int(track)


def _detection_keypoints(det: dict, path: Path) -> np.ndarray:
    """A detection's flat [x, y, c] * N list -> (17, 3), checking the keypoint count."""
    if "keypoints" not in det or "image_id" not in det:
        raise ValueError(f"{path}: detection without 'image_id' / 'keypoints': {sorted(det)}")
    flat = np.asarray(det["keypoints"], dtype=np.float32)
    if flat.size % 3 or flat.size // 3 not in WHOLE_SETS:
        raise ValueError(f"{path}: detection with {flat.size} keypoint numbers; expected 17 COCO "
                         "keypoints as [x, y, confidence] * 17 (51 numbers)")
    return flat.reshape(-1, 3)[:NUM_JOINTS]


def _read_array_file(path: Path, video):
    """.npy / .npz -> raw (F, 17, 3) (confidence 1 when absent), width, height, the joint order
    the file states (its 'layout' entry; None when it states none)."""
    res_w = res_h = stated = None
    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False)
    else:
        archive = load_npz(path)   # plain arrays; VideoPose3D's pickled dicts through an allow-list
        if not archive:
            raise ValueError(f"{path}: the .npz archive is empty")
        if "layout" in archive:
            stated = str(archive["layout"])
            if stated not in LAYOUTS:
                raise ValueError(f"{path}: its 'layout' entry is {stated!r}; expected 'coco' or 'h36m'")
        key = next((k for k in NPZ_KEYS if k in archive), next((k for k in archive if k != "layout"), None))
        if key is None:
            raise ValueError(f"{path}: the .npz archive holds no keypoint array")
        array = archive[key]
        if array.dtype == object:
            array, res_w, res_h, named = _videopose3d_custom(item(array), archive, video, path)
            stated = stated or named
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 3 or array.shape[1] != NUM_JOINTS or array.shape[2] not in (2, 3):
        raise ValueError(f"{path}: keypoint array of shape {array.shape}; expected "
                         "(frames, 17, 2) or (frames, 17, 3) pixels, COCO-17 or Human3.6M-17 order")
    if array.shape[0] == 0:
        raise ValueError(f"{path}: the keypoint array has no frames")
    if array.shape[2] == 2:
        array = np.concatenate([array, np.ones_like(array[..., :1])], axis=-1)
    return array, res_w, res_h, stated


def _videopose3d_custom(positions: dict, archive, video, path: Path):
    """VideoPose3D custom dataset {video: {'custom': [array]}} -> (array, width, height, the
    joint order its metadata names ('coco' for Detectron's keypoints; None when unnamed))."""
    if video is None:
        if len(positions) != 1:
            raise ValueError(f"{path} holds videos {sorted(positions)}; choose one with video=...")
        video = next(iter(positions))
    if video not in positions:
        raise ValueError(f"{path}: no video {video!r}; videos in the file: {sorted(positions)}")
    meta = item(archive["metadata"]) if "metadata" in archive else {}
    named = meta.get("layout_name") if meta.get("layout_name") in LAYOUTS else None
    size = meta.get("video_metadata", {}).get(video)
    if size is None:
        return positions[video]["custom"][0], None, None, named
    return positions[video]["custom"][0], int(size["w"]), int(size["h"]), named
