"""How well the per-joint uncertainty holds on real motion: the demo model on the MPI-INF-3DHP
TS5 annotations.

The demo model (trained on the synthetic set, Human3.6M joints) lifts TS5's 2D annotations,
mapped to the Human3.6M joint order (MPI-INF-3DHP's 17 evaluation joints are the same body
points), with TS5's camera for J-Agg. Two calibrations are measured on TS5's valid frames:

1. the factors stored in the demo checkpoint (fitted on synthetic recordings): does the
   radius keep its coverage on real motion, under a change of domain?
2. factors refitted on the first half of TS5's frames (`--calibrate`'s rule for a set of one
   recording), measured on the second half.

    python main.py --demo
    python -m benchmarks.uncertainty_ts5 --raw-dir /path/to/mpi_inf_3dhp_test_set
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


from common.run.calibration import stored_calibration
from common.model.checkpoint import load_denoiser
from common.datasets.base import Sequence
from common.datasets.mpi_inf_3dhp import load_3dhp_test
from common.model.diffusion import DDIMSampler, Diffusion
from common.evaluation.evaluate import EvalSettings, evaluate_sequences
from common.inference.core import InferenceCore
from common.geometry.skeleton import h36m_skeleton_17
from common.uncertainty.frames import calibration_split, fit_from_results
from common.uncertainty.report import evaluate_calibration

# Human3.6M joint j is MPI-INF-3DHP joint H36M_FROM_3DHP[j] (pelvis, right hip .. ankle, left hip
# .. ankle, spine, neck -> thorax, head -> neck/nose, head top -> head, left arm, right arm).
H36M_FROM_3DHP = [14, 8, 9, 10, 11, 12, 13, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4]


def ts5_in_h36m_order(raw_dir) -> Sequence:
    seq = load_3dhp_test(Path(raw_dir), ["TS5"])[0]
    idx = H36M_FROM_3DHP
    return Sequence(subject="TS5", action="TS5", camera=0, pose_2d=seq.pose_2d[:, idx], pose_3d=seq.pose_3d[:, idx],
                    traj=seq.traj, cam=seq.cam, res_w=seq.res_w, res_h=seq.res_h, root_index=0, valid=seq.valid)


def _line(name: str, block: dict, part: str) -> str:
    b = block[part]
    return (f"{name}: {b['frames']} frames, observed coverage {100 * b['coverage']:.1f}% at stated "
            f"{100 * block['coverage_stated']:.0f}%, rank correlation {b['rank_correlation']:.3f}, "
            f"mean radius {b['mean_radius_mm']:.1f} mm, J-Agg error {b['mean_error_mm']:.1f} mm")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--raw-dir", required=True, help="folder holding TS5/annot_data.mat")
    p.add_argument("--checkpoint", default="checkpoint/demo/latest_epoch.bin")
    p.add_argument("--coverage", type=float, default=0.9)
    p.add_argument("--json", default="", help="also write both blocks to this file")
    args = p.parse_args(argv)
    model, ckpt = load_denoiser(args.checkpoint)
    stored = stored_calibration(ckpt, args.checkpoint, 5)
    seq = ts5_in_h36m_order(args.raw_dir)
    core = InferenceCore.of_sampler(model.eval(), DDIMSampler(Diffusion(), 5), hypotheses=5, group=8, seed=1)
    results = evaluate_sequences(core, [seq], EvalSettings(keep={"frames"}, progress=False))
    names = h36m_skeleton_17().names                       # TS5 in the Human3.6M joint order
    out = {}
    if stored is not None:
        out["demo_factors"] = evaluate_calibration(results, stored, args.coverage, names)
        print(_line("TS5 with the demo's factors (fitted on synthetic recordings)", out["demo_factors"], "all"))
    masks, how = calibration_split([seq])
    refit = fit_from_results(results, masks, {"data": "MPI-INF-3DHP TS5", "split": how, "hypotheses": 5,
                                              "iterations": 5})
    out["refit_first_half"] = evaluate_calibration(results, refit, args.coverage, names)
    print(_line("TS5 second half, factors refitted on the first half", out["refit_first_half"], "held_out"))
    uncal = evaluate_calibration(results, None, args.coverage, names)
    print(_line("TS5, raw spread as radius (uncalibrated)", uncal, "all"))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
