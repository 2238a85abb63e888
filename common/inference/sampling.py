"""Sampling whole sequences of any length: cut each into the model's F-frame evaluation windows,
group the windows, pack groups into denoiser calls, and sample H hypotheses over K DDIM
iterations for each. Evaluation (common.evaluation.evaluate) scores what this yields; in-the-wild lifting
keeps, for every frame, the window that first covers it.

Windows (common.datasets.clips.eval_window_indices): non-overlapping from the start of a sequence,
the last one aligned to its end, short sequences padded. A group is `group` consecutive
windows of one sequence (P-Best chooses per group); its random draws come from a generator
seeded by (seed, group number), so packing several groups into one call (`compute_batch`)
changes speed, never results.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from ..datasets.clips import eval_window_indices
from ..geometry.skeleton import Layout
from ..model.diffusion import DDIMSampler, FlipTTA
from ..geometry.skeleton import flip_pose


@dataclass
class WindowGroup:
    """Consecutive evaluation windows of one sequence, sampled with the same noise generator."""

    seq_index: int
    windows: np.ndarray      # (n, F) frame indices into the sequence
    new: np.ndarray          # (n, F) bool: frame first covered by this window
    group_id: int            # position in sampling order, seeds the group's noise


def window_groups(lengths: list[int], frames: int, group: int) -> list[WindowGroup]:
    """The groups of `group` windows of F frames for sequences of the given lengths, in order."""
    out = []
    for si, n in enumerate(lengths):
        idx, new = eval_window_indices(n, frames)
        for start in range(0, len(idx), group):
            out.append(WindowGroup(si, idx[start:start + group], new[start:start + group], len(out)))
    return out


def pack(groups: list[WindowGroup], compute_batch: int) -> Iterator[list[WindowGroup]]:
    """Whole groups, packed into batches of at most compute_batch windows (a larger group alone)."""
    batch, size = [], 0
    for g in groups:
        if batch and size + len(g.windows) > compute_batch:
            yield batch
            batch, size = [], 0
        batch.append(g)
        size += len(g.windows)
    if batch:
        yield batch


def sampling_batches(lengths: list[int], frames: int, group: int, compute_batch: int = 0) -> list[list[WindowGroup]]:
    """The denoiser calls of a whole evaluation, in order: its groups, packed as sample_windows
    packs them (a call's batch holds the same groups whichever process runs it)."""
    return list(pack(window_groups(lengths, frames, group), max(compute_batch or group, group)))


def group_noise(group_id: int, clips: int, shape_tail, iterations: int, seed: int, device) -> list[torch.Tensor]:
    """The K normal draws (clips, *shape_tail) of one group, from a generator seeded by
    (seed, group id): groups are numbered in sampling order, sequence by sequence."""
    gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + group_id)
    return [torch.randn((clips,) + tuple(shape_tail), generator=gen, device=device) for _ in range(iterations)]


def sample_windows(model, sampler: DDIMSampler, inputs_2d: list[np.ndarray], hypotheses: int, group: int,
                   flip: Layout | None, seed: int, device, compute_batch: int = 0, desc: str = "sampling",
                   progress: bool = True, batches=None) -> Iterator[tuple[WindowGroup, torch.Tensor, torch.Tensor]]:
    """Sample every window of every sequence; yields (group, x2d (n, F, J, 2), hypotheses
    (n, K, H, F, J, 3)) per group, in order. inputs_2d: one (N_i, J, 2) normalised array per sequence;
    flip: the joint layout to mirror with for flip test-time augmentation, None for none.
    batches: only these denoiser calls (indices into sampling_batches), e.g. one process's share."""
    frames = model.cfg.frames
    calls = sampling_batches([len(x) for x in inputs_2d], frames, group, compute_batch)
    if batches is not None:
        calls = [b for i, b in enumerate(calls) if i in batches]
    model.eval()
    bar = tqdm(total=sum(len(b) for b in calls), desc=desc, unit="group", disable=not progress, leave=False)
    for batch in calls:
        x2d = torch.from_numpy(np.concatenate([np.asarray(inputs_2d[g.seq_index][g.windows], np.float32)
                                               for g in batch])).to(device)              # (B, F, J, 2)
        tta = None
        if flip is not None:
            tta = FlipTTA(flip_pose(x2d, flip.kps_left, flip.kps_right), flip.joints_left, flip.joints_right)
        per_group = [group_noise(g.group_id, len(g.windows), (hypotheses, frames, x2d.shape[2], 3),
                                 sampler.iterations, seed, device) for g in batch]
        noise = per_group[0] if len(per_group) == 1 else \
            [torch.cat([draws[k] for draws in per_group]) for k in range(sampler.iterations)]
        with torch.no_grad():
            hyps = sampler.sample(model, x2d, hypotheses, flip=tta, noise=noise)        # (B, K, H, F, J, 3)
        start = 0
        for g in batch:
            rows = slice(start, start + len(g.windows))
            yield g, x2d[rows], hyps[rows]
            start += len(g.windows)
            bar.update(1)
        del x2d, tta, per_group, noise, hyps                # not alive while the next batch is sampled
    bar.close()
