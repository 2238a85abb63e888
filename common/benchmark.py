"""Speed of D3DP sampling and training: our fast path against a plain eager path, side by side.

    python -m common.benchmark                      # CPU preset (about a minute on 2 cores)
    python -m common.benchmark --preset full --device cuda --amp bf16 [--compile]
    python -m common.benchmark -f 81 -cs 256 -dep 6 -num_proposals 10 -sampling_timesteps 3 --json out.json

Both paths run the same weights on the same inputs and noise. The naive path is the stand-in
for the authors' implementation: explicit softmax attention, the 2D input repeated per
hypothesis and concatenated with the noisy poses, the timestep embedding repeated to every
token, flip TTA as a second network pass, one denoiser call for the whole batch, the training
noise drawn per sample in a Python loop and a for-loop AdamW. The fast path is what
`main.py` runs: the attention kernel chosen for the device, the 2D half of the embedding
computed once per clip, hypotheses broadcast (never repeated), flip TTA batched into the same
call, calls chunked to a cache- or memory-sized batch, vectorised noise and a fused AdamW.

Timings alternate naive and fast runs and report medians; the speed-up is the ratio of the
medians. FLOP counts are analytic (dense layers and attention matmuls) and are compared with
a matmul peak measured in the same process.
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import json
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from .denoiser import Denoiser, DenoiserConfig
from .device import AMP_DTYPES, autocast, prepare_model
from .diffusion import DDIMSampler, Diffusion, FlipTTA
from .metrics import mpjpe
from .train import make_optimizer
from .skeleton import H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT, flip_pose

PRESETS = {
    # about a minute on 2 CPU cores
    "cpu": dict(frames=27, channels=128, depth=4, hypotheses=5, iterations=5, batch=4, train_batch=4),
    # the paper's headline setting (GPU)
    "full": dict(frames=243, channels=512, depth=8, hypotheses=20, iterations=10, batch=1, train_batch=4),
}


# --------------------------------------------------------------------------- the naive path
class NaiveDenoiser(nn.Module):
    """The same weights run the way the authors' code runs them (see the module docstring).
    Exposes no `embed_2d`, so samplers cannot cache the 2D embedding."""

    def __init__(self, model: Denoiser):
        super().__init__()
        self.model = copy.deepcopy(model)
        self.model.set_fused_attention(False)
        self.cfg = model.cfg

    def forward(self, x2d: torch.Tensor, x3d: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        m = self.model
        single = x3d.dim() == 4
        if single:
            x3d = x3d.unsqueeze(1)
        b, h, f, j, _ = x3d.shape
        x = torch.cat((x2d.unsqueeze(1).repeat(1, h, 1, 1, 1), x3d), dim=-1).reshape(b * h * f, j, 5)
        x = m.joint_embed(x) + m.spatial_pos
        c = x.shape[-1]
        time_embed = m.time_mlp(t)[:, None, None, :].repeat(1, h * f, j, 1).reshape(b * h * f, j, c)
        x = m.encode(x + time_embed, b * h)
        out = m.head(x).reshape(b, h, f, j, 3)
        return out[:, 0] if single else out


def naive_training_input(diffusion: Diffusion, x0: torch.Tensor, generator: torch.Generator):
    """Training noise drawn sample by sample in a Python loop, as the authors' code does."""
    xs, ts = [], []
    for i in range(x0.shape[0]):
        t = torch.randint(0, diffusion.timesteps, (1,), device=x0.device, generator=generator)
        noise = torch.randn(x0.shape[1:], device=x0.device, dtype=x0.dtype, generator=generator)
        xs.append(diffusion.clamp(diffusion.q_sample(x0[i:i + 1] * diffusion.scale, t, noise[None])))
        ts.append(t)
    return torch.cat(xs) / diffusion.scale, torch.cat(ts)


# --------------------------------------------------------------------------- the two paths
@dataclass
class Variant:
    """One way of running sampling and training (naive or fast)."""

    name: str
    model: nn.Module
    sampler: DDIMSampler
    batched_flip: bool
    naive: bool
    train_model: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = field(default=None, repr=False)


