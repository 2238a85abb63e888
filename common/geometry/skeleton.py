"""Kinematic skeletons: parent lists, left/right joints, joint removal, flipping; the joint Layout
that the data, the clips, the model and the sampler share."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

H36M_METADATA = Path(__file__).resolve().parents[1] / "constants" / "h36m_metadata.json"


@dataclass(frozen=True)
class Layout:
    """Joint layout of a data set, carried from the dataset to the clips, the sampler and the
    aggregation: left/right joints of the 3D output and of the 2D input (for flip
    augmentation and flip test-time augmentation), and the 2D input's joint order ('h36m':
    Human3.6M-17, 'coco': COCO-17; the 3D output is Human3.6M-17 either way); parents: the 3D
    output's skeleton, each joint's parent (None: Human3.6M-17's), for the aggregations that
    use bones."""

    joints_left: tuple
    joints_right: tuple
    kps_left: tuple
    kps_right: tuple
    input_name: str = "h36m"
    parents: tuple | None = None

    def __post_init__(self):
        for name in ("joints_left", "joints_right", "kps_left", "kps_right"):
            object.__setattr__(self, name, tuple(int(j) for j in getattr(self, name)))
        if self.parents is not None:
            object.__setattr__(self, "parents", tuple(int(j) for j in self.parents))


class Skeleton:
    """A tree of joints given by each joint's parent (-1 for the root)."""

    def __init__(self, parents, joints_left, joints_right, names=None):
        assert len(joints_left) == len(joints_right)
        self.parents = np.asarray(parents, dtype=np.int64)
        self.joints_left = list(joints_left)
        self.joints_right = list(joints_right)
        self.names = list(names) if names is not None else None

    def num_joints(self) -> int:
        return len(self.parents)

    def bones(self):
        """(child, parent) pairs, root excluded."""
        return [(j, int(p)) for j, p in enumerate(self.parents) if p >= 0]

    def remove_joints(self, joints_to_remove) -> list[int]:
        """Remove joints in place, re-parenting children to the nearest kept ancestor.
        Returns the kept joint indices (into the old skeleton)."""
        remove = set(joints_to_remove)
        kept = [j for j in range(self.num_joints()) if j not in remove]
        new_index = {old: new for new, old in enumerate(kept)}
        parents = []
        for j in kept:
            p = int(self.parents[j])
            while p >= 0 and p in remove:
                p = int(self.parents[p])
            parents.append(new_index[p] if p >= 0 else -1)
        self.parents = np.asarray(parents, dtype=np.int64)
        self.joints_left = [new_index[j] for j in self.joints_left if j in new_index]
        self.joints_right = [new_index[j] for j in self.joints_right if j in new_index]
        if self.names is not None:
            self.names = [self.names[j] for j in kept]
        return kept


def flip_pose(x, joints_left, joints_right):
    """Mirror poses horizontally: negate x and swap left/right joints. x is (..., J, C)
    (C = 2 or 3); numpy or torch; returns a new array."""
    perm = list(range(x.shape[-2]))
    for l, r in zip(joints_left, joints_right):
        perm[l], perm[r] = r, l
    out = x[..., perm, :]
    out = out.clone() if isinstance(out, torch.Tensor) else out.copy()
    out[..., 0] *= -1
    return out


@lru_cache(maxsize=1)
def h36m_metadata() -> dict:
    """Human3.6M cameras and skeleton constants (the project's copy of the metadata)."""
    with open(H36M_METADATA) as f:
        return json.load(f)


def h36m_skeleton_32() -> Skeleton:
    s = h36m_metadata()["skeleton_32"]
    return Skeleton(s["parents"], s["joints_left"], s["joints_right"])


def h36m_skeleton_17() -> Skeleton:
    s = h36m_metadata()["skeleton_17"]
    return Skeleton(s["parents"], s["joints_left"], s["joints_right"], s["names"])


H36M_JOINTS_LEFT = [4, 5, 6, 11, 12, 13]
H36M_JOINTS_RIGHT = [1, 2, 3, 14, 15, 16]


H36M_FPS: int = h36m_metadata()["fps"]   # Human3.6M's frame rate (50), also the synthetic set's
