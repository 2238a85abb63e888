"""DeepMimic motion files (JSON: {"Loop": ..., "Frames": [[duration, root position (3),
root rotation (4), chest, neck, right hip, right knee, right ankle, right shoulder, right elbow,
left hip, left knee, left ankle, left shoulder, left elbow], ...]}) of DeepMimic's 3D humanoid,
turned into Human3.6M-17 joints by forward kinematics.

The humanoid's frame: x forward, y up, z to its right, metres. Rotations are quaternions
(w, x, y, z) of each joint relative to its parent (the root's is global); the knees and elbows
are hinges with one angle (radians) about their z axis. The link offsets below are those of
DeepMimic's humanoid3d character (MIT licence, (c) 2018 Xue Bin Peng).

Human3.6M-17 from the humanoid, joint by joint:
- pelvis: the root; hips, knees, ankles: the hip, knee and ankle joints (the humanoid's hips
  are 0.17 m apart, narrower than Human3.6M's average 0.27 m);
- spine: the chest joint (0.24 m above the root, where Human3.6M's spine joint lies);
- thorax: the neck joint (at shoulder height, the base of the neck);
- neck_nose: 0.12 m above the neck joint and 0.05 m forward, in the head's frame (the
  humanoid's head is one sphere; Human3.6M's joint 9 lies about the nose, 0.12 m above the thorax);
- head: 0.235 m above the neck joint, 0.02 m forward, in the head's frame (near the top of the
  head, as Human3.6M's joint 10; the humanoid's head sphere reaches 0.28 m);
- shoulders, elbows, wrists: the shoulder, elbow and wrist joints.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .motion import Motion, MotionError, from_y_up

FRAME_VALUES = 44
# name: (parent, offset from the parent's joint in the parent's frame, rotation slice in a frame, hinge)
LINKS = {
    "root": (None, (0.0, 0.0, 0.0), slice(4, 8), False),
    "chest": ("root", (0.0, 0.236151, 0.0), slice(8, 12), False),
    "neck": ("chest", (0.0, 0.223894, 0.0), slice(12, 16), False),
    "right_hip": ("root", (0.0, 0.0, 0.084887), slice(16, 20), False),
    "right_knee": ("right_hip", (0.0, -0.421546, 0.0), slice(20, 21), True),
    "right_ankle": ("right_knee", (0.0, -0.40987, 0.0), slice(21, 25), False),
    "right_shoulder": ("chest", (-0.02405, 0.2435, 0.18311), slice(25, 29), False),
    "right_elbow": ("right_shoulder", (0.0, -0.274788, 0.0), slice(29, 30), True),
    "right_wrist": ("right_elbow", (0.0, -0.258947, 0.0), None, False),
    "left_hip": ("root", (0.0, 0.0, -0.084887), slice(30, 34), False),
    "left_knee": ("left_hip", (0.0, -0.421546, 0.0), slice(34, 35), True),
    "left_ankle": ("left_knee", (0.0, -0.40987, 0.0), slice(35, 39), False),
    "left_shoulder": ("chest", (-0.02405, 0.2435, -0.18311), slice(39, 43), False),
    "left_elbow": ("left_shoulder", (0.0, -0.274788, 0.0), slice(43, 44), True),
    "left_wrist": ("left_elbow", (0.0, -0.258947, 0.0), None, False),
}
NOSE = (0.05, 0.12, 0.0)          # in the neck joint's frame
HEAD_TOP = (0.02, 0.235, 0.0)
H36M_FROM_LINKS = ("root", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "chest",
                   "neck", None, None, "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow",
                   "right_wrist")


def quaternion_matrices(q: np.ndarray) -> np.ndarray:
    """(N, 4) quaternions (w, x, y, z), normalised here -> (N, 3, 3) rotation matrices."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], 1)


def hinge_matrices(angle: np.ndarray) -> np.ndarray:
    """(N,) angles (radians) about z -> (N, 3, 3)."""
    c, s = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(c), np.ones_like(c)
    return np.stack([np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1), np.stack([zero, zero, one], -1)], 1)


def forward_kinematics(frames: np.ndarray) -> np.ndarray:
    """(N, 44) DeepMimic frames -> (N, 17, 3) Human3.6M-17 joints in the humanoid's y-up frame."""
    n = len(frames)
    position, rotation = {}, {}
    for name, (parent, offset, values, hinge) in LINKS.items():
        if values is None:
            local = np.broadcast_to(np.eye(3), (n, 3, 3))
        else:
            local = hinge_matrices(frames[:, values.start]) if hinge else quaternion_matrices(frames[:, values])
        if parent is None:
            position[name], rotation[name] = frames[:, 1:4], local
        else:
            position[name] = position[parent] + rotation[parent] @ np.asarray(offset)
            rotation[name] = rotation[parent] @ local
    joints = [position[name] if name else None for name in H36M_FROM_LINKS]
    joints[9] = position["neck"] + rotation["neck"] @ np.asarray(NOSE)
    joints[10] = position["neck"] + rotation["neck"] @ np.asarray(HEAD_TOP)
    return np.stack(joints, axis=1)


def read_deepmimic(path) -> Motion:
    """A DeepMimic humanoid motion file -> Motion (not yet on the floor nor resampled)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        frames = np.asarray(data["Frames"], np.float64)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise MotionError(f"{path}: not a DeepMimic motion file ({type(e).__name__}: {e}); it must be JSON with "
                          f"a 'Frames' list of {FRAME_VALUES} numbers per frame") from None
    if frames.ndim != 2 or frames.shape[1] != FRAME_VALUES:
        raise MotionError(f"{path}: frames of shape {frames.shape}; DeepMimic's 3D humanoid has {FRAME_VALUES} "
                          f"values per frame (other characters are not supported)")
    durations = frames[:-1, 0] if len(frames) > 1 else frames[:, 0]
    if not (durations > 0).all():
        raise MotionError(f"{path}: a frame duration is not positive; each frame starts with its duration in seconds")
    return Motion(path.stem, from_y_up(forward_kinematics(frames)), 1.0 / float(np.median(durations)), str(path))