def make_naive_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """AdamW as the recipe has it, updating parameter by parameter (PyTorch's for-loop kernel)."""
    return torch.optim.AdamW(model.parameters(), lr=6e-5, weight_decay=0.1, foreach=False, fused=False)


def build_paths(model: Denoiser, diffusion: Diffusion, iterations: int, device, amp_dtype=None,
                compile_model: bool = False, max_batch_hypotheses: int | None = 0) -> tuple[Variant, Variant]:
    naive_model = NaiveDenoiser(model).to(device)
    naive = Variant("naive", naive_model, DDIMSampler(diffusion, iterations), batched_flip=False,
                 naive=True, train_model=NaiveDenoiser(model).to(device))
    fast_model = prepare_model(copy.deepcopy(model).to(device), device, compile_model)
    train_model = prepare_model(copy.deepcopy(model).to(device), device, compile_model)
    fast = Variant("fast", fast_model, DDIMSampler(diffusion, iterations, max_batch_hypotheses=max_batch_hypotheses,
                                                amp_dtype=amp_dtype),
                batched_flip=True, naive=False,
                train_model=train_model)
    return naive, fast


def run_sampling(path: Variant, x2d: torch.Tensor, hypotheses: int, flip: bool, noise: list) -> torch.Tensor:
    tta = None
    if flip:
        tta = FlipTTA(flip_pose(x2d, H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT), H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT,
                      batched=path.batched_flip)
    with torch.inference_mode():
        return path.sampler.sample(path.model, x2d, hypotheses, flip=tta, noise=noise)


def train_step(path: Variant, diffusion: Diffusion, x2d, x3d, generator, amp_dtype=None) -> torch.Tensor:
    model = path.train_model
    model.train()
    if path.optimizer is None:
        path.optimizer = make_naive_optimizer(model) if path.naive else make_optimizer(model, 6e-5, 0.1)
    if path.naive:
        x_t, t = naive_training_input(diffusion, x3d, generator)
    else:
        x_t, t = diffusion.training_input(x3d, generator=generator)
    with autocast(x3d.device, amp_dtype):
        loss = mpjpe(model(x2d, x_t, t).float(), x3d)
    path.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    path.optimizer.step()
    return loss.detach()


# --------------------------------------------------------------------------- measuring
def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device, dtype=torch.float32, size: int = 2048, repeats: int = 10) -> float:
    """Best GFLOP/s of a square matmul (median of `repeats`) on this device."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * size ** 3 / statistics.median(times) / 1e9


def denoiser_flops(cfg: DenoiserConfig, clip_hypotheses: int) -> float:
    """FLOPs of one denoiser forward over `clip_hypotheses` clips: dense layers and attention
    matmuls (norms, activations and the embedding are left out)."""
    c, f, j = cfg.channels, cfg.frames, cfg.joints
    hidden = int(c * cfg.mlp_ratio)
    dense = 4 * c * c + 2 * c * hidden                    # qkv, proj, fc1, fc2 (multiply-adds per token)
    per_token = cfg.depth * (2 * dense + 2 * c * j + 2 * c * f)
    return 2.0 * per_token * f * j * clip_hypotheses


def timed(fn, device, repeats_out: list) -> None:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    repeats_out.append(time.perf_counter() - start)


def interleaved(fns: dict, device, repeats: int) -> dict:
    """Warm each function up once, then time them in alternation; lists of seconds per name."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            timed(fn, device, times[name])
    return times


def peak_memory(device, fn) -> float | None:
    """Peak memory (MiB) one call of fn adds: the CUDA allocator's peak on GPUs; on the CPU
    the peak resident set size, polled every millisecond (Linux), above its value before."""
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
    if not os.path.exists("/proc/self/statm") or not _unmap_freed_memory():
        return None
    page = os.sysconf("SC_PAGE_SIZE") / 2 ** 20

    def rss() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    base, peak, done = rss(), [0.0], threading.Event()

    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        fn()
    finally:
        done.set()
        poller.join()
    return max(0.0, peak[0] - base)


