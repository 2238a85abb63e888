"""One process's share of an evaluation across processes (common.evaluation.distributed) and putting
the shares together, collector by collector (common.evaluation.collectors): each process gives its
per-group collectors (the scores) a fresh state for every group it samples (Shard); their
arrays, then the frames of the per-frame collectors' arrays this rank writes last, become one
header and one float64 blob (payload); rank 0 combines the groups in the single-process group
order and takes each frame from its last writer (merge), so every sum, table and .mat file is
the one a single process writes."""
from __future__ import annotations

import copy

import numpy as np

from .collectors import Collector
from .plan import Plan, last_writers
from .evaluate import SequenceResult, new_results
from ..inference.sampling import WindowGroup


class DistributedEvaluationError(ValueError):
    """An evaluation under torchrun failed on some process (a ValueError, so the entry scripts
    report it in one line); nothing was written."""


class Aborted(Exception):
    """This process stopped its share because another process failed."""


class Shard:
    """One process's denoiser calls, and the per-group states its evaluation collects into.
    should_stop: called before each group; True stops the share (raises Aborted)."""

    def __init__(self, batches: set[int], should_stop=None):
        self.batches = batches
        self.per_group: dict[int, dict] = {}          # group id -> {collector name: state}
        self.should_stop = should_stop

    def target(self, group: WindowGroup, result: SequenceResult, collectors: list[Collector], sampling) -> dict:
        """The states one group is collected into: fresh ones for the per-group collectors, the
        sequence's own for the per-frame collectors."""
        if self.should_stop is not None and self.should_stop():
            raise Aborted()
        fresh = {c.name: c.new(result.sequence, sampling) for c in collectors if c.per_group}
        self.per_group[group.group_id] = fresh
        return {**result.kept, **fresh}


def writers(plan: Plan, lengths: list[int], collectors: list[Collector], settings) -> dict[str, list[np.ndarray]]:
    """Per per-frame collector, per sequence, (N,) the rank that writes each frame last."""
    return {c.name: last_writers(plan, lengths, lambda g, n, c=c: c.slots(g, n, settings))
            for c in collectors if not c.per_group}


def _frames(a: np.ndarray, axis: int) -> np.ndarray:
    """A view of a with its frame axis first."""
    return np.moveaxis(a, axis, 0)


def _group_arrays(states: dict, collectors: list[Collector]) -> list[tuple[str, np.ndarray]]:
    return [(f"{c.name}:{n}", a) for c in collectors if c.per_group for n, a in c.arrays(states[c.name])]


def payload(shard: Shard, results: list[SequenceResult], collectors: list[Collector],
            owners: dict[str, list[np.ndarray]], rank: int):
    """(header dict, float64 blob) of one process's results: per group its per-group states'
    arrays, then per sequence the frames of each per-frame collector this rank writes last."""
    groups = list(shard.per_group)
    names, shapes = [], []
    if groups:
        first = _group_arrays(shard.per_group[groups[0]], collectors)
        names, shapes = [n for n, _ in first], [list(np.shape(a)) for _, a in first]
    parts = []
    for gid in groups:
        named = _group_arrays(shard.per_group[gid], collectors)
        if [n for n, _ in named] != names:
            raise RuntimeError(f"group {gid} was scored with other keys ({[n for n, _ in named]}) than group "
                               f"{groups[0]}")
        parts.extend(np.asarray(a, np.float64).ravel() for _, a in named)
    for c in collectors:
        if c.per_group:
            continue
        for r, frames_owner in zip(results, owners[c.name]):
            mine = np.flatnonzero(frames_owner == rank)
            for _, a in c.arrays(r.kept[c.name]):
                parts.append(_frames(a, c.frame_axis(a))[mine].astype(np.float64).ravel())
    blob = np.concatenate(parts) if parts else np.zeros(0, np.float64)
    header = {"groups": groups, "names": names, "shapes": shapes, "values": int(blob.size)}
    return header, blob


def merge(headers: list[dict], blobs: list[np.ndarray], sequences, plan: Plan, collectors: list[Collector],
          owners: dict[str, list[np.ndarray]], template: list[SequenceResult], sampling) -> list[SequenceResult]:
    """Rank 0: the single-process results from every rank's parts: the per-group states combined
    in group order, each frame of the per-frame states from its last writer. template: rank 0's
    own results (the frames no process writes keep its values)."""
    per_group, names, ends = {}, None, []
    for rank, (h, blob) in enumerate(zip(headers, blobs)):
        if h["groups"]:
            if names is None:
                names = h["names"]
            elif h["names"] != names:
                raise DistributedEvaluationError(f"rank {rank} scored other quantities ({h['names']}) than the "
                                                 f"others ({names}): run the same version everywhere")
        pos = 0
        for gid in h["groups"]:
            arrays = {}
            for name, shape in zip(h["names"], h["shapes"]):
                size = int(np.prod(shape, dtype=np.int64))
                arrays[name] = blob[pos:pos + size].reshape(shape).copy()
                pos += size
            per_group[gid] = arrays
        ends.append(pos)
    expected = [g.group_id for g in plan.groups()]
    if sorted(per_group) != sorted(expected):
        missing = sorted(set(expected) - set(per_group))
        raise DistributedEvaluationError(f"the processes returned {len(per_group)} of {len(expected)} groups "
                                         f"(missing e.g. {missing[:5]}): run the same version and data everywhere")
    grouped = [c for c in collectors if c.per_group]
    results = new_results(sequences, grouped, sampling)
    for g in plan.groups():                                   # the single-process order of additions
        for c in grouped:
            part = c.new(sequences[g.seq_index], sampling)
            prefix = f"{c.name}:"
            c.load(part, [(n[len(prefix):], a) for n, a in per_group[g.group_id].items() if n.startswith(prefix)])
            c.combine(results[g.seq_index].kept[c.name], part)
    framed = [c for c in collectors if not c.per_group]
    for r, t in zip(results, template):
        r.kept.update({c.name: copy.deepcopy(t.kept[c.name]) for c in framed})
    for rank, (pos, blob) in enumerate(zip(ends, blobs)):
        for c in framed:
            for r, frames_owner in zip(results, owners[c.name]):
                mine = np.flatnonzero(frames_owner == rank)
                for _, a in c.arrays(r.kept[c.name]):
                    view = _frames(a, c.frame_axis(a))
                    size = len(mine) * int(np.prod(view.shape[1:], dtype=np.int64))
                    view[mine] = blob[pos:pos + size].reshape((len(mine),) + view.shape[1:]).astype(a.dtype)
                    pos += size
        if pos != len(blob):
            raise DistributedEvaluationError(f"rank {rank} sent {len(blob)} values, {pos} were expected: "
                                             f"run the same version and data everywhere")
    return results
