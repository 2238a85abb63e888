"""Evaluation across processes (torchrun, one or many nodes) with the numbers of one process.

    torchrun --nproc_per_node 8 main.py --evaluate best_epoch.bin -num_proposals 20 -sampling_timesteps 10 -b 4

The unit of work is one denoiser call of the single-process run (common.sampling.sampling_batches:
whole P-Best groups, packed as -b and --eval-batch pack them), so a call holds the same windows
whichever process makes it, and each group's noise is seeded by its group number. The calls are
spread by longest-processing-time-first: largest first (ties: the earlier call), each to the
process with the least work so far (ties: the lowest rank); a call's cost is its number of
windows, as every window costs the same H x K denoiser passes. Every process can compute the
plan, so nothing but results is sent.

Each process scores its calls group by group into fresh per-group results; rank 0 gathers the
per-group sums (float64), weights and the kept per-frame poses as plain tensors (a JSON header
says what they hold; nothing is unpickled) and adds the groups up in the single-process group
order, so every sum, table and .mat file is the one a single process writes.

Failures: a process whose evaluation raises sends its error instead of results and marks the
run failed in the process group's store, where the others look before each group and stop;
rank 0 raises DistributedEvaluationError naming the rank and the error, and writes nothing.
A process that dies is noticed by rank 0 when it reaches the exchange (the connection to it
closes; torchrun also stops the other processes of its node at once). The exchange runs over
its own gloo group on the CPU, on CUDA too (NCCL cannot name a missing rank); a rank still
computing is waited for up to EXCHANGE_TIMEOUT_S, or twice this process's own time if longer.
"""
from __future__ import annotations

import datetime
import hashlib
import heapq
import json
import socket
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from .evaluate import EvalSettings, SequenceResult, evaluate_sequences, kept_slots
from .sampling import WindowGroup, sampling_batches

EXCHANGE_TIMEOUT_S = 1800.0     # the longest a finished process waits for the others (at least)
PLAN_WARNING_SHARE = 0.5        # warn when the slowest process gets this much more than an even share


class DistributedEvaluationError(ValueError):
    """An evaluation under torchrun failed on some process (a ValueError, so the entry scripts
    report it in one line); nothing was written."""


# ---------------------------------------------------------------- the plan

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
    """The denoiser calls of an evaluation (common.sampling.sampling_batches) and the rank of each."""

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


def frame_owners(plan: Plan, lengths: list[int], exact_frames: bool) -> list[np.ndarray]:
    """Per sequence, (N,) the rank whose group writes each frame's kept pose last (as the
    single-process run writes window after window), -1 for a frame no group writes."""
    out = [np.full(n, -1, np.int64) for n in lengths]
    owner = plan.group_owner()
    for g in plan.groups():
        slots = kept_slots(g, lengths[g.seq_index], exact_frames)
        for frames, written in zip(g.windows, slots):
            out[g.seq_index][frames[written]] = owner[g.group_id]
    return out


def record_owners(plan: Plan, lengths: list[int]) -> list[np.ndarray]:
    """Per sequence, (N,) the rank whose group records each frame's per-frame uncertainty
    (FrameRecords: the window that first covers the frame), -1 for none."""
    out = [np.full(n, -1, np.int64) for n in lengths]
    owner = plan.group_owner()
    for g in plan.groups():
        for frames, new in zip(g.windows, g.new):
            out[g.seq_index][frames[new]] = owner[g.group_id]
    return out


# ---------------------------------------------------------------- one process's share

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


