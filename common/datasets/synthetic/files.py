"""The synthetic set's files: motion seen by the real Human3.6M cameras, written in exactly
the Human3.6M file format (see data/README.md), with optional detector-like noise.

Writes, into out_dir:
  data_3d_<name>.npz       positions_3d {subject: {action: (N, 32, 3) float32 world metres}}
  data_2d_<name>_gt.npz    exact projections (with lens distortion), pixels
  data_2d_<name>_det.npz   the same plus detector-like noise, pixels
and, with write_synthetic_coco, COCO-17 2D (what off-the-shelf detectors give, for the
in-the-wild model of `-k detectron_pt_coco`):
  data_2d_<name>_<keypoints>.npz   COCO-17 projections (face points from the head joints),
                                   detector-like noise by default, COCO layout metadata
Everything is deterministic given the seed.
"""
from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ...geometry.camera import image_coordinates, project_to_2d, world_to_camera_np
from ...geometry.coco import COCO_JOINTS_LEFT, COCO_JOINTS_RIGHT
from ..h36m import h36m_cameras
from ...geometry.skeleton import H36M_FPS as FPS, H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT, h36m_metadata

from .coco_face import coco_points
from .motion import check_actions, sequence_motion, subject_bones

SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
# One trial of several action groups, with Human3.6M-style suffixes.
DEFAULT_ACTIONS = ("Directions", "Greeting", "Phoning 1", "Photo", "Sitting 1", "SittingDown 2",
                   "Walking", "Walking 1", "Jumping", "Stretching", "Reaching", "Kneeling", "Floor")
DEFAULT_FRAMES = 160
DEFAULT_SEED = 0
GENERATOR_VERSION = 3  # bump when the motion changes, so ensure_synthetic regenerates
METADATA = {"layout_name": "h36m", "num_joints": 17,
            "keypoints_symmetry": [list(H36M_JOINTS_LEFT), list(H36M_JOINTS_RIGHT)]}
COCO_METADATA = {"layout_name": "coco", "num_joints": 17,
                 "keypoints_symmetry": [list(COCO_JOINTS_LEFT), list(COCO_JOINTS_RIGHT)]}


# ---------------------------------------------------------------------------- cameras
def project_to_pixels(world: np.ndarray, camera: dict) -> np.ndarray:
    """World joints (N, J, 3) metres -> pixels (N, J, 2) of one Human3.6M camera, with the
    lens distortion model."""
    cam_space = world_to_camera_np(world, camera["orientation"], camera["translation"])
    normalised = project_to_2d(torch.from_numpy(cam_space), torch.from_numpy(camera["intrinsics"]))
    return image_coordinates(normalised.numpy(), camera["res_w"], camera["res_h"]).astype(np.float32)


def detections(pixels: np.ndarray, camera: dict, rng: np.random.Generator) -> np.ndarray:
    """Detector-like 2D (N, J, 2) pixels, kept inside the image: a real detector's error is
    mostly a slowly wandering offset per joint (it misplaces a hip or a wrist for many frames
    at once, some joints more than others) plus frame-to-frame jitter and occasional large
    errors, all in proportion to the person's size in the image."""
    n, j = pixels.shape[:2]
    height = np.median(pixels[..., 1].max(axis=1) - pixels[..., 1].min(axis=1))   # person, pixels
    unit = max(height, 1.0) / 400                                     # 400 px: a Human3.6M person
    joint_scale = rng.uniform(0.6, 1.6, (1, j, 1))                    # per-joint difficulty
    kernel = np.hanning(int(0.4 * FPS) + 2)[1:-1]
    kernel /= np.sqrt((kernel ** 2).sum())                            # unit variance after smoothing
    drift = rng.normal(0, 1, (n + len(kernel) - 1, j, 2))
    drift = sum(w * drift[k:k + n] for k, w in enumerate(kernel))      # smoothed over ~0.4 s
    noisy = pixels + unit * joint_scale * (rng.uniform(2, 5) * drift + rng.normal(0, rng.uniform(1, 2.5), pixels.shape))
    outliers = rng.random(pixels.shape[:2]) < 0.01
    noisy[outliers] += rng.normal(0, 25 * unit, (outliers.sum(), 2))
    return np.clip(noisy, 0, [camera["res_w"], camera["res_h"]]).astype(np.float32)


