"""One-shot check of the repository on a GPU: every step timed, judged PASS/FAIL, its output kept.

    python -m benchmarks.gpu_check                        # on a CUDA machine; sized for under 10 minutes on one GPU
    python -m benchmarks.gpu_check --out DIR              # keep every step's output in DIR
    python -m benchmarks.gpu_check --steps train,parity   # some steps only (a group name selects its rows)
    python -m benchmarks.gpu_check --device cpu --quick   # every step in a tiny form on the CPU (a smoke test)

Without CUDA it refuses in one line (exit code 2) unless --device cpu is given. The steps, in
the order they are judged. On a machine with at least 8 cores (GPU machines) the test suite,
CPU work and the longest step, starts at the beginning and runs alongside the steps before it;
it ends before the benchmarks, which run alone. With fewer cores each step runs alone:

conformance-fp32    `python -m common.run.conformance --device DEV` on the authors' vectors
conformance-bf16    (tests/fixtures/d3dp_reference_A), plain and with --amp bf16 / fp16. fp32
conformance-fp16    passes when the command does (its own tolerances). With --amp the command
                    itself exits 1: its 0.1 mm tolerance is far below bf16/fp16 rounding (on the CPU
                    here the denoiser and DDIM outputs moved by up to 12-13 mm with bf16, 1.6-1.8 mm
                    with fp16). Those rows pass when every quantity autocast does not touch is
                    within the command's tolerance and the denoiser and DDIM outputs deviate by at
                    most AMP_BOUND_M (30 mm bf16, 5 mm fp16, about 2.5x those): a broken kernel, an
                    overflow or a NaN fails, the rounding of the dtype does not.
train               a short training on the synthetic set (written into DIR/data) with the demo's
                    model (F=27 C=64 D=2) and flags, run three times through main.py: 3 epochs
                    straight through; 1 epoch (-e 1, the interrupted run); that run continued with
                    `-r latest_epoch.bin -e 3`. All with --deterministic (deterministic kernels and a
                    fixed cuBLAS workspace, common/model/device.py configure_numerics), under which the
                    README promises bit-identical reruns and resumes on one GPU model and software
                    stack: the resumed weights must equal the uninterrupted ones exactly (tolerance 0).
eval-bf16-compile   `main.py --evaluate` of that checkpoint with --amp bf16 --compile on (and
                    --engine eager, so that the CPU form runs PyTorch too), H=5 K=5, flip; passes
                    when it ends with finite tables.
parity              the checkpoint on the CPU and on the device in fp32 (TF32 off, the default):
                    (1) the denoiser's forward on identical inputs, both shapes, within FORWARD_TOL_M;
                    (2) the whole evaluation tables (every mode, action, protocol and iteration,
                    H=5 K=5, two action groups), within TABLE_TOL_MM. The same seed draws other
                    noise on a CPU and on a GPU (Mersenne Twister against Philox), so two
                    evaluations with their own noise differ by sampling noise, and the loose
                    tolerance that would need (mm) would hide real errors. Here both evaluations
                    take every group's noise from common.inference.sampling.group_noise drawn on the CPU (its
                    generator, seeded as it seeds it) and copied to the device, as the conformance
                    vectors feed the authors' draws: the tables then agree to float rounding.
                    common/ has no option for this; the check swaps that function in its own
                    process for the two evaluations (noise_drawn_on_cpu).
tests               `python -m pytest -q -rs tests`. The CUDA tests (tests/test_device.py) are
                    marked skipif(not torch.cuda.is_available()), so no flag or marker is needed:
                    on a GPU they run, and the step fails if any test was skipped for want of
                    CUDA. --quick runs tests/test_device.py alone. Its seconds are its own
                    wall time (the steps beside it took a little longer for it).
bench-fp32          `python -m benchmarks.benchmark` at the paper's setting (--preset full: F=243
bench-bf16-compile  C=512 D=8 H=20 K=10, flip, batch 1, training batch 4) in fp32, then with --amp
                    bf16 --compile: the stand-in (explicit attention, fp32), eager (PyTorch's
                    scaled_dot_product_attention on GPUs) and compile; frames/s, clips/s and the
                    peak memory one call adds (torch.cuda.max_memory_allocated on GPUs). Passes when
                    it finishes and, in fp32, our path samples the stand-in's poses within
                    FORWARD_TOL_M.

Output: DIR/NN-step.log (the commands and their output), DIR/summary.md (the Markdown table)
and DIR/summary.json, rewritten after every step. At the end the table (step, result, seconds,
key numbers) and the device, torch and CUDA versions are printed. --deadline-s (570 s by
default) bounds the whole check: a command still running then is stopped and its step fails,
a step not yet started is skipped. Exit code 0 when every step passed, 1 otherwise, 2 when refused.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]

FORWARD_TOL_M = 1e-4        # CPU against the device, fp32: the denoiser and the sampled poses (0.1 mm)
TABLE_TOL_MM = 0.05         # CPU against the device, fp32, the same noise: every entry of the tables
RESUME_TOL = 0.0            # resumed against uninterrupted weights, --deterministic: bit for bit
AMP_BOUND_M = {"bf16": 0.03, "fp16": 0.005}   # conformance under --amp: denoiser and DDIM outputs
DEADLINE_S = 570            # the whole check, by default: under the 10 minutes it is sized for
TESTS_LIMIT_S = 480         # the test suite, from its start
OVERLAP_MIN_CPUS = 8        # the suite runs alongside the other steps on machines with this many cores
AMP_QUANTITIES = ("denoiser_out", "denoiser_train_out", "ddim_out", "ddim_flip_out")   # what autocast touches


@dataclass(frozen=True)
class Sizes:
    """How big each step runs: the full check or its --quick form."""

    frames_per_sequence: int        # synthetic set
    model: tuple                    # main.py architecture flags of the training
    actions: str                    # -a of the training (and of eval-bf16-compile)
    epochs: int                     # of the uninterrupted run
    stop_after: int                 # epochs of the interrupted run
    hypotheses: int                 # H of the evaluations
    iterations: int                 # K of the evaluations
    parity_actions: str             # -a of the parity evaluations (both devices)
    pytest_targets: tuple
    bench: tuple                    # benchmark.py flags for the size


FULL = Sizes(frames_per_sequence=160, model=("-f", "27", "-cs", "64", "-dep", "2"), actions="*", epochs=3,
             stop_after=1, hypotheses=5, iterations=5, parity_actions="Walking,Sitting", pytest_targets=("tests",),
             bench=("--preset", "full", "--repeats", "2", "--train-steps", "2"))
QUICK = Sizes(frames_per_sequence=24, model=("-f", "9", "-cs", "16", "-dep", "1", "--heads", "2"), actions="Walking",
              epochs=2, stop_after=1, hypotheses=2, iterations=2, parity_actions="Walking",
              pytest_targets=("tests/test_device.py",),
              bench=("-f", "9", "-cs", "32", "-dep", "1", "-num_proposals", "2", "-sampling_timesteps", "2",
                     "--batch", "2", "--train-batch", "2", "--repeats", "1", "--train-steps", "1"))


# --------------------------------------------------------------------------- steps and their results
@dataclass
class Outcome:
    """What a step found: passed or not, its key numbers (one line), anything else for the JSON."""

    ok: bool
    numbers: str
    details: dict = field(default_factory=dict)
    seconds: float | None = None    # the step's wall time when it began before run_step was called


class Skipped(Exception):
    """A step that cannot run (what it needs is missing); reported as SKIP, not as a failure."""


@dataclass
class Result:
    """One row of the summary."""

    step: str
    result: str                     # PASS, FAIL or SKIP
    seconds: float
    numbers: str
    log: str = ""
    details: dict = field(default_factory=dict)


@dataclass
class Context:
    """What the steps share: the device, the sizes, the output folder and its layout."""

    device: str
    sizes: Sizes
    out: Path
    deadline: float = math.inf      # time.monotonic() by which every step must be over
    early: dict = field(default_factory=dict)   # step key -> Running: commands started at the beginning

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def limit(self, seconds: float) -> float:
        """A command's time limit: its own, or what is left before the deadline if that is less."""
        return max(1.0, min(seconds, self.time_left()))

    @property
    def data_dir(self) -> Path:
        return self.out / "data"

    @property
    def run_dir(self) -> Path:
        return self.out / "train"

    @property
    def checkpoint(self) -> Path:
        """The uninterrupted training run's final checkpoint, which eval and parity use."""
        return self.run_dir / "straight" / "latest_epoch.bin"

    def synthetic_set(self) -> Path:
        """The synthetic set in DIR/data (written once, at this check's size)."""
        from common.datasets.synthetic import ensure_synthetic

        ensure_synthetic(self.data_dir, frames_per_sequence=self.sizes.frames_per_sequence)
        return self.data_dir

    def require_checkpoint(self) -> Path:
        if not self.checkpoint.is_file():
            raise Skipped(f"no checkpoint at {self.checkpoint}: the train step did not run or failed")
        return self.checkpoint

    def data_flags(self) -> list:
        return ["-d", "synthetic", "-k", "det", "--data-dir", str(self.synthetic_set())]


