"""Evaluation: sample H hypotheses for every window of every test sequence, aggregate them
four ways, and accumulate errors per sequence, as the authors' protocol does.

The authors' protocol (default):
- a sequence is cut into non-overlapping F-frame windows; the last is aligned to the end;
- P-Best chooses one hypothesis per group of `-b` windows of one sequence;
- each group adds (clips x frames) x its mean error, so frames in the overlap of the last
  window count twice; an action's error is the frame-weighted mean of its sequences and the
  reported average is the plain mean over action groups.
With exact_frames every frame counts once (overlapping frames are dropped from the later
window, also in P-Best's choice).

What an evaluation keeps besides its scores is asked for by name (EvalSettings.keep) and kept
by a collector (common.evaluation.collectors). Kept per-frame poses ("poses": the MPI-INF-3DHP .mat
export, drawing) follow the authors'
export by default: the end-aligned last window's predictions overwrite the earlier window's
frames in the overlap (with exact_frames the earlier window's frames stay, as they are the
ones scored), and the kept P-Best poses choose their hypothesis by the mean error over all
frames of the group, invalid ones included (kept_pbest_valid_only: valid frames, as the
scored P-Best does). Compute batching (`compute_batch`) packs several groups
into one denoiser call; it changes speed only: the random draws are made per group.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from .collectors import GroupView, collectors_for
from ..datasets.base import Sequence
from ..inference.core import InferenceCore

PROTOCOLS = ("p1", "p2")


@dataclass
class EvalSettings:
    """How an evaluation scores and what it keeps; how it samples is its InferenceCore's.
    keep: names of common.evaluation.collectors.COLLECTORS ("poses", "hypotheses", "frames",
    "frame_poses") besides the scores."""

    protocol2: bool = False
    exact_frames: bool = False
    keep: frozenset = frozenset()
    kept_pbest_valid_only: bool = False  # kept P-Best poses: choose over valid frames only (default: all frames)
    progress: bool = True

    def __post_init__(self):
        self.keep = frozenset(self.keep)
        collectors_for(self.keep)                          # an unknown name is refused here

    def keeping(self, *names: str) -> "EvalSettings":
        """These settings, keeping these outputs too."""
        return dataclasses.replace(self, keep=self.keep | set(names))


def settings_record(core: InferenceCore, settings: EvalSettings) -> dict:
    """The settings of an evaluation as its JSON records them (what it sampled and scored with)."""
    s = core.sampling
    return {"layout": dataclasses.asdict(core.layout), "hypotheses": s.hypotheses, "iterations": s.iterations,
            "flip": s.flip, "group": s.group, "compute_batch": s.compute_batch, "protocol2": settings.protocol2,
            "exact_frames": settings.exact_frames, "seed": s.seed,
            "kept_pbest_valid_only": settings.kept_pbest_valid_only, "progress": settings.progress}


@dataclass
class SequenceResult:
    """What an evaluation collected of one sequence: kept[name] is the state of the collector
    of that name (common.evaluation.collectors); the scores are always there."""

    sequence: Sequence
    kept: dict = field(default_factory=dict)

    @property
    def sums(self) -> dict:
        """{(protocol, mode): (K,) metres (BONE_CV: a fraction) x weight} (collectors.Scores.table)."""
        return self.kept["scores"].table()

    @property
    def weight(self) -> float:
        return self.kept["scores"].weight

    @property
    def poses(self) -> dict | None:
        """mode -> (K, N, J, 3) metres, root-relative (kept with "poses")."""
        return self.kept.get("poses")

    @property
    def hypotheses(self) -> np.ndarray | None:
        """(K, H, N, J, 3) (kept with "hypotheses")."""
        return self.kept.get("hypotheses")

    @property
    def frames(self):
        """common.uncertainty.frames.FrameRecords of the last iteration, each frame once (kept
        with "frames", or "frame_poses" with the lifting modes' poses)."""
        return self.kept.get("frame_poses", self.kept.get("frames"))

    def error(self, protocol: str, mode: str) -> np.ndarray:
        return self.sums[(protocol, mode)] / self.weight


def new_results(sequences: list[Sequence], collectors, sampling) -> list[SequenceResult]:
    return [SequenceResult(seq, {c.name: c.new(seq, sampling) for c in collectors}) for seq in sequences]


def evaluate_sequences(core: InferenceCore, sequences: list[Sequence], settings: EvalSettings,
                       desc: str = "evaluating", shard=None) -> list[SequenceResult]:
    """Sample (with the core), aggregate and score every sequence (which must carry pose_3d,
    traj and cam), and keep what settings.keep asks for. shard: one process's share of a
    distributed evaluation (common.evaluation.merge.Shard): only its denoiser calls run, and
    each group's per-group states are the ones shard.target gives."""
    collectors = collectors_for(settings.keep)
    results = new_results(sequences, collectors, core.sampling)
    protocols = PROTOCOLS if settings.protocol2 else PROTOCOLS[:1]
    for g, x2d, hyps in core.sample_windows([s.pose_2d for s in sequences], desc, settings.progress,
                                            None if shard is None else shard.batches):
        seq = sequences[g.seq_index]
        kept = results[g.seq_index].kept if shard is None else shard.target(g, results[g.seq_index], collectors,
                                                                           core.sampling)
        view = _view(seq, g, hyps, _reprojection_target(seq, g.windows, x2d), settings, protocols, core.device,
                     core.layout.parents)
        for c in collectors:
            c.add(kept[c.name], view)
        del x2d, hyps, view                              # freed before the next group is sampled
    return results


def _view(seq: Sequence, group, hyps, x2d, settings: EvalSettings, protocols, device, parents=None) -> GroupView:
    hyps = hyps.clone()
    hyps[..., seq.root_index, :] = 0
    cam = np.repeat(seq.cam[None], len(group.windows), axis=0) if seq.cam is not None else None
    weights = np.ones(group.windows.shape, np.float32)      # made on the host: its sum needs no device wait
    if settings.exact_frames:
        weights = weights * group.new
    if seq.valid is not None:
        weights = weights * seq.valid[group.windows].astype(np.float32)
    choice = torch.from_numpy(weights).to(device) if (settings.exact_frames or seq.valid is not None) else None
    as_tensor = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return GroupView(seq, group, hyps, x2d, as_tensor(seq.pose_3d[group.windows]), as_tensor(seq.traj[group.windows]),
                     as_tensor(cam), weights, choice, settings, protocols, parents)


def _reprojection_target(seq: Sequence, windows: np.ndarray, x2d: torch.Tensor) -> torch.Tensor:
    """The 2D that J-Agg compares reprojections with: the input x2d (n, F, J, 2), unless the
    sequence carries extra['reproj_2d'] (N, J, 2), its 2D in the 3D output's joint layout
    (e.g. COCO input mapped to Human3.6M joints)."""
    if "reproj_2d" not in seq.extra:
        return x2d
    return torch.from_numpy(np.asarray(seq.extra["reproj_2d"][windows], dtype=np.float32)).to(x2d.device)
