"""Speed of D3DP sampling and training on one machine, every way of running side by side.

    python -m benchmarks.benchmark                         # CPU preset (a few minutes on 2 cores)
    python -m benchmarks.benchmark --compile --demo-checkpoint checkpoint/demo/best_epoch.bin
    python -m benchmarks.benchmark --preset full --device cuda --amp bf16 [--compile]

Every variant runs the same weights on the same inputs and noise:
- stand-in: the naive path, our in-repo reference for the authors' implementation (explicit
  softmax attention, the 2D input repeated per hypothesis and concatenated with the noisy
  poses, the timestep embedding repeated to every token, flip TTA as a second network pass,
  one denoiser call for the whole batch, training noise drawn per sample in a Python loop,
  a for-loop AdamW). Measured beside the authors' code on one machine, the stand-in was
  about 5% faster when sampling and 7% faster when training, so ratios against the stand-in
  x 1.05 (sampling) and x 1.07 (training) estimate the ratio against the authors' code.
- eager: our PyTorch path (the attention kernel for the device, hypotheses broadcast, flip
  TTA batched into the same call, calls chunked to a cache- or memory-sized batch,
  vectorised noise, fused AdamW).
- compile (--compile): eager through torch.compile.
- openvino, openvino-bf16: the denoiser converted to OpenVINO (optional package), float32
  and bfloat16 inference precision; sampling only.
- default: what main.py runs on this machine for a long evaluation (--engine auto: OpenVINO
  when installed, else torch.compile) and for a long training run (--compile auto).

Timings alternate the variants and report medians; ratios are ratios of medians. The
warm-up is the first call's time above the median (conversion and compilation included).
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from benchmarks.machine import cpu_features
from common.run.arguments import non_negative_int, positive_int
from common.model.denoiser import Denoiser, DenoiserConfig
from common.model.device import AMP_DTYPES, autocast, compile_wanted, prepare_model
from common.model.diffusion import DDIMSampler, Diffusion, FlipTTA
from common.model.engine import OpenVINODenoiser, choose_engine, openvino_available
from common.evaluation.metrics import mpjpe
from common.geometry.skeleton import H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT, flip_pose
from common.run.train import make_optimizer

PRESETS = {
    # F=27 C=128 D=4 H=5 K=5 flip, sampling batch 4, training batch 16 (a few minutes on 2 cores)
    "cpu": dict(frames=27, channels=128, depth=4, hypotheses=5, iterations=5, batch=4, train_batch=16),
    # the paper's headline setting (GPU)
    "full": dict(frames=243, channels=512, depth=8, hypotheses=20, iterations=10, batch=1, train_batch=4),
}
# How much faster the stand-in was than the authors' code, measured side by side elsewhere.
STAND_IN_OVER_AUTHORS = {"sampling": 1.05, "training": 1.07}


# --------------------------------------------------------------------------- the stand-in
class NaiveDenoiser(nn.Module):
    """The same weights run the way the authors' code runs them (see the module docstring)."""

    def __init__(self, model: Denoiser):
        super().__init__()
        self.model = copy.deepcopy(model)
        self.model.set_fused_attention(False)
        self.cfg = model.cfg

    def forward(self, x2d: torch.Tensor, x3d: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
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


def make_naive_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """AdamW as the recipe has it, updating parameter by parameter (PyTorch's for-loop kernel)."""
    return torch.optim.AdamW(model.parameters(), lr=6e-5, weight_decay=0.1, foreach=False, fused=False)


# --------------------------------------------------------------------------- the variants
@dataclass
class Variant:
    """One way of running sampling or training."""

    name: str
    model: object                       # what the sampler or the training step calls
    sampler: DDIMSampler
    batched_flip: bool = True
    naive: bool = False
    optimizer: torch.optim.Optimizer | None = None
    params: nn.Module | None = None     # the module whose parameters training updates
    build_s: float = 0.0                # conversion time spent before the first call


def sampling_variants(model: Denoiser, diffusion: Diffusion, iterations: int, device, amp: str | None = None,
                      compile_model: bool = False, engines: bool = True, max_batch_hypotheses: int | None = 0):
    """stand-in, eager, and where asked/available compile, openvino, openvino-bf16."""
    amp_dtype = AMP_DTYPES.get(amp)
    fast = lambda: DDIMSampler(diffusion, iterations, max_batch_hypotheses=max_batch_hypotheses, amp_dtype=amp_dtype)
    out = [Variant("stand-in", NaiveDenoiser(model).to(device).eval(), DDIMSampler(diffusion, iterations),
                   batched_flip=False, naive=True),
           Variant("eager", prepare_model(copy.deepcopy(model).to(device).eval(), device), fast())]
    if compile_model:
        out.append(Variant("compile", prepare_model(copy.deepcopy(model).to(device).eval(), device, True), fast()))
    if engines and torch.device(device).type == "cpu" and openvino_available():
        for precision in ("f32", "bf16"):
            converted = OpenVINODenoiser(model, precision)
            name = "openvino" if precision == "f32" else "openvino-bf16"
            out.append(Variant(name, converted, DDIMSampler(diffusion, iterations, max_batch_hypotheses=max_batch_hypotheses),
                               build_s=converted.warmup_s))
    return out


def training_variants(model: Denoiser, device, compile_model: bool = False):
    naive = NaiveDenoiser(model).to(device)
    out = [Variant("stand-in", naive, None, naive=True, params=naive)]
    eager = prepare_model(copy.deepcopy(model).to(device), device)
    out.append(Variant("eager", eager, None, params=eager))
    if compile_model:
        module = prepare_model(copy.deepcopy(model).to(device), device)
        out.append(Variant("compile", torch.compile(module), None, params=module))
    return out


def run_sampling(v: Variant, x2d: torch.Tensor, hypotheses: int, flip: bool, noise: list) -> torch.Tensor:
    tta = None
    if flip:
        tta = FlipTTA(flip_pose(x2d, H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT), H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT,
                      batched=v.batched_flip)
    with torch.inference_mode():
        return v.sampler.sample(v.model, x2d, hypotheses, flip=tta, noise=noise)


def train_step(v: Variant, diffusion: Diffusion, x2d, x3d, generator, amp_dtype=None) -> torch.Tensor:
    v.params.train()
    if v.optimizer is None:
        v.optimizer = make_naive_optimizer(v.params) if v.naive else make_optimizer(v.params, 6e-5, 0.1)
    if v.naive:
        x_t, t = naive_training_input(diffusion, x3d, generator)
    else:
        x_t, t = diffusion.training_input(x3d, generator=generator)
    with autocast(x3d.device, None if v.naive else amp_dtype):
        loss = mpjpe(v.model(x2d, x_t, t).float(), x3d)
    v.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    v.optimizer.step()
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


def timed(fn, device, repeats_out: list) -> None:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    repeats_out.append(time.perf_counter() - start)


def interleaved(fns: dict, device, repeats: int, first: dict | None = None) -> dict:
    """Time each function's first call (into `first`), then time them in alternation; lists
    of seconds per name."""
    for name, fn in fns.items():
        start = time.perf_counter()
        fn()
        synchronize(device)
        if first is not None:
            first[name] = time.perf_counter() - start
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
    p.add_argument("-f", "--frames", type=positive_int, help="clip length F (preset's if not given)")
    p.add_argument("-cs", "--channels", type=positive_int, help="channels C")
    p.add_argument("-dep", "--depth", type=positive_int, help="depth D")
    p.add_argument("-num_proposals", "--hypotheses", dest="hypotheses", type=positive_int, help="hypotheses H")
    p.add_argument("-sampling_timesteps", "--iterations", dest="iterations", type=positive_int, help="DDIM iterations K")
    p.add_argument("--batch", type=positive_int, help="clips per sampling batch")
    p.add_argument("--train-batch", type=positive_int, help="clips per training step")
    p.add_argument("--no-flip", dest="flip", action="store_false", help="sample without flip TTA")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", choices=sorted(AMP_DTYPES), help="eager/compile variants under autocast with this dtype")
    p.add_argument("--compile", action="store_true", help="add torch.compile variants (long warm-up)")
    p.add_argument("--no-engine", dest="engines", action="store_false", help="leave out the OpenVINO variants")
    p.add_argument("--max-batch-hypotheses", type=non_negative_int, default=0,
                   help="clip-hypotheses per denoiser call (0: automatic for the device)")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed sampling batches per variant")
    p.add_argument("--train-steps", type=positive_int, default=5, help="timed training steps per variant and repeat")
    p.add_argument("--skip-training", action="store_true")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory measurement")
    p.add_argument("--demo-checkpoint", metavar="FILE",
                   help="also evaluate this checkpoint of `python main.py --demo` (H=5 K=5) in float32 and in "
                        "bf16 and print the J-Agg averages")
    p.add_argument("--data-dir", default="data", help="where the demo's synthetic data set is (or is written)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def run_benchmark(args) -> dict:
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for, but CUDA is not available here: use --device cpu")
    cfg = DenoiserConfig(frames=args.frames, channels=args.channels, depth=args.depth)
    model = Denoiser(cfg).eval()
    diffusion = Diffusion()
    g = torch.Generator(device=device).manual_seed(args.seed)
    b, h, k = args.batch, args.hypotheses, args.iterations
    x2d = torch.randn(b, cfg.frames, cfg.joints, 2, device=device, generator=g) * 0.3
    noise = [torch.randn(b, h, cfg.frames, cfg.joints, 3, device=device, generator=g) for _ in range(k)]
    t2d = torch.randn(args.train_batch, cfg.frames, cfg.joints, 2, device=device, generator=g) * 0.3
    t3d = torch.randn(args.train_batch, cfg.frames, cfg.joints, 3, device=device, generator=g) * 0.2
    peak = matmul_peak(device)
    default = choose_engine("auto", device, float("inf"), compile_auto=True)
    report = {
        "config": dict(frames=cfg.frames, channels=cfg.channels, depth=cfg.depth, heads=cfg.heads, hypotheses=h,
                       iterations=k, flip=args.flip, batch=b, train_batch=args.train_batch, amp=args.amp,
                       compile=args.compile, max_batch_hypotheses=args.max_batch_hypotheses),
        "device": _device_name(device), "cpu": cpu_features(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "matmul_peak_gflops": peak,
        "default": {"sampling": default,
                    "training": "compile" if compile_wanted("auto", device, float("inf")) else "eager"},
        "stand_in_over_authors": STAND_IN_OVER_AUTHORS,
        "command": " ".join(["python -m benchmarks.benchmark"] + args.argv),
    }

    variants = sampling_variants(model, diffusion, k, device, args.amp, args.compile, args.engines,
                                 args.max_batch_hypotheses)
    first = {}
    times = interleaved({v.name: (lambda v=v: run_sampling(v, x2d, h, args.flip, noise)) for v in variants},
                        device, args.repeats, first)
    reference = run_sampling(variants[0], x2d, h, args.flip, noise).float()
    deviation = {v.name: float((run_sampling(v, x2d, h, args.flip, noise).float() - reference).abs().max())
                 for v in variants}
    flops = cfg.flops(b * h, k, args.flip)
    report["sampling"] = _section(times, first, {v.name: v.build_s for v in variants}, work=b * cfg.frames,
                                  flops=flops, peak=peak, unit="frames/s", deviation=deviation)
    if args.memory:
        for v in variants:
            report["sampling"]["variants"][v.name]["peak_memory_mib"] = peak_memory(
                device, lambda: run_sampling(v, x2d, h, args.flip, noise))

    if not args.skip_training:
        tv = training_variants(model, device, args.compile)
        gens = {v.name: torch.Generator(device=device).manual_seed(1) for v in tv}
        amp_dtype = AMP_DTYPES.get(args.amp)

        def steps(v):
            for _ in range(args.train_steps):
                train_step(v, diffusion, t2d, t3d, gens[v.name], amp_dtype)

        first = {}
        times = interleaved({v.name: (lambda v=v: steps(v)) for v in tv}, device, args.repeats, first)
        flops = args.train_steps * 3 * cfg.flops(args.train_batch)
        report["training"] = _section(times, first, {}, work=args.train_steps * args.train_batch, flops=flops,
                                      peak=peak, unit="clips/s")
        if args.memory:
            for v in tv:
                report["training"]["variants"][v.name]["peak_memory_mib"] = peak_memory(device, lambda: steps(v))
    if args.demo_checkpoint:
        report["demo_table"] = demo_table_effect(args.demo_checkpoint, args.data_dir)
    return report


def demo_table_effect(checkpoint, data_dir="data") -> dict:
    """J-Agg averages (mm, last iteration) of `python main.py --demo --evaluate checkpoint`
    at H=5 K=5 in float32 and in bf16 (through OpenVINO when installed, else PyTorch autocast)."""
    root = Path(__file__).resolve().parent.parent
    engine = ["--engine", "openvino" if openvino_available() else "eager"]
    runs = {"fp32": engine, "bf16": ["--amp", "bf16"] + engine}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in runs.items():
            folder = Path(tmp) / name
            cmd = [sys.executable, str(root / "main.py"), "--demo", "--evaluate", str(Path(checkpoint).resolve()),
                   "-c", str(folder), "-num_proposals", "5", "-sampling_timesteps", "5",
                   "--data-dir", str(Path(data_dir).resolve())] + extra
            start = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=root, capture_output=True, text=True)
            result = json.loads(next(folder.glob("eval_*.json")).read_text())["actions"]["p1"]
            out[name] = {"j_agg_mm": result["J-Agg"]["Average"][-1], "seconds": time.perf_counter() - start, "flags": extra}
    out["difference_mm"] = out["bf16"]["j_agg_mm"] - out["fp32"]["j_agg_mm"]
    return out


def _device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_features()["model"]


def _section(times: dict, first: dict, build: dict, work: int, flops: float, peak: float, unit: str,
             deviation: dict | None = None) -> dict:
    key = unit.replace("/", "_per_")
    out = {}
    for name, ts in times.items():
        median = statistics.median(ts)
        out[name] = {"median_s": median, "min_s": min(ts), "max_s": max(ts), "repeats": len(ts),
                     key: work / median, "gflops": flops / median / 1e9, "fraction_of_peak": flops / median / 1e9 / peak,
                     "warmup_s": build.get(name, 0.0) + max(0.0, first[name] - median)}
        out[name]["ratio"] = statistics.median(times["stand-in"]) / median
        if deviation is not None:
            out[name]["max_deviation_m"] = deviation[name]
    return {"variants": out, "unit": unit}


def format_report(r: dict) -> str:
    c, cpu = r["config"], r["cpu"]
    lines = [f"D3DP benchmark: F={c['frames']} C={c['channels']} D={c['depth']} heads={c['heads']} "
             f"H={c['hypotheses']} K={c['iterations']} flip={'on' if c['flip'] else 'off'} batch={c['batch']} "
             f"(training batch {c['train_batch']})" + (f" amp={c['amp']}" if c["amp"] else ""),
             f"device {r['device']}, {r['threads']} threads, torch {r['torch']}; matmul peak "
             f"{r['matmul_peak_gflops']:.0f} GFLOP/s (measured)",
             f"CPU features: AVX-512 {'yes' if cpu['avx512f'] else 'no'}, AVX512-BF16 "
             f"{'yes' if cpu['avx512_bf16'] else 'no'}, AMX {' '.join(cpu['amx']) if cpu['amx'] else 'no'}",
             f"default of main.py: sampling (long evaluation) {r['default']['sampling']}, training (long run) "
             f"{r['default']['training']}", ""]
    for section in ("sampling", "training"):
        if section not in r:
            continue
        s = r[section]
        key = s["unit"].replace("/", "_per_")
        est = STAND_IN_OVER_AUTHORS[section]
        lines.append(f"{section:<14}{s['unit']:>10}{'vs stand-in':>13}{'vs authors (est.)':>19}{'warm-up s':>11}"
                     + (f"{'max dev m':>11}" if section == "sampling" else "") + f"{'GFLOP/s':>9}{'peak MiB':>10}")
        for name, v in s["variants"].items():
            tag = " (default)" if name == r["default"][section] else ""
            mem = v.get("peak_memory_mib")
            lines.append(f"{name + tag:<24}{v[key]:>8.1f}{v['ratio']:>11.2f}x{v['ratio'] * est:>17.2f}x"
                         f"{v['warmup_s']:>11.1f}" + (f"{v['max_deviation_m']:>11.1e}" if section == "sampling" else "")
                         + f"{v['gflops']:>9.0f}" + (f"{mem:>10.0f}" if mem is not None else f"{'-':>10}"))
        lines.append("")
    lines.append("vs authors (est.) = ratio vs stand-in x {:.2f} (sampling) / x {:.2f} (training): the stand-in's "
                 "measured lead over the authors' code".format(STAND_IN_OVER_AUTHORS["sampling"],
                                                              STAND_IN_OVER_AUTHORS["training"]))
    if "demo_table" in r:
        d = r["demo_table"]
        lines.append(f"demo checkpoint, H=5 K=5, J-Agg average: fp32 {d['fp32']['j_agg_mm']:.2f} mm "
                     f"({d['fp32']['seconds']:.0f} s, {' '.join(d['fp32']['flags'])}), bf16 {d['bf16']['j_agg_mm']:.2f} mm ({d['bf16']['seconds']:.0f} s, "
                     f"{' '.join(d['bf16']['flags'])}): difference {d['difference_mm']:+.2f} mm")
    return "\n".join(lines)


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