@dataclass
class Running:
    """A command started and not yet waited for."""

    proc: subprocess.Popen
    offset: int                     # where its output begins in the log
    started: float                  # time.monotonic() when it started

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def start_command(cmd: list, log) -> Running:
    """Start cmd in the repository root (in a process group of its own), its output appended to
    the open log."""
    log.write(f"\n$ {' '.join(map(str, cmd))}\n")
    log.flush()
    offset = os.path.getsize(log.name)
    proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    return Running(proc, offset, time.monotonic())


def finish_command(running: Running, log, timeout: float) -> tuple[int, str]:
    """Wait for a started command; returns its exit code (124 when it runs past timeout more
    seconds: then it and the processes it started are stopped) and the output it wrote."""
    try:
        rc = running.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process_group(running.proc)
        rc = 124
        log.write(f"\n[stopped at its time limit, after {running.elapsed:.0f} s]\n")
    log.flush()
    with open(log.name, "rb") as f:
        f.seek(running.offset)
        text = f.read().decode(errors="replace")
    log.write(f"[exit code {rc}]\n")
    return rc, text


def run_command(cmd: list, log, timeout: float) -> tuple[int, str]:
    """Run cmd to its end (see start_command, finish_command)."""
    return finish_command(start_command(cmd, log), log, timeout)


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the command's process group (it and what it started), SIGKILL 10 s later."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
            return


