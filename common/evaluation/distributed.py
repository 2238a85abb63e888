"""Evaluation across processes (torchrun, one or many nodes) with the numbers of one process.

    torchrun --nproc_per_node 8 main.py --evaluate best_epoch.bin -num_proposals 20 -sampling_timesteps 10 -b 4

The unit of work is one denoiser call of the single-process run, spread over the processes by a
plan every process computes alike (common.evaluation.plan), so nothing but results is sent.

Each process scores its calls group by group into fresh per-group results; rank 0 gathers the
per-group sums (float64), weights and the kept per-frame poses as plain tensors (a JSON header
says what they hold; nothing is unpickled) and adds the groups up in the single-process group
order (common.evaluation.merge), so every sum, table and .mat file is the one a single process
writes. This module is the exchange between the processes and its entry, evaluate_distributed.

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
import json
import socket
import time

import numpy as np
import torch
import torch.distributed as dist

from .collectors import collectors_for
from .merge import Aborted, DistributedEvaluationError, Shard, merge, payload, writers
from .plan import Plan, plan_evaluation
from .evaluate import EvalSettings, SequenceResult, evaluate_sequences

EXCHANGE_TIMEOUT_S = 1800.0     # the longest a finished process waits for the others (at least)
PLAN_WARNING_SHARE = 0.5        # warn when the slowest process gets this much more than an even share


# ---------------------------------------------------------------- the exchange

def _fingerprint(core, sequences, settings: EvalSettings, plan: Plan) -> str:
    """What every process must share for the results to fit together: the selection and its
    2D input, the sampling and scoring settings, the plan, the weights (when the model has
    parameters); hashed bytes, so it does not depend on a device's or thread count's rounding."""
    model = core.model
    h = hashlib.sha256()
    h.update(json.dumps([[s.subject, s.action, int(s.camera), int(s.num_frames)] for s in sequences]).encode())
    h.update(repr(sorted((k, sorted(v) if isinstance(v, frozenset) else v)    # a set's order differs by process
                         for k, v in vars(settings).items() if k != "progress")).encode())
    h.update(repr((core.sampling, core.layout)).encode())
    h.update(repr((plan.costs, plan.owner)).encode())
    for s in sequences:
        h.update(np.ascontiguousarray(s.pose_2d).tobytes())
    if hasattr(model, "parameters"):
        for p in model.parameters():
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


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
        from torch.distributed.distributed_c10d import _get_default_store   # private torch API: absent in some versions

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
    """evaluate_sequences (with core, a common.inference.core.InferenceCore) across the processes of
    info (common.run.distributed.DistInfo): rank 0 returns the results of a single process, the
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

    collectors = collectors_for(settings.keep)
    owners = writers(plan, lengths, collectors, settings)
    header, blob = {}, np.zeros(0)
    if error is None and not aborted:
        try:
            header, blob = payload(shard, results, collectors, owners, info.rank)
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
    return merge(headers, [b[:int(n[1])].numpy() for b, n in zip(blobs, sizes)], sequences, plan, collectors, owners,
                 results, core.sampling)
