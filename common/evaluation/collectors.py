"""What an evaluation keeps of each scored group: the collectors.

The evaluation (common.evaluation.evaluate) samples a group of windows, scores it, and hands it (a
GroupView) to each collector it was asked for; a collector keeps per sequence what it needs
(its state, in SequenceResult.kept[name]) and says how its states merge across the processes
of a distributed evaluation (common.evaluation.merge):
- a per-group collector (the scores) is given a fresh state for each group there, and the
  groups' states are combined in the single-process group order;
- a per-frame collector writes per-frame arrays, window after window (the slots it writes of
  each window: `slots`), and each frame's value comes from the process whose group writes it
  last.

A new consumer of evaluation results is a Collector subclass named in COLLECTORS; an evaluation
asks for it with EvalSettings(keep={name, ...}). The scores are always collected.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch

from ..inference import aggregation as agg
from ..model.device import to_host
from .metrics import (BONE_CV, MOTION_ORDERS, aggregation_scores, bone_moments, bone_variation,
                      window_motion_errors)
from ..inference.sampling import WindowGroup
from ..uncertainty.frames import FrameRecords


@dataclass
class GroupView:
    """One sampled and scored group of windows, as the collectors see it (tensors on the
    evaluation's device; hypotheses root-relative with the root at zero)."""

    seq: object                   # common.datasets.base.Sequence
    group: WindowGroup
    hyps: torch.Tensor            # (n, K, H, F, J, 3)
    x2d: torch.Tensor             # (n, F, J, 2) the 2D that J-Agg reprojects onto
    gt: torch.Tensor              # (n, F, J, 3)
    traj: torch.Tensor            # (n, F, 1, 3)
    cam: torch.Tensor             # (n, 9)
    weights: np.ndarray           # (n, F) each frame's weight in the scores
    choice_weights: torch.Tensor | None   # the frames P-Best chooses over (None: all, equally)
    settings: object              # common.evaluation.evaluate.EvalSettings
    protocols: tuple[str, ...]
    parents: tuple | None = None  # the 3D output's skeleton (common.geometry.skeleton.Layout.parents)


class Collector:
    """Keeps something of every group of one evaluation, per sequence."""

    name = ""
    per_group = False             # True: merged group by group (combine); False: per frame (slots)

    def new(self, seq, sampling) -> object:
        """The empty state for one sequence (sampling: common.inference.core.Sampling)."""
        raise NotImplementedError

    def add(self, state, view: GroupView) -> None:
        raise NotImplementedError

    def arrays(self, state) -> list[tuple[str, np.ndarray]]:
        """The state's arrays, named, in a fixed order (views: writing into them writes the state)."""
        raise NotImplementedError

    # per-group collectors
    def load(self, state, named: list[tuple[str, np.ndarray]]) -> None:
        """Fill an empty state from arrays() of another process's state."""
        raise NotImplementedError

    def combine(self, total, part) -> None:
        """Add the state of one group (part) to the sequence's (total)."""
        raise NotImplementedError

    # per-frame collectors
    def slots(self, group: WindowGroup, num_frames: int, settings) -> np.ndarray:
        """(n, F) bool: the frames of each of the group's windows this collector writes."""
        return group.new

    def frame_axis(self, array: np.ndarray) -> int:
        return 0


# ---------------------------------------------------------------------------- the scores

@dataclass
class Scores:
    """Accumulated errors of one sequence: sums[(protocol, mode)] (K,) metres x weight, for the
    protocols p1, p2 and the motion metrics (metrics.MOTION_ORDERS: each window's mean x its
    weight), and bones[mode] (3, K, bones), the moments of every bone's length (metrics.bone_moments)."""

    sums: dict = field(default_factory=lambda: defaultdict(float))
    weight: float = 0.0
    bones: dict = field(default_factory=dict)

    def table(self) -> dict:
        """sums, with each mode's bone-length variation (metrics.bone_variation) x weight under
        (BONE_CV, mode): what the report's tables average."""
        return {**self.sums, **{(BONE_CV, m): bone_variation(b) * self.weight for m, b in self.bones.items()}}


class ScoreCollector(Collector):
    """Per protocol and aggregation mode, the weighted sum of every frame's mean joint error; of
    the unaligned poses, the motion errors and the bone lengths' moments."""

    name = "scores"
    per_group = True

    def new(self, seq, sampling) -> Scores:
        return Scores()

    def add(self, state: Scores, view: GroupView) -> None:
        weights = torch.from_numpy(view.weights).to(view.hyps.device)
        sums, bones = {}, {}
        for protocol in view.protocols:
            per_joint, answers = aggregation_scores(view.hyps, view.gt, view.x2d, view.traj, view.cam,
                                                    protocol2=(protocol == "p2"), weights=view.choice_weights,
                                                    parents=view.parents)
            for mode, e in per_joint.items():                       # e: (n, K, F, J)
                sums[(protocol, mode)] = (e.mean(dim=-1) * weights[:, None, :]).sum(dim=(0, 2))
            if protocol == "p1":
                for mode, answer in answers.items():
                    poses = agg.poses_of(view.hyps, answer)          # (n, K, F, J, 3)
                    for name, order in MOTION_ORDERS.items():
                        if poses.shape[2] > order:
                            per_window = window_motion_errors(poses, view.gt, weights, order)   # (n, K)
                            sums[(name, mode)] = (per_window.nan_to_num() * weights.sum(dim=1, keepdim=True)).sum(0)
                    bones[mode] = bone_moments(poses, weights, view.parents)
        parts = [*sums.values(), *bones.values()]
        host = torch.cat([t.double().flatten() for t in parts]).cpu().numpy()   # one transfer for every score
        rows = np.split(host, np.cumsum([t.numel() for t in parts])[:-1])
        for key, row in zip(sums, rows):
            state.sums[key] = state.sums[key] + row
        for (mode, b), row in zip(bones.items(), rows[len(sums):]):
            state.bones[mode] = state.bones.get(mode, 0) + row.reshape(tuple(b.shape))
        state.weight += float(view.weights.sum())

    def arrays(self, state: Scores) -> list[tuple[str, np.ndarray]]:
        return [("weight", np.array([state.weight], np.float64)),
                *((f"{p}/{m}", np.asarray(v, np.float64)) for (p, m), v in state.sums.items()),
                *((f"bones/{m}", np.asarray(v, np.float64)) for m, v in state.bones.items())]

    def load(self, state: Scores, named: list[tuple[str, np.ndarray]]) -> None:
        for name, a in named:
            if name == "weight":
                state.weight = float(a[0])
            elif name.startswith("bones/"):
                state.bones[name.split("/", 1)[1]] = a.copy()
            else:
                state.sums[tuple(name.split("/", 1))] = a.copy()

    def combine(self, total: Scores, part: Scores) -> None:
        for key, v in part.sums.items():
            total.sums[key] = total.sums[key] + v
        for mode, b in part.bones.items():
            total.bones[mode] = total.bones.get(mode, 0) + b
        total.weight += part.weight


# ---------------------------------------------------------------------------- kept per-frame poses

def kept_slots(group: WindowGroup, num_frames: int, exact_frames: bool) -> np.ndarray:
    """(n, F) bool: the frames of a group's windows that its kept poses are written to: every
    frame (a later window's frames replace an earlier one's, as the authors' export does), or with
    exact_frames (and for sequences shorter than a window) each frame from its first window."""
    if exact_frames or num_frames < group.windows.shape[1]:
        return group.new
    return np.ones_like(group.new)


class _Kept(Collector):
    """Per-frame arrays of shape (..., N, J, 3) written window after window."""

    def slots(self, group: WindowGroup, num_frames: int, settings) -> np.ndarray:
        return kept_slots(group, num_frames, settings.exact_frames)

    def frame_axis(self, array: np.ndarray) -> int:
        return array.ndim - 3

    def write(self, named: dict[str, np.ndarray], values: dict[str, np.ndarray], view: GroupView) -> None:
        """values[name] (n, ..., F, J, 3) of each window into named[name] (..., N, J, 3)."""
        written = self.slots(view.group, view.seq.num_frames, view.settings)
        for i, (frames, slots) in enumerate(zip(view.group.windows, written)):
            for name, v in values.items():
                named[name][..., frames[slots], :, :] = v[i][..., slots, :, :]


class PoseCollector(_Kept):
    """Every aggregation mode's pose of every frame and iteration: mode -> (K, N, J, 3) metres,
    root-relative (the MPI-INF-3DHP .mat export, drawing). Its P-Best chooses over all frames of
    the group by default, as the authors' export does (kept_pbest_valid_only: the valid ones)."""

    name = "poses"

    def new(self, seq, sampling) -> dict[str, np.ndarray]:
        n, j = seq.num_frames, seq.pose_2d.shape[1]
        return {m: np.zeros((sampling.iterations, n, j, 3), np.float32) for m in agg.MODES}

    def add(self, state: dict, view: GroupView) -> None:
        s = view.settings
        if s.kept_pbest_valid_only:
            choice = view.choice_weights
        else:
            choice = torch.from_numpy(view.group.new).to(view.hyps.device).float() if s.exact_frames else None
        poses = to_host(dict(agg.aggregate(view.hyps, view.gt, view.x2d, view.traj, view.cam, choice,
                                           parents=view.parents)))
        self.write(state, poses, view)

    def arrays(self, state: dict) -> list[tuple[str, np.ndarray]]:
        return [(f"poses/{m}", a) for m, a in state.items()]


class HypothesisCollector(_Kept):
    """Every hypothesis of every frame and iteration: (K, H, N, J, 3) metres, root-relative."""

    name = "hypotheses"

    def new(self, seq, sampling) -> np.ndarray:
        s = sampling
        return np.zeros((s.iterations, s.hypotheses, seq.num_frames, seq.pose_2d.shape[1], 3), np.float32)

    def add(self, state: np.ndarray, view: GroupView) -> None:
        self.write({"h": state}, to_host({"h": view.hyps}), view)

    def arrays(self, state: np.ndarray) -> list[tuple[str, np.ndarray]]:
        return [("hypotheses", state)]


# ---------------------------------------------------------------------------- per-frame uncertainty records

class FrameCollector(Collector):
    """Per frame, from the window that first covers it, the last iteration's spread and J-Agg
    error (uncertainty), and with poses=True every lifting mode's pose (--save-predictions)."""

    def __init__(self, name: str, poses: bool):
        self.name, self.poses = name, poses

    def new(self, seq, sampling) -> FrameRecords:
        return FrameRecords.empty(seq.num_frames, seq.pose_2d.shape[1], poses=self.poses)

    def add(self, state: FrameRecords, view: GroupView) -> None:
        state.add(view.hyps, view.x2d, view.gt, view.traj, view.cam, view.group.windows, view.group.new,
                  view.parents)

    def arrays(self, state: FrameRecords) -> list[tuple[str, np.ndarray]]:
        return state.arrays()


COLLECTORS: dict[str, Collector] = {c.name: c for c in (
    ScoreCollector(), PoseCollector(), HypothesisCollector(),
    FrameCollector("frames", poses=False), FrameCollector("frame_poses", poses=True))}


def collectors_for(keep) -> list[Collector]:
    """The scores, then the collectors named in keep (EvalSettings.keep) in COLLECTORS' order;
    'frame_poses' (the records with poses) stands in for 'frames'."""
    unknown = set(keep) - set(COLLECTORS) - {"scores"}
    if unknown:
        raise ValueError(f"unknown evaluation output(s) {sorted(unknown)}: choose from {sorted(COLLECTORS)}")
    names = {"scores", *keep}
    if "frame_poses" in names:
        names.discard("frames")
    return [c for n, c in COLLECTORS.items() if n in names]