def worst(values, empty: float = math.nan) -> float:
    """The largest of some deviations, NaN when one of them is NaN (max() would drop it)."""
    values = list(values)
    if not values:
        return empty
    return math.nan if any(map(math.isnan, values)) else max(values)


# --------------------------------------------------------------------------- the test suite
def pytest_summary(text: str) -> dict:
    """Counts of pytest -q's last line ('3 failed, 420 passed, 4 skipped in 160.20s') and the
    number of tests -rs reports as skipped for want of CUDA."""
    counts = {}
    for line in reversed(text.strip().splitlines()):
        found = re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected|warnings?)", line)
        if found:
            counts = {name: int(n) for n, name in found}
            break
    cuda_skips = sum(int(n) for n in re.findall(r"^SKIPPED \[(\d+)\] .*CUDA", text, flags=re.MULTILINE))
    return {"counts": counts, "cuda_skipped": cuda_skips}


def tests_command(ctx: Context) -> list:
    return [sys.executable, "-m", "pytest", "-q", "-rs", *ctx.sizes.pytest_targets]


def step_tests(ctx: Context, log) -> Outcome:
    """The suite, started at the beginning of the check (Step.early) or now."""
    running = ctx.early.pop("tests", None) or start_command(tests_command(ctx), log)
    rc, text = finish_command(running, log, timeout=ctx.limit(TESTS_LIMIT_S - running.elapsed))
    s = pytest_summary(text)
    counts = ", ".join(f"{n} {name}" for name, n in s["counts"].items()) or "no summary line"
    on_gpu = torch.device(ctx.device).type == "cuda"
    ok = rc == 0 and bool(s["counts"]) and not (on_gpu and s["cuda_skipped"])
    return Outcome(ok, f"{counts}; skipped for want of CUDA: {s['cuda_skipped']}", s, seconds=running.elapsed)


# --------------------------------------------------------------------------- conformance
CONFORMANCE_LINE = re.compile(r"^\s+(\S+)\s+max \|dev\| (\S+)\s+\(tol (\S+)\)\s+(ok|FAIL)\s*$", re.MULTILINE)


