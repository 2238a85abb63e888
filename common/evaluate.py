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

Kept per-frame poses (keep_poses: the MPI-INF-3DHP .mat export, drawing) follow the authors'
export by default: the end-aligned last window's predictions overwrite the earlier window's
frames in the overlap (with exact_frames the earlier window's frames stay, as they are the
ones scored), and the kept P-Best poses choose their hypothesis by the mean error over all
frames of the group, invalid ones included (kept_pbest_valid_only: valid frames, as the
scored P-Best does). Compute batching (`compute_batch`) packs several groups
into one denoiser call; it changes speed only: the random draws are made per group.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch

from . import aggregation as agg
from .datasets.base import Sequence
from .device import to_host
from .inference import InferenceCore
from .metrics import AGGREGATION_MODES, aggregation_joint_errors
from .sampling import WindowGroup
from .uncertainty_frames import FrameRecords

PROTOCOLS = ("p1", "p2")


@dataclass
class EvalSettings:
    """How an evaluation scores and what it keeps; how it samples is its InferenceCore's."""

    protocol2: bool = False
    exact_frames: bool = False
    keep_poses: bool = False             # keep aggregated poses per frame (export, rendering)
    keep_hypotheses: bool = False        # keep all hypotheses per frame (rendering)
    kept_pbest_valid_only: bool = False  # kept P-Best poses: choose over valid frames only (default: all frames)
    keep_frames: bool = False            # per-frame spread and J-Agg error of the last iteration (uncertainty)
    keep_frame_poses: bool = False       # ... and the lifting modes' poses (--save-predictions)
    progress: bool = True


def settings_record(core: InferenceCore, settings: EvalSettings) -> dict:
    """The settings of an evaluation as its JSON records them (what it sampled and scored with)."""
    s = core.sampling
    return {"layout": dataclasses.asdict(core.layout), "hypotheses": s.hypotheses, "iterations": s.iterations,
            "flip": s.flip, "group": s.group, "compute_batch": s.compute_batch, "protocol2": settings.protocol2,
            "exact_frames": settings.exact_frames, "seed": s.seed,
            "kept_pbest_valid_only": settings.kept_pbest_valid_only, "progress": settings.progress}


@dataclass
class SequenceResult:
    """Accumulated errors of one sequence: sums[(protocol, mode)] (K,) metres x weight."""

    sequence: Sequence
    sums: dict = field(default_factory=lambda: defaultdict(float))
    weight: float = 0.0
    poses: dict | None = None            # mode -> (K, N, J, 3) metres, root-relative
    hypotheses: np.ndarray | None = None  # (K, H, N, J, 3)
    frames: FrameRecords | None = None    # per-frame records of the last iteration, each frame once

    def error(self, protocol: str, mode: str) -> np.ndarray:
        return self.sums[(protocol, mode)] / self.weight


def evaluate_sequences(core: InferenceCore, sequences: list[Sequence], settings: EvalSettings,
                       desc: str = "evaluating", shard=None) -> list[SequenceResult]:
    """Sample (with the core), aggregate and score every sequence (which must carry pose_3d,
    traj and cam). shard: one process's share of a distributed evaluation
    (common.distributed_merge.Shard): only its denoiser calls run, and each group is scored into
    the result shard.target gives."""
    h, k, device = core.sampling.hypotheses, core.sampling.iterations, core.device
    results = [SequenceResult(seq) for seq in sequences]
    protocols = PROTOCOLS if settings.protocol2 else PROTOCOLS[:1]
    if settings.keep_poses or settings.keep_hypotheses:
        for r in results:
            n, j = r.sequence.num_frames, r.sequence.pose_2d.shape[1]
            if settings.keep_poses:
                r.poses = {m: np.zeros((k, n, j, 3), np.float32) for m in AGGREGATION_MODES}
            if settings.keep_hypotheses:
                r.hypotheses = np.zeros((k, h, n, j, 3), np.float32)
    if settings.keep_frames or settings.keep_frame_poses:
        for r in results:
            r.frames = FrameRecords.empty(r.sequence.num_frames, r.sequence.pose_2d.shape[1],
                                          poses=settings.keep_frame_poses)
    for g, x2d, hyps in core.sample_windows([s.pose_2d for s in sequences], desc, settings.progress,
                                            None if shard is None else shard.batches):
        seq = sequences[g.seq_index]
        target = results[g.seq_index] if shard is None else shard.target(g, results[g.seq_index])
        _score_group(target, hyps, _reprojection_target(seq, g.windows, x2d), g,
                     *_gather(seq, g.windows), seq, settings, protocols, device)
        del x2d, hyps                                   # freed before the next group is sampled
    return results


