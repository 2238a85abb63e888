"""Evaluation with 1 and N processes on this machine, and the time of the full Human3.6M test
set at the paper's setting extrapolated from a measured per-window cost.

    python -m benchmarks.distributed_eval                      # 1 vs 2 processes, then the paper-setting pass
    python -m benchmarks.distributed_eval --processes 1,2,4 --json dist.json

Measured: (1) the wall time of `main.py --evaluate` on the synthetic set (written to a temporary
folder; a randomly initialised model of the demo's size, F=27 C=64 D=2, H=5 K=5, flip, -b 8)
with one process and under torchrun with N processes, every process with the same number of
threads, and whether their JSON tables are identical; (2) the time of one sampling iteration
of one hypothesis with flip (two denoiser passes) on one F=243 window at the paper's setting
(C=512, D=8, random weights; what the sampler runs, chunking included).
Derived: a window at H=20, K=10 costs H x K such iterations; the Human3.6M test set (S9, S11,
4 cameras) holds about H36M_TEST_FRAMES frames in H36M_TEST_SEQUENCES sequences (the figure
the literature gives for the VideoPose3D-format files; not read from data here), so about
frames / F + sequences / 2 windows (each sequence's last window is end-aligned); N devices
take 1/N of the time, as the plan splits the windows within one denoiser call of even.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.model.denoiser import Denoiser, DenoiserConfig  # noqa: E402
from common.model.diffusion import DDIMSampler, Diffusion, FlipTTA  # noqa: E402
from common.geometry.skeleton import H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT, flip_pose  # noqa: E402

H36M_TEST_FRAMES = 543_344      # S9 + S11, 4 cameras (an assumption, see the docstring)
H36M_TEST_SEQUENCES = 240       # 2 subjects x 30 recordings x 4 cameras
PAPER = dict(frames=243, channels=512, depth=8, heads=8, hypotheses=20, iterations=10)


def h36m_test_windows(frames: int = PAPER["frames"]) -> dict:
    """Evaluation windows of the Human3.6M test set (derived): the bounds and the estimate."""
    low = -(-H36M_TEST_FRAMES // frames)
    return {"low": low, "high": low + H36M_TEST_SEQUENCES, "estimate": low + H36M_TEST_SEQUENCES // 2}


def paper_iteration_seconds(repeats: int = 2, device="cpu") -> tuple[float, float]:
    """Median wall and CPU time (all threads) of one DDIM iteration of one hypothesis with flip
    on one F=243 window."""
    cfg = DenoiserConfig(frames=PAPER["frames"], channels=PAPER["channels"], depth=PAPER["depth"],
                         heads=PAPER["heads"], drop_path=0.0)
    torch.manual_seed(0)
    model = Denoiser(cfg).to(device).eval()
    sampler = DDIMSampler(Diffusion(), 1)
    x2d = torch.randn(1, cfg.frames, cfg.joints, 2, device=device) * 0.3
    tta = FlipTTA(flip_pose(x2d, H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT), H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT)
    wall, cpu = [], []
    with torch.no_grad():
        for i in range(repeats + 1):                       # the first call warms up
            start, start_cpu = time.perf_counter(), time.process_time()
            sampler.sample(model, x2d, 1, flip=tta)
            if i:
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
    return sorted(wall)[len(wall) // 2], sorted(cpu)[len(cpu) // 2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed_evaluations(processes: list[int], threads: int, actions: str) -> list[dict]:
    """Wall time of main.py --evaluate with each process count (start-up included) and the
    identity of the JSON tables with the first run's."""
    from common.model.checkpoint import atomic_save, make_checkpoint
    from common.datasets.synthetic import write_synthetic_h36m

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_synthetic_h36m(tmp / "data", name="synthetic")
        torch.manual_seed(0)
        atomic_save(make_checkpoint(Denoiser(DenoiserConfig(frames=27, channels=64, depth=2, heads=8, drop_path=0.0))),
                    tmp / "model.bin")
        args = ["main.py", "-d", "synthetic", "-k", "det", "--data-dir", str(tmp / "data"), "--evaluate",
                str(tmp / "model.bin"), "-num_proposals", "5", "-sampling_timesteps", "5", "-b", "8", "--nolog",
                "--device", "cpu", "--engine", "eager", "-a", actions]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "PYTHONPATH": str(ROOT)}
        reference = None
        for n in processes:
            launcher = [sys.executable] if n == 1 else [sys.executable, "-m", "torch.distributed.run",
                                                        "--nproc_per_node", str(n), "--master_port", str(_free_port())]
            start, used = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            proc = subprocess.run([*launcher, *args, "-c", str(tmp / f"n{n}")], cwd=ROOT, env=env,
                                  capture_output=True, text=True)
            seconds, now = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (now.ru_utime + now.ru_stime) - (used.ru_utime + used.ru_stime)
            if proc.returncode:
                raise RuntimeError(f"{n} processes failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
            tables = (tmp / f"n{n}" / "eval_model.json").read_text()
            reference = reference or tables
            share = [line for line in proc.stdout.splitlines() if "shares took" in line or "evaluating across" in line]
            out.append({"processes": n, "threads_per_process": threads, "wall_s": seconds, "cpu_s": cpu,
                        "identical_json": tables == reference, "log": share})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", default="1,2", help="process counts to time, comma-separated (first: reference)")
    p.add_argument("--threads", type=int, default=1, help="threads per process in the timed evaluations")
    p.add_argument("-a", "--actions", default="Walking,Eating,Sitting", help="synthetic actions to evaluate")
    p.add_argument("--repeats", type=int, default=2, help="timed paper-setting iterations (after one warm-up)")
    p.add_argument("--devices", default="1,2,8,64", help="device counts for the extrapolation")
    p.add_argument("--skip-runs", action="store_true", help="only the paper-setting measurement")
    p.add_argument("--gpu-tflops", type=float, default=0.0,
                   help="also extrapolate to GPUs assumed to sustain this many TFLOP/s on the denoiser")
    p.add_argument("--json", default="", help="also write the numbers to this file")
    args = p.parse_args(argv)

    report = {"command": " ".join(sys.argv), "torch": torch.__version__, "cpu_threads": torch.get_num_threads()}
    if not args.skip_runs:
        runs = timed_evaluations([int(n) for n in args.processes.split(",")], args.threads, args.actions)
        report["runs"] = runs
        print("measured: main.py --evaluate on the synthetic set (F=27 C=64 D=2, H=5 K=5, flip, -b 8), "
              "wall time and CPU time of all processes, start-up included")
        for r in runs:
            print(f"  {r['processes']} process(es) x {r['threads_per_process']} thread(s): {r['wall_s']:.1f} s "
                  f"({runs[0]['wall_s'] / r['wall_s']:.2f}x), {r['cpu_s']:.1f} CPU s in all, "
                  f"JSON identical to the first: {r['identical_json']}")
            for line in r["log"]:
                print(f"      {line}")
    seconds, cpu_seconds = paper_iteration_seconds(args.repeats)
    cfg = DenoiserConfig(frames=PAPER["frames"], channels=PAPER["channels"], depth=PAPER["depth"], heads=PAPER["heads"])
    passes = PAPER["hypotheses"] * PAPER["iterations"]
    per_window, per_window_cpu = seconds * passes, cpu_seconds * passes
    flops = cfg.flops(PAPER["hypotheses"], PAPER["iterations"], True)
    windows = h36m_test_windows()
    report.update(paper_iteration_s=seconds, paper_iteration_cpu_s=cpu_seconds, per_window_s=per_window,
                  per_window_flops=flops, windows=windows)
    print(f"measured: one iteration of one hypothesis with flip on one F=243 window (C=512 D=8), "
          f"{torch.get_num_threads()} thread(s): {seconds:.2f} s wall, {cpu_seconds:.2f} s CPU")
    print(f"derived: one window at H={PAPER['hypotheses']} K={PAPER['iterations']} = {passes} such iterations = "
          f"{per_window / 60:.1f} min wall, {per_window_cpu / 60:.1f} min CPU ({flops:.3g} FLOPs, "
          f"{flops / per_window_cpu / 1e9:.0f} GFLOP/s per CPU second)")
    print(f"derived: Human3.6M test set (assumed {H36M_TEST_FRAMES} frames in {H36M_TEST_SEQUENCES} sequences): "
          f"{windows['low']}-{windows['high']} windows, about {windows['estimate']} "
          f"({windows['estimate'] * flops:.2g} FLOPs)")
    total, total_cpu = windows["estimate"] * per_window, windows["estimate"] * per_window_cpu
    for n in (int(d) for d in args.devices.split(",")):
        print(f"derived: on {n} process(es) like this one: {total / n / 3600:.0f} h at the measured wall time, "
              f"{total_cpu / n / 3600:.0f} h at its CPU time (an idle core)")
    report["extrapolated_hours"] = {n: total / int(n) / 3600 for n in args.devices.split(",")}
    if args.gpu_tflops:
        gpu_window = flops / (args.gpu_tflops * 1e12)
        print(f"assumed: a GPU sustaining {args.gpu_tflops:g} TFLOP/s (not measured here): "
              f"{gpu_window:.2f} s per window")
        for n in (int(d) for d in args.devices.split(",")):
            print(f"derived: on {n} such GPU(s): {windows['estimate'] * gpu_window / n / 3600:.2f} h")
        report["gpu_tflops_assumed"] = args.gpu_tflops
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