def conformance_checks(text: str) -> dict:
    """quantity -> (deviation, tolerance, ok) from the conformance command's output."""
    return {q: (float(dev), float(tol), flag == "ok") for q, dev, tol, flag in CONFORMANCE_LINE.findall(text)}


def largest(checks: dict, quantities) -> float:
    """The largest deviation among these quantities (NaN when none was checked)."""
    return worst(checks[q][0] for q in quantities if q in checks)


def judge_conformance(checks: dict, amp: str | None, rc: int) -> tuple[bool, str]:
    """PASS/FAIL and the key numbers of one conformance run (see the module docstring)."""
    if not checks or rc not in (0, 1):
        return False, f"no result (exit code {rc})"
    worst = f"denoiser {largest(checks, AMP_QUANTITIES[:2]):.1e} m, DDIM {largest(checks, AMP_QUANTITIES[2:]):.1e} m"
    if amp is None:
        return rc == 0, f"{sum(c[2] for c in checks.values())}/{len(checks)} within tolerance; {worst}"
    others = [q for q in checks if q not in AMP_QUANTITIES]
    bound = AMP_BOUND_M[amp]
    ok = all(checks[q][2] for q in others) and all(checks[q][0] <= bound for q in AMP_QUANTITIES if q in checks)
    return ok, f"{worst} (bound {bound:g} m); other {sum(checks[q][2] for q in others)}/{len(others)} within tolerance"


def conformance_step(amp: str | None) -> Callable:
    def step(ctx: Context, log) -> Outcome:
        cmd = [sys.executable, "-m", "common.run.conformance", "--device", ctx.device] + (["--amp", amp] if amp else [])
        rc, text = run_command(cmd, log, timeout=ctx.limit(180))
        checks = conformance_checks(text)
        ok, numbers = judge_conformance(checks, amp, rc)
        return Outcome(ok, numbers, {"checks": {q: list(c) for q, c in checks.items()}, "exit_code": rc})
    step.__doc__ = f"The conformance command on the device{' under --amp ' + amp if amp else ''}."
    return step


# --------------------------------------------------------------------------- training, stopped and resumed
def last_validation_mm(text: str) -> float | None:
    """The last epoch's validation MPJPE (mm) from main.py's '[N] lr ... val X mm' lines."""
    found = re.findall(r"^\[\d+\].*\bval ([\d.]+) mm", text, flags=re.MULTILINE)
    return float(found[-1]) if found else None


def weight_difference(a: Path, b: Path) -> tuple[float, bool]:
    """Largest absolute difference between two checkpoints' weights, and whether they hold the
    same tensors (names and shapes)."""
    from common.model.checkpoint import safe_load

    wa, wb = safe_load(a)["model_pos"], safe_load(b)["model_pos"]
    if wa.keys() != wb.keys() or any(wa[k].shape != wb[k].shape for k in wa):
        return math.inf, False
    return worst((float((wa[k].double() - wb[k].double()).abs().max()) for k in wa if wa[k].numel()), 0.0), True


def step_train(ctx: Context, log) -> Outcome:
    if ctx.run_dir.exists():
        raise RuntimeError(f"{ctx.run_dir} exists (an earlier check's training runs): give an empty --out folder")
    s = ctx.sizes
    common_flags = ctx.data_flags() + list(s.model) + [
        "-a", s.actions, "-b", "8", "-s", "1", "-lr", "1e-3", "-lrd", "0.87", "--view-augment", "20",
        "-num_proposals", str(s.hypotheses), "-sampling_timesteps", str(s.iterations), "--calibrate",
        "--nolog", "--no-progress", "--device", ctx.device, "--deterministic"]
    main_py = [sys.executable, "main.py"]
    straight, resumed = ctx.run_dir / "straight", ctx.run_dir / "resumed"
    runs = {"uninterrupted": main_py + ["-c", straight, "-e", str(s.epochs)] + common_flags,
            "stopped": main_py + ["-c", resumed, "-e", str(s.stop_after)] + common_flags,
            "resumed": main_py + ["-c", resumed, "-r", "latest_epoch.bin", "-e", str(s.epochs), "--data-dir",
                                  ctx.data_dir, "--nolog", "--no-progress", "--device", ctx.device, "--deterministic"]}
    seconds, texts = {}, {}
    for name, cmd in runs.items():
        start = time.perf_counter()
        rc, texts[name] = run_command(cmd, log, timeout=ctx.limit(300))
        seconds[name] = round(time.perf_counter() - start, 1)
        if rc != 0:
            return Outcome(False, f"the {name} run failed (exit code {rc})", {"seconds": seconds})
    if f"after epoch {s.stop_after}" not in texts["resumed"]:
        return Outcome(False, f"the resumed run did not say it continued after epoch {s.stop_after}")
    diff, same_tensors = weight_difference(straight / "latest_epoch.bin", resumed / "latest_epoch.bin")
    val = last_validation_mm(texts["uninterrupted"])
    ok = same_tensors and diff <= RESUME_TOL
    numbers = (f"{s.epochs} epochs; stopped after {s.stop_after} and resumed: max |weight difference| {diff:.1e} "
               f"(tol {RESUME_TOL:g}, --deterministic); last val {val} mm")
    return Outcome(ok, numbers, {"max_weight_difference": diff, "tolerance": RESUME_TOL, "seconds": seconds,
                                 "last_val_mm": val})


