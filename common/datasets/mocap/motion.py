"""A motion: Human3.6M-17 joint positions over time, in Human3.6M's world frame (metres,
z up), at a known frame rate; and what every reader does after its own format: axes, floor,
frame rate.

Human3.6M-17 order (common.geometry.skeleton): 0 pelvis, 1 right hip, 2 right knee, 3 right
ankle, 4 left hip, 5 left knee, 6 left ankle, 7 spine (mid torso), 8 thorax, 9 neck/nose,
10 head (near the top of the head), 11 left shoulder, 12 left elbow, 13 left wrist,
14 right shoulder, 15 right elbow, 16 right wrist.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...geometry.skeleton import h36m_skeleton_17

H36M_NAMES = tuple(h36m_skeleton_17().names)
TRAINING_FPS = 50.0           # Human3.6M's frame rate: what the converted motion is resampled to
ANKLE_HEIGHT = 0.08           # metres above the floor of the lowest ankle (Human3.6M's ankle joint)

# From a y-up frame (BVH, DeepMimic, ASF/AMC: x right, y up, z towards the viewer) to Human3.6M's
# z-up world: x stays, the old y becomes z, the old z becomes -y (a proper rotation).
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


class MotionError(ValueError):
    """A motion file that cannot be read or converted; the message names the file and the fix."""


@dataclass
class Motion:
    """joints (N, 17, 3) float64 metres in Human3.6M's world (z up), fps frames per second."""

    name: str
    joints: np.ndarray
    fps: float
    source: str = ""          # the file it was read from

    def __post_init__(self):
        j = np.asarray(self.joints, np.float64)
        if j.ndim != 3 or j.shape[1:] != (17, 3):
            raise MotionError(f"{self.source or self.name}: joints of shape {j.shape}, expected (frames, 17, 3)")
        if len(j) < 2:
            raise MotionError(f"{self.source or self.name}: {len(j)} frame(s); a motion needs at least 2")
        if not np.isfinite(j).all():
            raise MotionError(f"{self.source or self.name}: NaN or infinite joint positions; fill or cut those frames")
        if not self.fps > 0:
            raise MotionError(f"{self.source or self.name}: frame rate {self.fps}; give a positive one")
        self.joints = j

    @property
    def seconds(self) -> float:
        return (len(self.joints) - 1) / self.fps


def from_y_up(points: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """(..., 3) points of a y-up frame in its units -> Human3.6M's z-up world in metres."""
    return np.asarray(points, np.float64) @ Y_UP_TO_Z_UP.T * scale


def place_on_floor(joints: np.ndarray) -> np.ndarray:
    """Shift a motion (N, 17, 3) vertically so that its lowest ankle over the whole clip is
    ANKLE_HEIGHT above z = 0, and horizontally so that its first pelvis is above the origin."""
    out = joints.copy()
    out[..., 2] -= joints[:, [3, 6], 2].min() - ANKLE_HEIGHT
    out[..., :2] -= joints[0, 0, :2]
    return out


def resample(joints: np.ndarray, fps: float, target: float = TRAINING_FPS) -> np.ndarray:
    """(N, 17, 3) at fps -> at target frames per second (linear interpolation in time)."""
    if abs(fps - target) < 1e-6:
        return joints.copy()
    n = len(joints)
    times = np.arange(0.0, (n - 1) / fps + 1e-9, 1.0 / target)
    pos = times * fps
    lo = np.minimum(np.floor(pos).astype(int), n - 1)
    hi = np.minimum(lo + 1, n - 1)
    w = (pos - lo)[:, None, None]
    return joints[lo] * (1 - w) + joints[hi] * w


def normalized(motion: Motion, fps: float = TRAINING_FPS) -> Motion:
    """The motion on the floor and at the training frame rate."""
    return Motion(motion.name, place_on_floor(resample(motion.joints, motion.fps, fps)), fps, motion.source)
