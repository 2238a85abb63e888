"""Splitting one sampling iteration's denoiser work into calls of a good size.

Nothing here changes a result: it decides how many clip-hypotheses one denoiser call sees.
On the CPU a call whose activations stay about cache-sized runs fastest; on a GPU a call is
as large as a quarter of the GPU's memory allows (benchmarks/README.md has the measurements).
"""
from __future__ import annotations

import torch

# Working-set budget of one denoiser call on the CPU: one (tokens, C) float32 activation of a
# call stays about cache-sized, past which the memory-bound layers slow down.
CPU_ACTIVATION_BUDGET = 4 * 2 ** 20


def hypothesis_chunks(batch: int, hypotheses: int, limit: int | None):
    """Split B clips x H hypotheses into (clip slice, hypothesis slice) pieces of at most
    `limit` clip-hypotheses each (None: one piece). Whole clips are grouped while H fits."""
    if limit is None or batch * hypotheses <= limit:
        yield slice(None), slice(None)
    elif hypotheses <= limit:
        step = limit // hypotheses
        for b0 in range(0, batch, step):
            yield slice(b0, b0 + step), slice(None)
    else:
        for b0 in range(batch):
            for h0 in range(0, hypotheses, limit):
                yield slice(b0, b0 + 1), slice(h0, h0 + limit)


def auto_hypothesis_limit(cfg, device) -> int:
    """Clip-hypotheses per denoiser call that keep a call's working set in budget: cache-sized
    on the CPU, a quarter of the GPU's total memory on a GPU (about 16 activations per
    clip-hypothesis plus the temporal attention scores when attention is not fused).

    It depends on the model and the device's kind only, never on the memory free at the moment:
    every call of a run, every rank of a distributed run on like GPUs and every rerun split the
    work alike (the same kernels, the same rounding)."""
    device = torch.device(device)
    activation = cfg.activation_bytes()
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        return max(1, int(0.25 * total) // (16 * activation + 2 * cfg.attention_score_bytes()))
    return max(1, CPU_ACTIVATION_BUDGET // activation)


def resolve_limit(limit: int | None, cfg, device, doubled: bool) -> int | None:
    """The clip-hypotheses per call for a `max_batch_hypotheses` setting: None (one call),
    0 (automatic for the device; one call for a model without
    a `cfg`) or N; halved when flip TTA doubles every call."""
    if limit == 0:
        limit = auto_hypothesis_limit(cfg, device) if cfg is not None else None
    if limit is not None and doubled:
        limit = max(1, limit // 2)
    return limit


def map_in_chunks(fn, x2d: torch.Tensor, x: torch.Tensor, limit: int | None) -> torch.Tensor:
    """fn(clip slice, x2d rows, x piece) over the pieces of x (B, H, ...) of at most `limit`
    clip-hypotheses, reassembled into one tensor shaped like x."""
    chunks = list(hypothesis_chunks(x.shape[0], x.shape[1], limit))
    if len(chunks) == 1:
        return fn(slice(None), x2d, x)
    out = torch.empty_like(x)
    for rows, hyps in chunks:
        out[rows, hyps] = fn(rows, x2d[rows], x[rows, hyps])
    return out