# --------------------------------------------------------------------------- evaluation in bf16, compiled
def table_average(path: Path, mode: str, protocol: str = "p1") -> float:
    """A mode's action average at the last iteration (mm) from an eval_*.json."""
    return float(json.loads(path.read_text())["actions"][protocol][mode]["Average"][-1])


def step_eval(ctx: Context, log) -> Outcome:
    checkpoint, s = ctx.require_checkpoint(), ctx.sizes
    out = ctx.out / "eval_bf16_compile"
    cmd = [sys.executable, "main.py", *ctx.data_flags(), "-a", s.actions, "-c", out, "--evaluate", checkpoint,
           "-num_proposals", s.hypotheses, "-sampling_timesteps", s.iterations, "-b", "8", "--amp", "bf16",
           "--compile", "on", "--engine", "eager", "--device", ctx.device, "--nolog", "--no-progress"]
    rc, _ = run_command(cmd, log, timeout=ctx.limit(300))
    table = out / f"eval_{checkpoint.stem}.json"
    if rc != 0 or not table.is_file():
        return Outcome(False, f"exit code {rc}")
    numbers = {mode: table_average(table, mode) for mode in ("J-Agg", "P-Best")}
    ok = all(math.isfinite(v) for v in numbers.values())
    return Outcome(ok, f"H={s.hypotheses} K={s.iterations}: " + ", ".join(f"{m} {v:.2f} mm" for m, v in numbers.items()),
                   {"averages_mm": numbers})


# --------------------------------------------------------------------------- CPU against the device
@contextlib.contextmanager
def noise_drawn_on_cpu():
    """Within: every evaluation group's noise is drawn by common.inference.sampling.group_noise on the CPU
    (its own generator and seeding) and copied to the device the evaluation runs on, so that a
    CPU and a GPU evaluation sample from the same draws."""
    from common.inference import sampling

    original = sampling.group_noise

    def on_cpu(group_id, clips, shape_tail, iterations, seed, device):
        return [n.to(device) for n in original(group_id, clips, shape_tail, iterations, seed, "cpu")]

    sampling.group_noise = on_cpu
    try:
        yield
    finally:
        sampling.group_noise = original


def flat_table(report_json: dict) -> dict:
    """{(protocol, mode, row, k): mm} of a Report.to_json()['actions']."""
    return {(p, mode, row, k): value for p, modes in report_json["actions"].items() for mode, rows in modes.items()
            for row, values in rows.items() for k, value in enumerate(values)}


def forward_deviation(checkpoint: Path, devices: list, hypotheses: int) -> dict:
    """Largest |CPU - device| of the denoiser's output on identical inputs, for the training
    shape (B, F, J, 3) and the sampling shape (B, H, F, J, 3); metres."""
    from common.model.checkpoint import load_denoiser
    from common.model.device import prepare_model

    models = [prepare_model(load_denoiser(checkpoint)[0].to(d).eval(), d) for d in devices]
    cfg = models[0].cfg
    g = torch.Generator().manual_seed(0)
    x2d = torch.randn(4, cfg.frames, cfg.joints, 2, generator=g) * 0.3
    t = torch.randint(0, 1000, (4,), generator=g)
    out = {}
    for name, shape in (("training shape", (4, cfg.frames, cfg.joints, 3)),
                        ("sampling shape", (4, hypotheses, cfg.frames, cfg.joints, 3))):
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            a, b = (m(x2d.to(d), x.to(d), t.to(d)).float().cpu() for m, d in zip(models, devices))
        out[name] = float((a - b).abs().max())
    return out


