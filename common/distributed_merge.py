"""One process's share of an evaluation across processes (common.distributed_eval) and putting
the shares together: each process scores its denoiser calls group by group into fresh per-group
results (Shard); its per-group sums (float64), weights and the per-frame arrays it writes last
become one header and one float64 blob (payload); rank 0 adds the groups up in the
single-process group order (merge), so every sum, table and .mat file is the one a single
process writes."""
from __future__ import annotations

import numpy as np

from .distributed_plan import Plan
from .evaluate import SequenceResult
from .sampling import WindowGroup


class DistributedEvaluationError(ValueError):
    """An evaluation under torchrun failed on some process (a ValueError, so the entry scripts
    report it in one line); nothing was written."""


class Aborted(Exception):
    """This process stopped its share because another process failed."""


class Shard:
    """One process's denoiser calls, and the per-group results its evaluation scores into.
    should_stop: called before each group; True stops the share (raises Aborted)."""

    def __init__(self, batches: set[int], should_stop=None):
        self.batches = batches
        self.per_group: dict[int, SequenceResult] = {}
        self.should_stop = should_stop

    def target(self, group: WindowGroup, result: SequenceResult) -> SequenceResult:
        """A fresh result for one group's sums and weight, sharing the sequence's kept arrays."""
        if self.should_stop is not None and self.should_stop():
            raise Aborted()
        part = SequenceResult(result.sequence, poses=result.poses, hypotheses=result.hypotheses, frames=result.frames)
        self.per_group[group.group_id] = part
        return part


def _kept_arrays(result: SequenceResult) -> list[tuple[str, np.ndarray]]:
    """The per-frame arrays a result keeps (frame axis: ndim - 3), in a fixed order."""
    out = [(f"poses/{m}", a) for m, a in (result.poses or {}).items()]
    if result.hypotheses is not None:
        out.append(("hypotheses", result.hypotheses))
    return out


def _record_arrays(result: SequenceResult) -> list[tuple[str, np.ndarray]]:
    """The per-frame uncertainty records a result keeps (frame axis 0), in a fixed order."""
    return [] if result.frames is None else result.frames.arrays()


def _take_frames(a: np.ndarray, frames: np.ndarray) -> np.ndarray:
    return np.moveaxis(np.moveaxis(a, a.ndim - 3, 0)[frames], 0, a.ndim - 3)


def payload(shard: Shard, results: list[SequenceResult], owners: list[np.ndarray], rank: int,
             recorders: list[np.ndarray] | None = None):
    """(header dict, float64 blob) of one process's results: per group its weight and sums,
    then the kept frames this rank writes last, sequence by sequence."""
    groups = list(shard.per_group)
    keys, sizes, shapes = [], [], []
    if groups:
        first = shard.per_group[groups[0]].sums
        keys = list(first)
        shapes = [list(np.shape(first[k])) for k in keys]
        sizes = [int(np.size(first[k])) for k in keys]
    parts = []
    for gid in groups:
        part = shard.per_group[gid]
        if list(part.sums) != keys:
            raise RuntimeError(f"group {gid} was scored with other keys ({list(part.sums)}) than group {groups[0]}")
        parts.append(np.array([part.weight], np.float64))
        parts.extend(np.asarray(part.sums[k], np.float64).ravel() for k in keys)
    for r, frames_owner in zip(results, owners):
        mine = np.flatnonzero(frames_owner == rank)
        for _, a in _kept_arrays(r):
            parts.append(_take_frames(a, mine).astype(np.float64).ravel())
    for r, frames_owner in zip(results, recorders or []):
        mine = np.flatnonzero(frames_owner == rank)
        for _, a in _record_arrays(r):
            parts.append(a[mine].astype(np.float64).ravel())
    blob = np.concatenate(parts) if parts else np.zeros(0, np.float64)
    header = {"groups": groups, "keys": [list(k) for k in keys], "shapes": shapes, "sizes": sizes,
              "values": int(blob.size)}
    return header, blob


def merge(headers: list[dict], blobs: list[np.ndarray], sequences, plan: Plan, owners: list[np.ndarray],
           template: list[SequenceResult], recorders: list[np.ndarray] | None = None) -> list[SequenceResult]:
    """Rank 0: the single-process results from every rank's per-group parts, summed in group order."""
    per_group, key_list = {}, None
    kept_values = []
    for rank, (h, blob) in enumerate(zip(headers, blobs)):
        keys = [tuple(k) for k in h["keys"]]
        if h["groups"]:
            if key_list is None:
                key_list = keys
            elif keys != key_list:
                raise DistributedEvaluationError(f"rank {rank} scored other quantities ({keys}) than the "
                                                 f"others ({key_list}): run the same version everywhere")
        pos = 0
        for gid in h["groups"]:
            weight = float(blob[pos])
            pos += 1
            sums = {}
            for k, size, shape in zip(keys, h["sizes"], h["shapes"]):
                sums[k] = blob[pos:pos + size].reshape(shape).copy()
                pos += size
            per_group[gid] = (weight, sums)
        kept_values.append((pos, blob))
    expected = [g.group_id for g in plan.groups()]
    if sorted(per_group) != sorted(expected):
        missing = sorted(set(expected) - set(per_group))
        raise DistributedEvaluationError(f"the processes returned {len(per_group)} of {len(expected)} groups "
                                         f"(missing e.g. {missing[:5]}): run the same version and data everywhere")
    results = [SequenceResult(s) for s in sequences]
    for g in plan.groups():                                   # the single-process order of additions
        weight, sums = per_group[g.group_id]
        r = results[g.seq_index]
        for k, v in sums.items():
            r.sums[k] = r.sums[k] + v
        r.weight += weight
    for r, t in zip(results, template):                       # kept arrays: each frame from its last writer
        if t.poses is not None:
            r.poses = {m: np.zeros_like(a) for m, a in t.poses.items()}
        if t.hypotheses is not None:
            r.hypotheses = np.zeros_like(t.hypotheses)
        if t.frames is not None:
            r.frames = t.frames.zeros_like()
    for rank, (pos, blob) in enumerate(kept_values):
        for r, frames_owner in zip(results, owners):
            mine = np.flatnonzero(frames_owner == rank)
            for _, a in _kept_arrays(r):
                shape = list(a.shape)
                shape[a.ndim - 3] = len(mine)
                size = int(np.prod(shape))
                values = blob[pos:pos + size].reshape(shape).astype(a.dtype)
                np.moveaxis(a, a.ndim - 3, 0)[mine] = np.moveaxis(values, a.ndim - 3, 0)
                pos += size
        for r, frames_owner in zip(results, recorders or []):
            mine = np.flatnonzero(frames_owner == rank)
            for _, a in _record_arrays(r):
                size = len(mine) * int(np.prod(a.shape[1:]))
                a[mine] = blob[pos:pos + size].reshape((len(mine),) + a.shape[1:]).astype(a.dtype)
                pos += size
        if pos != len(blob):
            raise DistributedEvaluationError(f"rank {rank} sent {len(blob)} values, {pos} were expected: "
                                             f"run the same version and data everywhere")
    return results