def _unmap_freed_memory() -> bool:
    """Make glibc return large freed blocks to the system at once (and trim what it keeps), so
    the resident set follows live tensors. Call only after the timings: it slows allocation."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_MMAP_THRESHOLD = -3
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 64 * 1024)) and libc.malloc_trim(0) >= 0
    except (OSError, AttributeError):
        return False


# --------------------------------------------------------------------------- the benchmark
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("-f", "--frames", type=int, help="clip length F (preset's if not given)")
    p.add_argument("-cs", "--channels", type=int, help="channels C")
    p.add_argument("-dep", "--depth", type=int, help="depth D")
    p.add_argument("-num_proposals", "--hypotheses", dest="hypotheses", type=int, help="hypotheses H")
    p.add_argument("-sampling_timesteps", "--iterations", dest="iterations", type=int, help="DDIM iterations K")
    p.add_argument("--batch", type=int, help="clips per sampling batch")
    p.add_argument("--train-batch", type=int, help="clips per training step")
    p.add_argument("--no-flip", dest="flip", action="store_false", help="sample without flip TTA")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", choices=sorted(AMP_DTYPES), help="fast path under autocast with this dtype")
    p.add_argument("--compile", action="store_true", help="fast path through torch.compile")
    p.add_argument("--max-batch-hypotheses", type=int, default=0,
                   help="fast path: clip-hypotheses per denoiser call (0: automatic for the device)")
    p.add_argument("--repeats", type=int, default=5, help="timed sampling batches per path")
    p.add_argument("--train-steps", type=int, default=10, help="timed training steps per path and repeat")
    p.add_argument("--skip-training", action="store_true")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory measurement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def setup(args):
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for, but CUDA is not available here: use --device cpu")
    cfg = DenoiserConfig(frames=args.frames, channels=args.channels, depth=args.depth)
    model = Denoiser(cfg).eval()
    diffusion = Diffusion()
    amp_dtype = AMP_DTYPES.get(args.amp)
    naive, fast = build_paths(model, diffusion, args.iterations, device, amp_dtype, args.compile,
                              args.max_batch_hypotheses)
    g = torch.Generator(device=device).manual_seed(args.seed)
    x2d = torch.randn(args.batch, cfg.frames, cfg.joints, 2, device=device, generator=g) * 0.3
    noise = [torch.randn(args.batch, args.hypotheses, cfg.frames, cfg.joints, 3, device=device, generator=g)
             for _ in range(args.iterations)]
    t2d = torch.randn(args.train_batch, cfg.frames, cfg.joints, 2, device=device, generator=g) * 0.3
    t3d = torch.randn(args.train_batch, cfg.frames, cfg.joints, 3, device=device, generator=g) * 0.2
    return cfg, device, diffusion, amp_dtype, naive, fast, x2d, noise, t2d, t3d


def run_benchmark(args) -> dict:
    cfg, device, diffusion, amp_dtype, naive, fast, x2d, noise, t2d, t3d = setup(args)
    b, h, k = args.batch, args.hypotheses, args.iterations
    passes = 2 if args.flip else 1
    peak = matmul_peak(device, amp_dtype or torch.float32)
    report = {
        "config": dict(frames=cfg.frames, channels=cfg.channels, depth=cfg.depth, heads=cfg.heads, hypotheses=h,
                       iterations=k, flip=args.flip, batch=b, train_batch=args.train_batch, amp=args.amp,
                       compile=args.compile, max_batch_hypotheses=args.max_batch_hypotheses),
        "device": _device_name(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "matmul_peak_gflops": peak, "fast_attention": "sdpa" if _fused(fast.model) else "explicit",
        "fast_max_batch_hypotheses": fast.sampler.hypothesis_limit(fast.model, device, None),
        "command": "python -m common.benchmark " + " ".join(sys.argv[1:]),
    }

    # Same weights, inputs and noise: the two paths must agree.
    out_naive = run_sampling(naive, x2d, h, args.flip, noise)
    out_fast = run_sampling(fast, x2d, h, args.flip, noise)
    report["max_abs_difference_m"] = float((out_naive.float() - out_fast.float()).abs().max())

    sample_flops = k * passes * denoiser_flops(cfg, b * h)
    times = interleaved({p.name: (lambda p=p: run_sampling(p, x2d, h, args.flip, noise)) for p in (naive, fast)},
                        device, args.repeats)
    report["sampling"] = _section(times, frames=b * cfg.frames, flops=sample_flops, peak=peak, unit="frames/s")

    if not args.skip_training:
        gens = {p.name: torch.Generator(device=device).manual_seed(1) for p in (naive, fast)}

        def steps(p):
            for _ in range(args.train_steps):
                train_step(p, diffusion, t2d, t3d, gens[p.name], amp_dtype if p is fast else None)

        times = interleaved({p.name: (lambda p=p: steps(p)) for p in (naive, fast)}, device, args.repeats)
        train_flops = args.train_steps * 3 * denoiser_flops(cfg, args.train_batch)
        report["training"] = _section(times, frames=args.train_steps * args.train_batch, flops=train_flops,
                                      peak=peak, unit="clips/s")

    if args.memory:
        for p in (naive, fast):
            report["sampling"][p.name]["peak_memory_mib"] = peak_memory(
                device, lambda: run_sampling(p, x2d, h, args.flip, noise))
            if "training" in report:
                report["training"][p.name]["peak_memory_mib"] = peak_memory(
                    device, lambda: train_step(p, diffusion, t2d, t3d, gens[p.name], amp_dtype if p is fast else None))
    return report


def _fused(model) -> bool:
    inner = getattr(model, "_orig_mod", model)
    return any(getattr(m, "fused", False) for m in inner.modules())


def _device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def _section(times: dict, frames: int, flops: float, peak: float, unit: str) -> dict:
    out = {}
    for name, ts in times.items():
        median = statistics.median(ts)
        out[name] = {"median_s": median, "min_s": min(ts), "max_s": max(ts), "repeats": len(ts),
                     unit.replace("/", "_per_"): frames / median, "gflops": flops / median / 1e9,
                     "fraction_of_peak": flops / median / 1e9 / peak}
    out["speedup"] = out["naive"]["median_s"] / out["fast"]["median_s"]
    out["unit"] = unit
    return out


def format_report(r: dict) -> str:
    c = r["config"]
    lines = [f"D3DP benchmark: F={c['frames']} C={c['channels']} D={c['depth']} heads={c['heads']} "
             f"H={c['hypotheses']} K={c['iterations']} flip={'on' if c['flip'] else 'off'} batch={c['batch']} "
             f"(training batch {c['train_batch']})" + (f" amp={c['amp']}" if c["amp"] else "")
             + (" compile" if c["compile"] else ""),
             f"device {r['device']}, {r['threads']} threads, torch {r['torch']}; fast attention: "
             f"{r['fast_attention']}, {r['fast_max_batch_hypotheses']} clip-hypotheses per call; matmul peak {r['matmul_peak_gflops']:.0f} GFLOP/s (measured)",
             f"max |fast - naive| over all sampled poses: {r['max_abs_difference_m']:.2e} m", ""]
    header = f"{'':<24}{'naive':>14}{'fast':>14}{'speed-up':>11}"
    for section in ("sampling", "training"):
        if section not in r:
            continue
        s = r[section]
        key = s["unit"].replace("/", "_per_")
        lines += [header if section == "sampling" else "",
                  f"{section + ' ' + s['unit']:<24}{s['naive'][key]:>14.1f}{s['fast'][key]:>14.1f}"
                  f"{s['speedup']:>10.2f}x",
                  f"{'  median s per run':<24}{s['naive']['median_s']:>14.3f}{s['fast']['median_s']:>14.3f}",
                  f"{'  GFLOP/s (% of peak)':<24}{_pct(s['naive']):>14}{_pct(s['fast']):>14}"]
        mem = [s[p].get("peak_memory_mib") for p in ("naive", "fast")]
        if any(m is not None for m in mem):
            lines.append(f"{'  peak memory MiB':<24}" + "".join(f"{m:>14.0f}" if m is not None else f"{'-':>14}"
                                                               for m in mem))
    return "\n".join(lines)


def _pct(p: dict) -> str:
    return f"{p['gflops']:.0f} ({100 * p['fraction_of_peak']:.0f}%)"


def main(argv=None) -> int:
    args = parse_args(argv)
    report = run_benchmark(args)
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