def step_parity(ctx: Context, log) -> Outcome:
    from common.api import evaluate_checkpoint
    from common.datasets.h36m import H36MDataset

    checkpoint, s = ctx.require_checkpoint(), ctx.sizes
    devices = ["cpu", ctx.device]
    forward = forward_deviation(checkpoint, devices, s.hypotheses)
    log.write(f"denoiser forward, |cpu - {ctx.device}| max (m): {json.dumps(forward)}\n")
    dataset = H36MDataset(ctx.synthetic_set(), "det", "synthetic")
    settings = dict(num_proposals=s.hypotheses, sampling_timesteps=s.iterations, batch_size=8,
                    actions=s.parity_actions, engine="eager", compile="off", p2=True)
    reports, seconds = [], []
    with noise_drawn_on_cpu():
        for d in devices:
            start = time.perf_counter()
            reports.append(evaluate_checkpoint(checkpoint, dataset, device=d, **settings))
            seconds.append(round(time.perf_counter() - start, 1))
            log.write(f"\n== evaluation on {d} (noise drawn on the CPU), {seconds[-1]} s\n{reports[-1].text()}\n")
    a, b = (flat_table(r.to_json()) for r in reports)
    if a.keys() != b.keys():
        return Outcome(False, "the two evaluations' tables have other rows")
    table_dev = worst(abs(a[k] - b[k]) for k in a)
    j_agg = [1000 * r.headline() for r in reports]
    log.write(f"\nlargest table difference {table_dev:.2e} mm over {len(a)} entries\n")
    if torch.device(ctx.device).type == "cuda":
        torch.cuda.empty_cache()                # the later steps' processes get the memory back
    ok = worst(forward.values()) <= FORWARD_TOL_M and table_dev <= TABLE_TOL_MM and all(map(math.isfinite, j_agg))
    numbers = (f"forward {worst(forward.values()):.1e} m (tol {FORWARD_TOL_M:g}); tables {table_dev:.1e} mm over "
               f"{len(a)} entries (tol {TABLE_TOL_MM:g}); J-Agg cpu {j_agg[0]:.2f} / {ctx.device} {j_agg[1]:.2f} mm")
    return Outcome(ok, numbers, {"forward_m": forward, "table_max_mm": table_dev, "j_agg_mm": j_agg,
                                 "seconds": seconds, "settings": settings})


# --------------------------------------------------------------------------- the speed benchmark
def bench_numbers(report: dict) -> str:
    """frames/s, clips/s and peak MiB of every variant, one line."""
    parts = []
    for section in ("sampling", "training"):
        s = report.get(section)
        if not s:
            continue
        key = s["unit"].replace("/", "_per_")
        cells = []
        for name, v in s["variants"].items():
            mem = v.get("peak_memory_mib")
            cells.append(f"{name} {v[key]:.1f}" + (f" ({mem:.0f} MiB)" if mem is not None else ""))
        parts.append(f"{s['unit']}: " + ", ".join(cells))
    return "; ".join(parts)


def bench_step(extra: tuple) -> Callable:
    def step(ctx: Context, log) -> Outcome:
        path = Path(log.name).with_suffix(".json")
        cmd = [sys.executable, "-m", "benchmarks.benchmark", *ctx.sizes.bench, "--device", ctx.device, "--no-engine",
               "--json", path, *extra]
        rc, _ = run_command(cmd, log, timeout=ctx.limit(420))
        if rc != 0 or not path.is_file():
            return Outcome(False, f"exit code {rc}")
        report = json.loads(path.read_text())
        deviations = {n: v["max_deviation_m"] for n, v in report["sampling"]["variants"].items()}
        ok = "--amp" in extra or worst(v for n, v in deviations.items() if n != "stand-in") <= FORWARD_TOL_M
        c = report["config"]
        return Outcome(ok, f"F={c['frames']} C={c['channels']} D={c['depth']} H={c['hypotheses']} "
                           f"K={c['iterations']}: {bench_numbers(report)}",
                       {"json": path.name, "max_deviation_m": deviations})
    step.__doc__ = f"benchmarks/benchmark.py {' '.join(extra) or 'fp32'}."
    return step


