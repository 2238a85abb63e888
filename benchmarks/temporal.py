"""T-Agg's ablation: each of its steps on and off (and the path, off by default, on), on a data set's test subjects.

    python -m benchmarks.temporal --checkpoint checkpoint/demo/best_epoch.bin [-d demo] [--data-dir data]
        [--subjects S9,S11] [-H 5] [-K 5] [-b 8]

The variants are registered as modes of their own (common.inference.aggregation.MODES, at run
time) and scored by the evaluation (common.evaluation: H hypotheses, K iterations, the authors'
windows and groups), so every number is the one `main.py --evaluate` would print for such a
mode. Printed per variant: MPJPE, Accel (acceleration error, mm/frame^2) and bone CV (%) of
the last iteration, averaged over the synthetic action groups and over the real clips (the
action group 'Mocap', held out of the demo's training), and the seconds the variant's
aggregation took per evaluated group, beside J-Agg's.
"""
from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np
import torch

from common.evaluation.evaluate import EvalSettings, evaluate_sequences
from common.evaluation.report import Report, average_over
from common.inference import aggregation as agg
from common.inference.core import InferenceCore
from common.model.checkpoint import load_denoiser
from common.model.diffusion import DDIMSampler, Diffusion

# name -> T-Agg's keyword arguments (the smoothing's sigma, the bones, the path's switch weight);
# T-Agg itself is smooth+bones without the path.
PATH = 3.0
VARIANTS = {
    "smooth": dict(bones=False),
    "bones": dict(sigma=0),
    "path": dict(switch_weight=PATH, sigma=0, bones=False),
    "path+smooth": dict(switch_weight=PATH, bones=False),
    "path+smooth+bones": dict(switch_weight=PATH),
}
REAL = "Mocap"


def timed(fn, spent: list):
    def run(c):
        start = time.perf_counter()
        out = fn(c)
        spent.append(time.perf_counter() - start)
        return out
    return run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("-d", "--dataset", default="demo", help="a data set in the Human3.6M file format (data_3d_<name>.npz)")
    p.add_argument("--data-dir", default="data")
    p.add_argument("-k", "--keypoints", default="det")
    p.add_argument("--subjects", default="S9,S11")
    p.add_argument("-H", "--hypotheses", type=int, default=5)
    p.add_argument("-K", "--iterations", type=int, default=5)
    p.add_argument("-b", "--group", type=int, default=8)
    args = p.parse_args(argv)

    from common.datasets.h36m import H36MDataset

    model, _ = load_denoiser(args.checkpoint)
    dataset = H36MDataset(args.data_dir, args.keypoints, args.dataset)
    sequences = dataset.sequences(args.subjects.split(","))
    spent = {m: [] for m in ("J-Agg", "T-Agg", *(f"T-Agg {v}" for v in VARIANTS))}
    saved = dict(agg.MODES)
    agg.MODES["J-Agg"] = timed(agg.choose_j_agg, spent["J-Agg"])
    agg.MODES["T-Agg"] = timed(agg.choose_t_agg, spent["T-Agg"])
    for name, kw in VARIANTS.items():
        agg.MODES[f"T-Agg {name}"] = timed(partial(agg.choose_t_agg, **kw), spent[f"T-Agg {name}"])
    try:
        core = InferenceCore.of_sampler(model.eval(), DDIMSampler(Diffusion(), args.iterations), layout=dataset.layout,
                                        hypotheses=args.hypotheses, group=args.group, seed=0)
        with torch.no_grad():
            results = evaluate_sequences(core, sequences, EvalSettings(progress=False))
        report = Report(results, modes=tuple(agg.MODES))
    finally:
        agg.MODES.clear()
        agg.MODES.update(saved)
    print(f"{args.checkpoint} on {args.dataset} {args.subjects} ({len(sequences)} sequences), "
          f"H={args.hypotheses} K={args.iterations} -b {args.group}; last iteration")
    synthetic = average_over({a: row for a, row in report.actions.items() if a != REAL})
    real = report.actions.get(REAL)
    groups = [("synthetic actions", synthetic)] + ([("real clips (Mocap)", real)] if real else [])
    print("| variant | " + " | ".join(f"{g}: MPJPE mm | Accel mm/f^2 | bone CV %" for g, _ in groups)
          + " | aggregation s/group |")
    print("|---" * (2 + 3 * len(groups)) + "|")
    for mode in report.modes:
        if mode in agg.ORACLE_MODES:
            continue
        cells = []
        for _, table in groups:
            cells += [f"{1000 * table[('p1', mode)][-1]:.2f}", f"{1000 * table[('accel', mode)][-1]:.2f}",
                      f"{100 * table[('bone_cv', mode)][-1]:.2f}"]
        cost = f"{np.mean(spent[mode]):.4f}" if spent.get(mode) else ""
        print(f"| {mode} | " + " | ".join(cells) + f" | {cost} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
