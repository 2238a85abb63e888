"""Multi-process training with DistributedDataParallel, launched by torchrun.

    torchrun --nproc_per_node 4 main.py -k cpn_ft_h36m_dbb -c checkpoint --nolog
    torchrun --nnodes 2 --node_rank R --master_addr HOST --nproc_per_node 8 main.py ...

Each process trains on its share of every global batch (ranks take consecutive batches of
the one shuffled epoch), draws the diffusion noise of the whole global batch from a shared
generator and keeps its slice, and DDP averages the gradients: N processes with `-b B` train
like one process with `-b N*B`. Only rank 0 validates, logs and writes checkpoints; the
checkpoints hold the unwrapped model, so they are interchangeable between 1 and N processes.
Evaluation under torchrun (the same launch lines with --evaluate): common.evaluation.distributed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# How long a rank waits in a collective for the others (minutes; D3DP_DIST_TIMEOUT overrides).
# Rank 0 alone validates after every epoch and calibrates after the last (--calibrate at H=20
# K=10 on the full test set takes far longer than NCCL's default 10 minutes) while the other
# ranks wait at their next collective.
DEFAULT_TIMEOUT_MINUTES = 360


def collective_timeout() -> timedelta:
    """The process group's timeout: D3DP_DIST_TIMEOUT minutes, else DEFAULT_TIMEOUT_MINUTES."""
    text = os.environ.get("D3DP_DIST_TIMEOUT", "")
    try:
        minutes = float(text) if text else DEFAULT_TIMEOUT_MINUTES
    except ValueError:
        raise ValueError(f"D3DP_DIST_TIMEOUT={text!r} is not a number of minutes: set e.g. D3DP_DIST_TIMEOUT=360") from None
    if minutes <= 0:
        raise ValueError(f"D3DP_DIST_TIMEOUT={text} minutes: give a positive number of minutes")
    return timedelta(minutes=minutes)


def init_from_env(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE,
    LOCAL_RANK); NCCL on CUDA, gloo on the CPU, both with collective_timeout(). Returns
    (info, this process's device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=collective_timeout())
    return info, device


def wrap(model: torch.nn.Module, info: DistInfo, device: torch.device):
    """The DDP wrapper when distributed, else None (train the model itself)."""
    if not info.enabled:
        return None
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def mean_over_ranks(value: float, weight: float, info: DistInfo, device) -> float:
    """Weighted mean of a per-rank value over all ranks; device: this process's (NCCL
    reduces only tensors on the GPU, gloo on the CPU)."""
    if not info.enabled:
        return value
    t = torch.tensor([value * weight, weight], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t[0] / t[1])


def gather_states(states: list[torch.Tensor], info: DistInfo, device) -> list[list[torch.Tensor]]:
    """Every rank's list of byte tensors (RNG states; the same sizes on every rank), on the
    CPU, indexed by rank. Every rank must call it at the same point."""
    if not info.enabled:
        return [[s.cpu() for s in states]]
    out = [[] for _ in range(info.world_size)]
    for state in states:
        t = state.to(device)
        parts = [torch.empty_like(t) for _ in range(info.world_size)]
        dist.all_gather(parts, t)
        for rank, part in enumerate(parts):
            out[rank].append(part.cpu())
    return out


def agreed_stop(signum: int, info: DistInfo, device) -> int:
    """All ranks' answer to "stop?": the largest signal number any rank holds (0: go on).
    Every rank must call it at the same point; it also acts as a barrier."""
    if not info.enabled:
        return signum
    t = torch.tensor([signum], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t[0])


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