# --------------------------------------------------------------------------- the check
@dataclass(frozen=True)
class Step:
    """A row of the check: its name, what runs it, the time it needs left to be started, and
    for a step that starts at the beginning of the check, the command to start (run() then
    waits for it at the step's place)."""

    key: str
    run: Callable
    needs_s: float = 10.0
    early: Callable | None = None


# In the order they are judged. The suite runs alongside the steps before it (CPU work beside
# GPU work) and ends before the benchmarks start, which run alone.
STEPS = [
    Step("conformance-fp32", conformance_step(None)),
    Step("conformance-bf16", conformance_step("bf16")),
    Step("conformance-fp16", conformance_step("fp16")),
    Step("train", step_train, 30),
    Step("eval-bf16-compile", step_eval, 20),
    Step("parity", step_parity, 30),        # runs in this process: not stopped at the deadline once started
    Step("tests", step_tests, 0, early=tests_command),
    Step("bench-fp32", bench_step(()), 30),
    Step("bench-bf16-compile", bench_step(("--amp", "bf16", "--compile")), 60),
]


def selected_steps(names: str | None) -> list[Step]:
    """The steps --steps names (comma-separated; 'conformance' selects its three rows), in order."""
    if not names:
        return list(STEPS)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    names_it = lambda name, key: key == name or key.startswith(name + "-")
    unknown = [n for n in wanted if not any(names_it(n, s.key) for s in STEPS)]
    if unknown:
        raise ValueError(f"unknown step {unknown[0]!r}: choose from {', '.join(s.key for s in STEPS)}")
    return [s for s in STEPS if any(names_it(n, s.key) for n in wanted)]


def log_name(ctx: Context, index: int, step: Step) -> Path:
    return ctx.out / f"{index:02d}-{step.key}.log"


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def start_early(ctx: Context, steps: list) -> None:
    """Start the commands of the steps that run alongside the others (Step.early), where the
    machine has the cores for it (OVERLAP_MIN_CPUS)."""
    if cpu_count() < OVERLAP_MIN_CPUS:
        return
    for index, step in enumerate(steps, 1):
        if step.early is not None:
            path = log_name(ctx, index, step)
            path.write_text("")
            with open(path, "a") as log:
                ctx.early[step.key] = start_command(step.early(ctx), log)


