"""Read one person's COCO-17 2D keypoints from a detector's output file.

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

Frames are ordered by frame number (the integer image id, or the last number in an image
file name such as 'frame_000012.jpg'); numbers between the first and the last with no
detection are missing frames. Missing joints (no detection, NaN, confidence < threshold)
are filled per joint by linear interpolation over time, holding the nearest valid value
at the ends.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.coco import COCO_NAMES

NUM_JOINTS = 17
NPZ_KEYS = ("keypoints", "reconstruction", "positions_2d")
WHOLE_SETS = (17, 26, 133, 136)  # keypoint counts whose first 17 joints are COCO-17


@dataclass
class Keypoints2D:
    """One person's 2D keypoints over a video, gaps filled."""

    keypoints: np.ndarray   # (F, 17, 2) float32 pixels, COCO-17 order, missing joints interpolated
    confidence: np.ndarray  # (F, 17) float32 detector confidence, 0 where nothing was detected
    frame_ids: np.ndarray   # (F,) int64 frame number of each row
    res_w: int | None = None  # image size in pixels when the file states it
    res_h: int | None = None

    @property
    def num_frames(self) -> int:
        return self.keypoints.shape[0]


def read_keypoints(path, track_id: int | None = None, threshold: float = 0.3,
                   video: str | None = None) -> Keypoints2D:
    """Read one person's keypoints from a JSON / .npy / .npz file (see module docstring).

    track_id selects a tracked person in a JSON file (AlphaPose "idx", COCO "track_id");
    without it the highest-scoring detection of each frame is kept. video picks one entry of a
    multi-video VideoPose3D .npz.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"keypoint file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        raw, frame_ids, res_w, res_h = _read_json(path, track_id)
    elif suffix in (".npy", ".npz"):
        raw, res_w, res_h = _read_array_file(path, video)
        frame_ids = np.arange(raw.shape[0], dtype=np.int64)
    else:
        raise ValueError(f"{path}: unknown keypoint format {suffix!r}; expected an AlphaPose or "
                         "COCO .json, or a .npy / .npz array of shape (frames, 17, 2 or 3)")
    keypoints, confidence = fill_missing_joints(raw[..., :2], raw[..., 2], threshold, source=str(path))
    return Keypoints2D(keypoints, confidence, frame_ids, res_w, res_h)


def fill_missing_joints(keypoints: np.ndarray, confidence: np.ndarray, threshold: float = 0.3,
                        source: str = "keypoints"):
    """Interpolate joints that are NaN or below threshold linearly over time, per joint.

    keypoints (F, J, 2), confidence (F, J). Returns (filled keypoints float32, confidence
    float32 with 0 where coordinates were NaN). Raises ValueError naming `source` and the
    joint when a joint is never valid.
    """
    finite = np.isfinite(keypoints).all(axis=-1)                    # (F, J)
    confidence = np.where(finite & np.isfinite(confidence), confidence, 0).astype(np.float32)
    valid = confidence >= threshold
    frames = np.arange(keypoints.shape[0])
    filled = np.empty(keypoints.shape, dtype=np.float32)
    for j in range(keypoints.shape[1]):
        ok = valid[:, j]
        if not ok.any():
            name = f" ({COCO_NAMES[j]})" if keypoints.shape[1] == NUM_JOINTS else ""
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


def _read_json(path: Path, track_id):
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
    best = _select_person(detections, track_id, path)                 # frame -> (score, (17, 3))
    if frame_ids is None:
        frame_ids = np.arange(min(best), max(best) + 1, dtype=np.int64)
    raw = np.full((len(frame_ids), NUM_JOINTS, 3), np.nan, dtype=np.float32)
    for row, frame in enumerate(frame_ids.tolist()):
        if frame in best:
            raw[row] = best[frame][1]
    return raw, frame_ids, res_w, res_h


def _select_person(detections, track_id, path: Path) -> dict:
    """Keep, per frame, the detection of track_id or else the highest-scoring one."""
    best, tracks = {}, set()
    for det in detections:
        kpts = _detection_keypoints(det, path)                        # (17, 3)
        det_track = _track_of(det)
        tracks.add(det_track)
        if track_id is not None and det_track != track_id:
            continue
        score = float(det.get("score", np.nanmean(kpts[:, 2])))
        frame = frame_number(det["image_id"])
        if frame not in best or score > best[frame][0]:
            best[frame] = (score, kpts)
    if not best:
        known = sorted(t for t in tracks if t is not None)
        raise ValueError(f"{path}: no detection with track id {track_id}; track ids in the file: {known}")
    return best


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
    """.npy / .npz -> raw (F, 17, 3) (confidence 1 when absent), width, height."""
    res_w = res_h = None
    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False)
    else:
        with np.load(path, allow_pickle=True) as archive:
            if not archive.files:
                raise ValueError(f"{path}: the .npz archive is empty")
            key = next((k for k in NPZ_KEYS if k in archive.files), archive.files[0])
            array = archive[key]
            if array.dtype == object:
                array, res_w, res_h = _videopose3d_custom(array.item(), archive, video, path)
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 3 or array.shape[1] != NUM_JOINTS or array.shape[2] not in (2, 3):
        raise ValueError(f"{path}: keypoint array of shape {array.shape}; expected "
                         "(frames, 17, 2) or (frames, 17, 3) in COCO-17 order")
    if array.shape[0] == 0:
        raise ValueError(f"{path}: the keypoint array has no frames")
    if array.shape[2] == 2:
        array = np.concatenate([array, np.ones_like(array[..., :1])], axis=-1)
    return array, res_w, res_h


def _videopose3d_custom(positions: dict, archive, video, path: Path):
    """VideoPose3D custom dataset {video: {'custom': [array]}} -> (array, width, height)."""
    if video is None:
        if len(positions) != 1:
            raise ValueError(f"{path} holds videos {sorted(positions)}; choose one with video=...")
        video = next(iter(positions))
    if video not in positions:
        raise ValueError(f"{path}: no video {video!r}; videos in the file: {sorted(positions)}")
    meta = archive["metadata"].item().get("video_metadata", {}) if "metadata" in archive.files else {}
    size = meta.get(video)
    if size is None:
        return positions[video]["custom"][0], None, None
    return positions[video]["custom"][0], int(size["w"]), int(size["h"])
