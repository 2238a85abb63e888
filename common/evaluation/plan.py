"""The plan of an evaluation across processes (common.evaluation.distributed): the unit of work is one
denoiser call of the single-process run (common.inference.sampling.sampling_batches: whole P-Best groups,
packed as -b and --eval-batch pack them), so a call holds the same windows whichever process
makes it, and each group's noise is seeded by its group number. The calls are spread by
longest-processing-time-first: largest first (ties: the earlier call), each to the process with
the least work so far (ties: the lowest rank); a call's cost is its number of windows, as every
window costs the same H x K denoiser passes. Every process can compute the plan, so nothing but
results is sent. The plan also says which rank writes each frame of a per-frame collector last."""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from ..inference.sampling import WindowGroup, sampling_batches


def balance(costs, world_size: int) -> list[int]:
    """The rank of every item: longest-processing-time-first greedy, deterministic (largest
    first, ties by index; each to the least-loaded rank, ties by rank)."""
    if world_size < 1:
        raise ValueError(f"world size {world_size}: need at least 1 process")
    owner = [0] * len(costs)
    loads = [(0.0, r) for r in range(world_size)]          # a heap of (load, rank)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        load, rank = heapq.heappop(loads)
        owner[i] = rank
        heapq.heappush(loads, (load + costs[i], rank))
    return owner


@dataclass
class Plan:
    """The denoiser calls of an evaluation (common.inference.sampling.sampling_batches) and the rank of each."""

    batches: list[list[WindowGroup]]
    owner: list[int]
    world_size: int

    @property
    def costs(self) -> list[int]:
        return [sum(len(g.windows) for g in b) for b in self.batches]

    def loads(self) -> list[int]:
        """Windows per rank."""
        out = [0] * self.world_size
        for c, r in zip(self.costs, self.owner):
            out[r] += c
        return out

    def batches_of(self, rank: int) -> set[int]:
        return {i for i, r in enumerate(self.owner) if r == rank}

    def group_owner(self) -> dict[int, int]:
        return {g.group_id: r for b, r in zip(self.batches, self.owner) for g in b}

    def groups(self) -> list[WindowGroup]:
        """All groups in single-process order."""
        return [g for b in self.batches for g in b]

    def describe(self) -> str:
        loads = self.loads()
        return (f"{sum(loads)} windows in {len(self.batches)} denoiser calls over {self.world_size} processes: "
                f"{min(loads)}-{max(loads)} windows each")

    def imbalance(self) -> float:
        """How much more work the busiest rank has than an even share (0: perfectly even)."""
        loads = self.loads()
        return max(loads) * self.world_size / max(1, sum(loads)) - 1.0


def plan_evaluation(lengths: list[int], frames: int, group: int, compute_batch: int, world_size: int) -> Plan:
    batches = sampling_batches(lengths, frames, group, compute_batch)
    costs = [sum(len(g.windows) for g in b) for b in batches]
    return Plan(batches, balance(costs, world_size), world_size)


def last_writers(plan: Plan, lengths: list[int], slots) -> list[np.ndarray]:
    """Per sequence, (N,) the rank whose group writes each frame last, as the single-process run
    writes window after window the slots slots(group, num_frames) -> (n, F) bool; -1 for a frame
    no group writes."""
    out = [np.full(n, -1, np.int64) for n in lengths]
    owner = plan.group_owner()
    for g in plan.groups():
        for frames, written in zip(g.windows, slots(g, lengths[g.seq_index])):
            out[g.seq_index][frames[written]] = owner[g.group_id]
    return out