def run_step(index: int, total: int, step: Step, ctx: Context) -> Result:
    """Run one step with its output in DIR/NN-key.log; an exception is a FAIL (traceback in the
    log); a step with less than its needs_s left before the deadline is not started (SKIP)."""
    prefix = f"[{index}/{total}] {step.key}"
    log_path = log_name(ctx, index, step)
    if step.key not in ctx.early and ctx.time_left() < step.needs_s:
        r = Result(step.key, "SKIP", 0.0, f"not started: {max(0.0, ctx.time_left()):.0f} s left before the deadline")
    else:
        print(f"{prefix} ...", flush=True)
        if step.key not in ctx.early:
            log_path.write_text("")
        start = time.perf_counter()
        with open(log_path, "a") as log:         # appended to by the steps' commands too
            try:
                outcome = step.run(ctx, log)
                result = "PASS" if outcome.ok else "FAIL"
            except Skipped as e:
                outcome, result = Outcome(False, str(e)), "SKIP"
            except Exception as e:      # noqa: BLE001 - a failing step must not stop the others
                log.write("\n" + traceback.format_exc())
                outcome, result = Outcome(False, f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"), "FAIL"
        seconds = outcome.seconds if outcome.seconds is not None else time.perf_counter() - start
        r = Result(step.key, result, round(seconds, 1), outcome.numbers, log_path.name, outcome.details)
    print(f"{prefix}: {r.result} ({r.seconds:.1f} s) {r.numbers}", flush=True)
    return r


def environment(device: str) -> dict:
    """The device's name and the software versions, for the summary."""
    d = torch.device(device)
    if d.type == "cuda":
        name = torch.cuda.get_device_name(d)
    else:
        from benchmarks.machine import cpu_features

        name = cpu_features()["model"]
    return {"device": device, "name": name, "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "python": platform.python_version(), "cpus": cpu_count()}


def markdown_table(results: list) -> str:
    """The summary as a Markdown table: step, result, seconds, key numbers."""
    cell = lambda text: str(text).replace("|", "\\|").replace("\n", " ")
    lines = ["| step | result | seconds | key numbers |", "|---|---|---:|---|"]
    lines += [f"| {cell(r.step)} | {r.result} | {r.seconds:.1f} | {cell(r.numbers)} |" for r in results]
    return "\n".join(lines)


def environment_line(env: dict) -> str:
    cuda = f"CUDA {env['cuda']}, cuDNN {env['cudnn']}" if env["cuda"] else "no CUDA build"
    return (f"{env['name']} ({env['device']}); torch {env['torch']}, {cuda}; Python {env['python']}, "
            f"{env['cpus']} CPUs")


def summary_text(results: list, env: dict, command: str, seconds: float) -> str:
    passed = sum(r.result == "PASS" for r in results)
    return (f"`{command}`: {passed}/{len(results)} steps passed in {seconds:.0f} s\n"
            f"{environment_line(env)}\n\n{markdown_table(results)}\n")


def device_refusal(device: str) -> str | None:
    """The one-line refusal when the device asked for cannot be used, else None."""
    try:
        d = torch.device(device)
    except RuntimeError:
        return f"error: --device {device} is not a device name: use cuda, cuda:N or cpu"
    if d.type not in ("cuda", "cpu"):
        return f"error: --device {device}: this check runs on cuda, cuda:N or cpu"
    if d.type == "cuda" and not torch.cuda.is_available():
        build = f"a CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU-only build"
        return (f"error: CUDA is not available here (torch {torch.__version__}, {build}): run this on a GPU machine, "
                f"or give --device cpu (with --quick for a short smoke test)")
    if d.type == "cuda" and d.index is not None and d.index >= torch.cuda.device_count():
        return f"error: --device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
    return None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (the CPU only when asked for)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder for every step's output (default: checkpoint/gpu_check-<date>-<time>)")
    p.add_argument("--quick", action="store_true",
                   help="every step in a tiny form (one test file, tiny models and data): a smoke test")
    p.add_argument("--steps", default=None, metavar="NAMES",
                   help="comma-separated steps to run (default: all): " + ", ".join(s.key for s in STEPS))
    p.add_argument("--deadline-s", type=float, default=DEADLINE_S, metavar="S",
                   help="seconds the whole check may take: a command still running then is stopped (its step "
                        "fails), a later step is not started (SKIP); 0: no deadline")
    args = p.parse_args(argv)
    try:
        args.selected = selected_steps(args.steps)
    except ValueError as e:
        p.exit(2, f"error: {e}\n")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def write_summary(out: Path, results: list, env: dict, command: str, seconds: float, quick: bool) -> str:
    """DIR/summary.md and DIR/summary.json (rewritten after every step, so a check stopped from
    outside still leaves the rows it finished); returns the Markdown."""
    text = summary_text(results, env, command, seconds)
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(
        {"command": command, "environment": env, "quick": quick, "seconds": round(seconds, 1),
         "tolerances": {"forward_m": FORWARD_TOL_M, "table_mm": TABLE_TOL_MM, "resume": RESUME_TOL,
                        "amp_bound_m": AMP_BOUND_M},
         "steps": [r.__dict__ for r in results]}, indent=1, default=str))
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    refusal = device_refusal(args.device)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    out = Path(args.out or ROOT / "checkpoint" / time.strftime("gpu_check-%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    ctx = Context(args.device, QUICK if args.quick else FULL, out,
                  start + args.deadline_s if args.deadline_s > 0 else math.inf)
    env = environment(args.device)
    command = " ".join(["python -m benchmarks.gpu_check"] + args.argv)
    print(f"{command}\n{environment_line(env)}\noutput in {out}", flush=True)
    results = []
    try:
        start_early(ctx, args.selected)
        for i, step in enumerate(args.selected, 1):
            results.append(run_step(i, len(args.selected), step, ctx))
            text = write_summary(out, results, env, command, time.monotonic() - start, args.quick)
    finally:                            # interrupted: what was started early must not outlive the check
        for running in ctx.early.values():
            stop_process_group(running.proc)
    print("\n" + text)
    return 0 if all(r.result == "PASS" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