def _fingerprint(core, sequences, settings: EvalSettings, plan: Plan) -> str:
    """What every process must share for the results to fit together: the selection and its
    2D input, the sampling and scoring settings, the plan, the weights (when the model has
    parameters); hashed bytes, so it does not depend on a device's or thread count's rounding."""
    model = core.model
    h = hashlib.sha256()
    h.update(json.dumps([[s.subject, s.action, int(s.camera), int(s.num_frames)] for s in sequences]).encode())
    h.update(repr(sorted((k, v) for k, v in vars(settings).items() if k != "progress")).encode())
    h.update(repr((core.sampling, core.layout)).encode())
    h.update(repr((plan.costs, plan.owner)).encode())
    for s in sequences:
        h.update(np.ascontiguousarray(s.pose_2d).tobytes())
    if hasattr(model, "parameters"):
        for p in model.parameters():
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _payload(shard: Shard, results: list[SequenceResult], owners: list[np.ndarray], rank: int,
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


def _merge(headers: list[dict], blobs: list[np.ndarray], sequences, plan: Plan, owners: list[np.ndarray],
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


# ---------------------------------------------------------------- the exchange

def _gather_padded(t: torch.Tensor, length: int, group, world_size: int, rank: int) -> list[torch.Tensor] | None:
    """Gather 1-D tensors of up to `length` elements on rank 0 (padded, then trimmed by the caller)."""
    padded = torch.zeros(length, dtype=t.dtype)
    padded[:len(t)] = t
    out = [torch.zeros(length, dtype=t.dtype) for _ in range(world_size)] if rank == 0 else None
    dist.gather(padded, out, dst=0, group=group)
    return out


def _describe_error(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:2000]


def _wait_for_rank0(group) -> None:
    """Block until rank 0 has reported and gone away (its connection closes), or the group's timeout,
    so that this process's failure cannot stop rank 0 (torchrun stops a node's other
    processes once one fails) before rank 0 has printed the error."""
    try:
        dist.recv(torch.zeros(1), src=0, group=group)
    except RuntimeError:
        pass


_RUNS = [0]          # evaluations so far in this process (every rank counts the same), names store keys


def _store():
    """The process group's key-value store (rank 0's or torchrun's), or None."""
    try:
        from torch.distributed.distributed_c10d import _get_default_store

        return _get_default_store()
    except Exception:                                    # another init method or torch version
        return None


def _mark(store, key: str) -> None:
    if store is not None:
        try:
            store.set(key, "1")
        except Exception:
            pass


def _marked(store, key: str) -> bool:
    if store is None:
        return False
    try:
        return bool(store.check([key]))
    except Exception:
        return False


def _unfinished(store, prefix: str, world_size: int) -> list[int] | None:
    """Ranks that did not say they finished their share (None: unknown, e.g. the store is gone)."""
    if store is None:
        return None
    try:
        return [r for r in range(world_size) if not store.check([f"{prefix}/finished/{r}"])]
    except Exception:
        return None


def _verdict(headers: list[dict], world_size: int) -> str:
    """Rank 0: why the results cannot be merged ('' when they can)."""
    failed = [h for h in headers if h["error"]]
    if failed:
        why = "; ".join(f"rank {h['rank']} ({h['host']}): {h['error']}" for h in failed)
        return f"the evaluation failed on {len(failed)} of {world_size} processes, nothing was written: {why}"
    if any(h["aborted"] for h in headers):
        return "the evaluation was stopped on another process's request; nothing was written"
    odd = [h["rank"] for h in headers if h["fingerprint"] != headers[0]["fingerprint"]]
    if odd:
        return (f"rank(s) {', '.join(map(str, odd))} evaluated other data, settings or weights than rank 0; "
                f"give every process the same files and flags (nothing was written)")
    return ""


def _check_in(group, store, prefix: str, world_size: int, elapsed: float) -> None:
    """Wait for every process to finish its share; a process that died or never comes is named."""
    timeout = datetime.timedelta(seconds=max(EXCHANGE_TIMEOUT_S, 2 * elapsed))
    try:
        dist.monitored_barrier(group=group, timeout=timeout, wait_all_ranks=True)
    except RuntimeError as e:
        lost = _unfinished(store, prefix, world_size)
        who = f"rank {', '.join(map(str, lost))}" if lost else "a process"
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise DistributedEvaluationError(
            f"the evaluation across {world_size} processes failed: {who} stopped (crashed or was "
            f"killed) before finishing its share, or did not finish within {timeout.total_seconds():.0f} s "
            f"of this one ({detail}); nothing was written") from None


def evaluate_distributed(core, sequences, settings: EvalSettings, info, desc: str = "evaluating",
                         log=print) -> list[SequenceResult] | None:
    """evaluate_sequences (with core, a common.inference.InferenceCore) across the processes of
    info (common.distributed.DistInfo): rank 0 returns the results of a single process, the
    other ranks None. Raises DistributedEvaluationError (on every rank) when any process failed."""
    lengths = [s.num_frames for s in sequences]
    plan = plan_evaluation(lengths, core.frames, core.sampling.group, core.sampling.compute_batch, info.world_size)
    group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=EXCHANGE_TIMEOUT_S))
    log(f"evaluating across {info.world_size} processes: {plan.describe()}")
    if plan.imbalance() > PLAN_WARNING_SHARE:
        log(f"warning: the evaluation makes only {len(plan.batches)} denoiser calls (of up to "
            f"{max(plan.costs)} windows) for {info.world_size} processes, so some processes idle; "
            f"a smaller --eval-batch, or -b / --pbest-group (it changes P-Best's groups), gives more calls")
    _RUNS[0] += 1
    store, prefix = _store(), f"d3dp_eval/{_RUNS[0]}"
    shard = Shard(plan.batches_of(info.rank), should_stop=lambda: _marked(store, f"{prefix}/failed"))
    fingerprint = _fingerprint(core, sequences, settings, plan)
    start = time.perf_counter()
    error, results, aborted = None, None, False
    try:
        results = evaluate_sequences(core, sequences, settings, desc, shard=shard)
    except Aborted:                                      # another process failed: stop early
        aborted = True
    except Exception as e:                               # reported through rank 0, then raised again
        error = e
        _mark(store, f"{prefix}/failed")                 # the others stop at their next group
    elapsed = time.perf_counter() - start
    _mark(store, f"{prefix}/finished/{info.rank}")
    _check_in(group, store, prefix, info.world_size, elapsed)

    owners = frame_owners(plan, lengths, settings.exact_frames)
    recorders = record_owners(plan, lengths)
    header, blob = {}, np.zeros(0)
    if error is None and not aborted:
        try:
            header, blob = _payload(shard, results, owners, info.rank, recorders)
        except Exception as e:
            error = e
    header.update(rank=info.rank, host=socket.gethostname(), fingerprint=fingerprint, aborted=aborted,
                  seconds=elapsed, error=None if error is None else _describe_error(error))
    try:
        head = torch.frombuffer(bytearray(json.dumps(header).encode()), dtype=torch.uint8)
        sizes = [torch.zeros(2, dtype=torch.int64) for _ in range(info.world_size)]
        dist.all_gather(sizes, torch.tensor([len(head), len(blob)], dtype=torch.int64), group=group)
        heads = _gather_padded(head, max(int(n[0]) for n in sizes), group, info.world_size, info.rank)
        verdict, message, headers = torch.zeros(1, dtype=torch.int64), "", None
        if info.is_main:
            headers = [json.loads(bytes(h[:int(n[0])].tolist()).decode()) for h, n in zip(heads, sizes)]
            message = _verdict(headers, info.world_size)
            verdict[0] = int(bool(message))
        dist.broadcast(verdict, src=0, group=group)
        if not int(verdict[0]):
            blobs = _gather_padded(torch.from_numpy(blob), max(int(n[1]) for n in sizes), group, info.world_size,
                                   info.rank)
    except RuntimeError as e:
        raise DistributedEvaluationError(f"a process stopped while the results were exchanged ({e}); "
                                         f"nothing was written") from None
    if int(verdict[0]):
        if info.is_main:
            dist.destroy_process_group(group)            # the others wait for this, then stop too
            raise DistributedEvaluationError(message) from error
        _wait_for_rank0(group)
        if error is not None:
            raise error
        raise DistributedEvaluationError("the evaluation failed on another process; rank 0 reports why")
    dist.destroy_process_group(group)
    if not info.is_main:
        return None
    seconds = [h["seconds"] for h in headers]
    log(f"the {info.world_size} processes' shares took {min(seconds):.1f}-{max(seconds):.1f} s")
    return _merge(headers, [b[:int(n[1])].numpy() for b, n in zip(blobs, sizes)], sequences, plan, owners, results, recorders)
