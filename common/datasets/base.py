"""The unit every data source produces: one camera view of one sequence."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class DatasetError(ValueError):
    """A data file is missing or malformed; the message says which and what to do."""


@dataclass
class Sequence:
    """One camera view of one recorded sequence.

    pose_2d: (N, J, 2) float32, normalised screen units (see common.camera).
    pose_3d: (N, J, 3) float32, metres, camera space, root-relative (root joint = 0);
             None when there is no 3D ground truth (in-the-wild input).
    traj:    (N, 1, 3) float32, metres, camera space: the root joint's absolute position
             (used by JPMA reprojection); None when unknown.
    cam:     (9,) float32 normalised intrinsics [fx, fy, cx, cy, k1, k2, k3, p1, p2], or None.
    valid:   (N,) bool, frames that count in evaluation (MPI-INF-3DHP); None = all.
    """

    subject: str
    action: str
    camera: int
    pose_2d: np.ndarray
    pose_3d: np.ndarray | None = None
    traj: np.ndarray | None = None
    cam: np.ndarray | None = None
    res_w: int = 1000
    res_h: int = 1000
    root_index: int = 0
    valid: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return self.pose_2d.shape[0]

    @property
    def action_group(self) -> str:
        """Human3.6M action group: the part of the action name before the first space."""
        return self.action.split(" ")[0]

    @property
    def name(self) -> str:
        return f"{self.subject}/{self.action}/cam{self.camera}"


@dataclass
class Layout:
    """Joint layout of a data set: left/right joints of the 3D output and of the 2D input
    (for flip augmentation and flip test-time augmentation)."""

    joints_left: list
    joints_right: list
    kps_left: list
    kps_right: list