def _gather(seq: Sequence, windows: np.ndarray):
    """Window arrays of a sequence: 3D (n, F, J, 3), traj (n, F, 1, 3), cam (n, 9)."""
    cam = np.repeat(seq.cam[None], len(windows), axis=0) if seq.cam is not None else None
    return seq.pose_3d[windows], seq.traj[windows], cam


def _reprojection_target(seq: Sequence, windows: np.ndarray, x2d: torch.Tensor) -> torch.Tensor:
    """The 2D that J-Agg compares reprojections with: the input x2d (n, F, J, 2), unless the
    sequence carries extra['reproj_2d'] (N, J, 2), its 2D in the 3D output's joint layout
    (e.g. COCO input mapped to Human3.6M joints)."""
    if "reproj_2d" not in seq.extra:
        return x2d
    return torch.from_numpy(np.asarray(seq.extra["reproj_2d"][windows], dtype=np.float32)).to(x2d.device)


def _score_group(result: SequenceResult, hyps, x2d, group: WindowGroup, g3d, gtraj, gcam, seq: Sequence,
                 settings: EvalSettings, protocols, device) -> None:
    root = seq.root_index
    hyps = hyps.clone()
    hyps[..., root, :] = 0
    gt = torch.from_numpy(g3d).to(device)
    traj = torch.from_numpy(gtraj).to(device)
    cam = torch.from_numpy(gcam).to(device)
    weights_np = np.ones(group.windows.shape, np.float32)      # made on the host: its sum needs no device wait
    if settings.exact_frames:
        weights_np = weights_np * group.new
    if seq.valid is not None:
        weights_np = weights_np * seq.valid[group.windows].astype(np.float32)
    weights = torch.from_numpy(weights_np).to(device)
    choice_weights = weights if (settings.exact_frames or seq.valid is not None) else None
    sums = {}
    for protocol in protocols:
        per_joint = aggregation_joint_errors(hyps, gt, x2d, traj, cam, protocol2=(protocol == "p2"),
                                             weights=choice_weights)
        for mode, e in per_joint.items():                       # e: (B, K, F, J)
            per_frame = e.mean(dim=-1)                          # (B, K, F)
            sums[(protocol, mode)] = (per_frame * weights[:, None, :]).sum(dim=(0, 2))
    host = torch.stack(list(sums.values())).double().cpu().numpy()     # one transfer for every score
    for key, row in zip(sums, host):
        result.sums[key] = result.sums[key] + row
    result.weight += float(weights_np.sum())
    if result.frames is not None:
        result.frames.add(hyps, x2d, gt, traj, cam, group.windows, group.new)
    if result.poses is not None or result.hypotheses is not None:
        keep_choice = choice_weights if settings.kept_pbest_valid_only else (
            torch.from_numpy(group.new).to(device).float() if settings.exact_frames else None)
        written = kept_slots(group, seq.num_frames, settings.exact_frames)
        _keep(result, hyps, x2d, gt, traj, cam, group.windows, written, keep_choice)


def kept_slots(group: WindowGroup, num_frames: int, exact_frames: bool) -> np.ndarray:
    """(n, F) bool: the frames of a group's windows that its kept poses are written to."""
    if exact_frames or num_frames < group.windows.shape[1]:
        return group.new
    return np.ones_like(group.new)


_HYPOTHESES = "_hypotheses"    # the hypotheses' key among the kept poses' arrays (not a mode name)


def _keep(result: SequenceResult, hyps, x2d, gt, traj, cam, windows: np.ndarray, written: np.ndarray,
          choice_weights) -> None:
    """Write this group's aggregated poses (and hypotheses) into per-frame arrays: the slots
    `written` (n, F) of every window, window after window, so a later window's frames replace
    an earlier one's where both are written."""
    kept = {}
    if result.poses is not None:
        kept = dict(agg.aggregate(hyps, gt, x2d, traj, cam, choice_weights))    # mode -> (B, K, F, J, 3)
    if result.hypotheses is not None:
        kept[_HYPOTHESES] = hyps                                           # (B, K, H, F, J, 3)
    kept = to_host(kept)                                                   # one transfer
    hyps_np = kept.pop(_HYPOTHESES, None)
    poses = kept
    for i, (frames, slots) in enumerate(zip(windows, written)):
        frames = frames[slots]
        for mode, p in (poses or {}).items():
            result.poses[mode][:, frames] = p[i][:, slots]
        if hyps_np is not None:
            result.hypotheses[:, :, frames] = hyps_np[i][:, :, slots]
