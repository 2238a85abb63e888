"""The results of in-the-wild lifting: what the 2D detector found in every frame of a video
(VideoDetections), the 3D output for one person's clip (WildResult) and for every person of a
video (PeopleResult), which lifting.py builds and exports.py writes to files."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..geometry.skeleton import h36m_skeleton_17
from ..inference.aggregation import SHOWN_MODE, lifting_mode
from .exports import write_outputs
from .keypoints import Keypoints2D


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



@dataclass
class WildResult:
    """3D output for one clip; 3D in metres, camera space, root-relative (pelvis = 0)."""

    hypotheses: np.ndarray    # (N, K, H, 17, 3) every iteration's hypotheses
    poses: dict               # mode -> (N, 17, 3): the last iteration's pose by every aggregation mode that
                              # needs no ground truth (common.inference.aggregation.LIFTING_MODES: J-Agg, P-Agg, ...)
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
    uncertainty: np.ndarray | None = None  # (N, 17) mm: radius around each J-Agg joint (common.uncertainty.factors)
    uncertainty_calibrated: bool = False   # radius for `coverage` from fitted factors, else the raw spread
    coverage: float = 0.9
    pose_mode: str = SHOWN_MODE  # the mode whose pose the .json, .csv, .bvh, .trc, .c3d and animation show
    filter: str | None = None    # the smoothing applied to the poses and trajectory (common.in_the_wild.filters)
    person_id: int = 1           # the person's id in the video (1, 2, ... in order of first appearance)

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
        """(N, 17, 3) the pose of `pose_mode`, which the .json, .csv, .bvh, .trc, .c3d and the animation show."""
        return self.poses[lifting_mode(self.pose_mode)]

    def bone_lengths(self) -> np.ndarray:
        """(17,) metres: each joint's distance to its parent in the shown pose, the median over the
        frames (T-Agg's pose has one length per bone: these); 0 for the pelvis."""
        shown = self.shown
        parents = h36m_skeleton_17().parents
        lengths = np.zeros(len(parents))
        child = [j for j, p in enumerate(parents) if p >= 0]
        lengths[child] = np.median(np.linalg.norm(shown[:, child] - shown[:, parents[child]], axis=-1), axis=0)
        return lengths

    def save(self, path) -> Path:
        """Write the result to path, in the format its suffix names (.npz, .json, .csv, .bvh,
        .trc, .c3d; see exports.py)."""
        return write_outputs(self, [path])[0]


@dataclass
class PeopleResult:
    """Every person lifted from one video: one WildResult per person (each with its person_id
    and its own frames, root trajectory and hypotheses), ids ascending."""

    people: list              # [WildResult], ids ascending
    video: VideoDetections | None = None
    warnings: list = field(default_factory=list)   # who was left out and why, one line each
    timings: dict = field(default_factory=dict)    # seconds: decode, detect, lift (all people)

    def __len__(self) -> int:
        return len(self.people)

    def __iter__(self):
        return iter(self.people)

    @property
    def ids(self) -> list[int]:
        return [p.person_id for p in self.people]

    def person(self, person_id: int) -> WildResult:
        """The person with this id."""
        for p in self.people:
            if p.person_id == person_id:
                return p
        raise ValueError(f"no person {person_id} in this video; people: {self.ids}")

    @property
    def longest(self) -> WildResult:
        """The person lifted over the most frames (the lowest id among equals)."""
        return max(self.people, key=lambda p: (len(p.frame_ids), -p.person_id))

    def save(self, path) -> list[Path]:
        """Write every person to path, in the format its suffix names (see exports.py: one file
        holds everyone, except .npz and .bvh: one file per person when there are several)."""
        return write_outputs(self, [path])
