"""Memory and time of lifting (and evaluating) one long sequence: does the peak stay at the
outputs plus a working set that does not grow with the length?

    python -m benchmarks.long_input                       # 1 hour at 30 fps (108,000 frames), H=5 K=5
    python -m benchmarks.long_input --frames 10800 27000 108000 --json out.json

Each length runs in a fresh process (so each peak is its own): it builds that many frames of
synthetic COCO-17 keypoints (a smoothly moving figure, as a detector's .npy output), lifts
them with a small randomly initialised model (F=27, C=16, D=1) through the in-the-wild
pipeline (common/in_the_wild/lifting.py: sampling, JPMA without ground truth, the .npz
written), and with --evaluate also scores a sequence of the same length with ground truth
(common/evaluation/evaluate.py). It reports the peak resident memory (getrusage ru_maxrss) above the
memory after start-up, the bytes of the arrays the lifting returns and writes, and the time.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common.run.arguments import non_negative_int, positive_int


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024            # Linux: kilobytes


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def synthetic_keypoints(frames: int, width: int = 1000, height: int = 1000, seed: int = 0):
    """(frames, 17, 2) pixels of a figure walking to and fro, with per-joint wobble, and
    confidences: built array-wise (no per-frame objects)."""
    from common.in_the_wild.keypoints import Keypoints2D

    rng = np.random.default_rng(seed)
    base = rng.normal(scale=60.0, size=(1, 17, 2)).astype(np.float32) + np.float32([width / 2, height / 2])
    t = np.arange(frames, dtype=np.float32)[:, None, None] / 30.0
    phase = rng.uniform(0, 2 * np.pi, size=(1, 17, 2)).astype(np.float32)
    pixels = base + 15.0 * np.sin(2.0 * t + phase) + np.float32([150.0, 0.0]) * np.sin(0.05 * t)
    return Keypoints2D(keypoints=pixels.astype(np.float32), confidence=np.full((frames, 17), 0.9, np.float32),
                       frame_ids=np.arange(frames, dtype=np.int64), res_w=width, res_h=height)


def small_model(frames: int = 27, channels: int = 16, depth: int = 1):
    from common.model.denoiser import Denoiser, DenoiserConfig

    torch.manual_seed(0)
    return Denoiser(DenoiserConfig(frames=frames, channels=channels, depth=depth, heads=2, drop_path=0.0)).eval()


def measure(frames: int, hypotheses: int, iterations: int, batch: int, evaluate: bool, out_dir: Path) -> dict:
    """One length, in this process."""
    from common.geometry.coco import input_layout
    from common.model.diffusion import DDIMSampler, Diffusion
    from common.in_the_wild import lifting
    from common.inference.core import InferenceCore

    model = small_model()
    sampler = DDIMSampler(Diffusion(), iterations, max_batch_hypotheses=0)    # as the scripts: automatic chunks
    keypoints = synthetic_keypoints(frames)
    start_mb = current_rss_mb()
    t0 = time.perf_counter()
    core = InferenceCore.of_sampler(model, sampler, layout=input_layout("coco"), hypotheses=hypotheses, group=batch)
    result = lifting.lift_keypoints(core, keypoints, (1000, 1000))
    path = result.save(out_dir / "lifted.npz")
    lift_s = time.perf_counter() - t0
    outputs = sum(np.asarray(getattr(result, k)).nbytes for k in
                  ("hypotheses", "j_agg", "p_agg", "trajectory", "keypoints_2d", "confidence", "frame_ids"))
    report = {"frames": frames, "hypotheses": hypotheses, "iterations": iterations, "batch": batch,
              "threads": torch.get_num_threads(), "start_mb": round(start_mb, 1),
              "lift_peak_mb": round(peak_rss_mb(), 1), "lift_outputs_mb": round(outputs / 2 ** 20, 1),
              "lift_working_mb": round(peak_rss_mb() - start_mb - outputs / 2 ** 20, 1),
              "lift_s": round(lift_s, 1), "file_mb": round(path.stat().st_size / 2 ** 20, 1)}
    del result
    if evaluate:
        report.update(measure_evaluation(model, sampler, keypoints, hypotheses, iterations, batch))
    return report


def measure_evaluation(model, sampler, keypoints, hypotheses: int, iterations: int, batch: int) -> dict:
    """Score one sequence of the same length with (made-up) ground truth: evaluation keeps
    only sums, so its peak should not grow with the length at all."""
    from common.geometry.camera import normalize_screen_coordinates
    from common.geometry.coco import input_layout
    from common.datasets.base import Sequence
    from common.evaluation.evaluate import EvalSettings, evaluate_sequences
    from common.inference.core import InferenceCore
    from common.in_the_wild.root_depth import default_intrinsics

    n = keypoints.num_frames
    rng = np.random.default_rng(1)
    pose_3d = (0.2 * rng.standard_normal((1, 17, 3)) + np.zeros((n, 1, 1))).astype(np.float32)
    pose_3d[:, 0] = 0
    seq = Sequence(subject="S9", action="Walking", camera=0,
                   pose_2d=normalize_screen_coordinates(keypoints.keypoints, 1000, 1000).astype(np.float32),
                   pose_3d=pose_3d, traj=np.tile(np.float32([0, 0, 5]), (n, 1, 1)),
                   cam=default_intrinsics(1000, 1000).astype(np.float32))
    before_mb = current_rss_mb()
    t0 = time.perf_counter()
    core = InferenceCore.of_sampler(model, sampler, layout=input_layout("h36m"), hypotheses=hypotheses, group=batch)
    results = evaluate_sequences(core, [seq], EvalSettings(progress=False))
    error = float(results[0].error("p1", "J-Agg")[-1])
    return {"eval_s": round(time.perf_counter() - t0, 1), "eval_rss_before_mb": round(before_mb, 1),
            "eval_peak_mb": round(peak_rss_mb(), 1), "eval_j_agg_mm": round(1000 * error, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=positive_int, nargs="+", default=[108_000],
                   help="sequence lengths, each in a fresh process (108,000: one hour at 30 fps)")
    p.add_argument("-num_proposals", dest="hypotheses", type=positive_int, default=5, help="hypotheses H")
    p.add_argument("-sampling_timesteps", dest="iterations", type=positive_int, default=5, help="DDIM iterations K")
    p.add_argument("-b", "--batch", type=positive_int, default=1024,
                   help="windows per group and denoiser call (main_in_the_wild.py: -b, default 1024)")
    p.add_argument("--evaluate", action="store_true", help="also evaluate a sequence of the same length")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--one", type=non_negative_int, default=0, help=argparse.SUPPRESS)   # child: this length
    args = p.parse_args(argv)
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(measure(args.one, args.hypotheses, args.iterations, args.batch, args.evaluate,
                                     Path(tmp))))
        return 0
    rows = []
    for frames in args.frames:
        cmd = [sys.executable, "-m", "benchmarks.long_input", "--one", str(frames), "-num_proposals",
               str(args.hypotheses), "-sampling_timesteps", str(args.iterations), "-b", str(args.batch)]
        cmd += ["--evaluate"] if args.evaluate else []
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"argv": sys.argv[1:] if argv is None else argv, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