# ---------------------------------------------------------------------------- files
def save_npz(path: Path, **objects) -> None:
    """np.savez_compressed with fixed zip timestamps: the same data gives the same bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, obj in objects.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(obj), allow_pickle=True)


def synthetic_paths(out_dir, name: str = "synthetic") -> dict[str, Path]:
    """Where write_synthetic_h36m puts its files: keys '3d', 'gt', 'det'."""
    out_dir = Path(out_dir)
    return {"3d": out_dir / f"data_3d_{name}.npz",
            "gt": out_dir / f"data_2d_{name}_gt.npz",
            "det": out_dir / f"data_2d_{name}_det.npz"}


def write_synthetic_h36m(out_dir, name: str = "synthetic", seed: int = DEFAULT_SEED,
                         frames_per_sequence: int = DEFAULT_FRAMES, subjects=SUBJECTS,
                         actions=DEFAULT_ACTIONS) -> dict[str, Path]:
    """Generate a synthetic data set in the Human3.6M file format; returns the paths
    (keys '3d', 'gt', 'det'). Action names must start with a group of STYLES."""
    check_actions(actions)
    positions_3d, gt, det = {}, {}, {}
    for subject in subjects:
        bones = subject_bones(seed, subject)
        cameras = h36m_cameras(subject)
        positions_3d[subject], gt[subject], det[subject] = {}, {}, {}
        for action in actions:
            world, rng = sequence_motion(seed, subject, action, bones, frames_per_sequence)  # (N, 32, 3)
            world_17 = world[:, h36m_metadata()["reduction_to_17"]["kept_joints"]]
            pixels = [project_to_pixels(world_17, cam) for cam in cameras]  # 4 x (N, 17, 2)
            positions_3d[subject][action] = world
            gt[subject][action] = pixels
            det[subject][action] = [detections(px, cam, rng) for px, cam in zip(pixels, cameras)]
    paths = synthetic_paths(out_dir, name)
    paths["3d"].parent.mkdir(parents=True, exist_ok=True)
    save_npz(paths["3d"], positions_3d=positions_3d)
    save_npz(paths["gt"], positions_2d=gt, metadata=METADATA)
    save_npz(paths["det"], positions_2d=det, metadata=METADATA)
    return paths


def ensure_synthetic(data_dir, name: str = "synthetic", seed: int = DEFAULT_SEED,
                     frames_per_sequence: int = DEFAULT_FRAMES, subjects=SUBJECTS,
                     actions=DEFAULT_ACTIONS) -> dict[str, Path]:
    """Generate the synthetic set unless it is already there with the same options and
    generator version (recorded in data_<name>_options.json next to it); returns the paths."""
    paths = synthetic_paths(data_dir, name)
    stamp_path = Path(data_dir) / f"data_{name}_options.json"
    stamp = json.dumps({"version": GENERATOR_VERSION, "seed": seed, "frames_per_sequence": frames_per_sequence,
                        "subjects": list(subjects), "actions": list(actions)})
    if all(p.exists() for p in paths.values()) and stamp_path.exists() and stamp_path.read_text() == stamp:
        return paths
    paths = write_synthetic_h36m(data_dir, name, seed, frames_per_sequence, subjects, actions)
    stamp_path.write_text(stamp)
    return paths


def write_synthetic_coco(out_dir, name: str = "synthetic", keypoints: str = "coco", seed: int = DEFAULT_SEED,
                         frames_per_sequence: int = DEFAULT_FRAMES, subjects=SUBJECTS, actions=DEFAULT_ACTIONS,
                         noise: bool = True) -> Path:
    """COCO-17 2D of the same synthetic motion as write_synthetic_h36m (same arguments):
    data_2d_<name>_<keypoints>.npz in the Human3.6M 2D format with COCO layout metadata,
    detector-like noise unless noise=False. Name it 'detectron_pt_coco' (or copy it) to
    train the in-the-wild model. Returns the path."""
    check_actions(actions)
    positions_2d = {}
    for subject in subjects:
        bones = subject_bones(seed, subject)
        cameras = h36m_cameras(subject)
        positions_2d[subject] = {}
        for action in actions:
            world, _ = sequence_motion(seed, subject, action, bones, frames_per_sequence)
            points = coco_points(world)                                # (N, 17, 3) world metres
            pixels = [project_to_pixels(points, cam) for cam in cameras]
            if noise:
                rng = np.random.default_rng([seed, zlib.crc32(f"{subject}/{action}/coco".encode())])
                pixels = [detections(px, cam, rng) for px, cam in zip(pixels, cameras)]
            positions_2d[subject][action] = pixels
    path = Path(out_dir) / f"data_2d_{name}_{keypoints}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz(path, positions_2d=positions_2d, metadata=COCO_METADATA)
    return path
