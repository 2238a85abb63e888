"""The unit every data source produces: one camera view of one sequence."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from ..geometry.skeleton import Layout  # noqa: F401  (the data sets' joint layout; it lives with the skeletons)


class DatasetError(ValueError):
    """A data file is missing or malformed; the message says which and what to do."""


@dataclass
class Sequence:
    """One camera view of one recorded sequence.

    pose_2d: (N, J, 2) float32, normalised screen units (see common.geometry.camera).
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


@dataclass(frozen=True)
class Selection:
    """Which sequences of a data set to use (the data flags): training and test subjects
    (None: all), actions by name prefix (None: all), the training subset fraction and a frame
    stride."""

    subjects_train: list | None = None
    subjects_test: list | None = None
    actions: list | None = None
    subset: float = 1.0
    downsample: int = 1


def flags_label(run) -> str:
    """A data set as the run's data flags name it: '<-d> (-k <-k>)'."""
    return f"{run.dataset} (-k {run.keypoints})"


class Dataset(ABC):
    """What every data source offers the training and evaluation code: its joint layout, the
    names of its 3D joints and a label for people, and its training and test sequences (with 3D
    ground truth, camera-space metres, root-relative)."""

    name: str = ""
    layout: Layout
    joint_names: list[str] | None = None    # the 3D joints in order (reports name them); None: by index

    def label(self, run, sequences) -> str:
        """What a run (its RunConfig) trained or evaluated on, for people, e.g. the data an
        uncertainty fit used: by default the data flags, '<-d> (-k <-k>)'."""
        return flags_label(run)

    @abstractmethod
    def train_sequences(self, selection: Selection) -> list[Sequence]:
        """The training sequences the selection asks for."""

    @abstractmethod
    def test_sequences(self, selection: Selection) -> list[Sequence]:
        """The test sequences the selection asks for (every frame; subset does not apply)."""
