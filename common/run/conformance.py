"""Check this implementation against conformance vectors produced by the authors' code.

    python -m common.run.conformance [DIR ...]

DIR (default: tests/fixtures/d3dp_reference_A, carried in the repository) holds config.json,
checkpoint.bin and vectors.npz, laid out as that folder's README describes. Sizes come from
config.json only. Prints the maximum absolute deviation per quantity and
exits with status 1 if any exceeds its tolerance.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..inference.aggregation import j_agg, reproject
from .arguments import non_negative_int
from ..model.checkpoint import load_denoiser
from ..model.denoiser import DenoiserConfig
from ..model.device import AMP_DTYPES, amp_dtype, autocast
from ..model.diffusion import DDIMSampler, Diffusion, FlipTTA
from ..evaluation.metrics import aggregation_errors, mpjpe, p_mpjpe

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "d3dp_reference_A"

# Tolerances (absolute; poses in metres).
TOL_DENOISER = 1e-5
TOL_SCHEDULE = 1e-10
TOL_DDIM = 1e-4
TOL_AGGREGATION = 1e-5
TOL_METRIC = 1e-6
TOL_AMP = 1e-4          # 0.1 mm: the denoiser and sampler under --amp (mixed precision)

# How vectors.npz names each aggregation mode's errors: err_<name>, err2_<name>.
VECTOR_NAMES = {"J-Agg": "j_agg", "P-Agg": "p_agg", "P-Best": "p_best", "J-Best": "j_best"}


@dataclass
class Check:
    quantity: str
    deviation: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(self.deviation <= self.tolerance)


def _dev(a: torch.Tensor, b) -> float:
    b = torch.as_tensor(b)
    assert tuple(a.shape) == tuple(b.shape), f"shape {tuple(a.shape)} vs reference {tuple(b.shape)}"
    return float((a.double() - b.double()).abs().max())


def run_conformance(folder, device: str = "cpu", amp: str | None = None,
                    max_batch_hypotheses: int | None = None) -> list[Check]:
    """Replay every quantity of a conformance folder; one Check per quantity.
    amp ('bf16'/'fp16') runs the denoiser and the sampler under autocast and checks them
    against TOL_AMP; max_batch_hypotheses splits the sampler's denoiser calls."""
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    v = np.load(folder / "vectors.npz")

    def tensor(name):
        return torch.from_numpy(v[name]).to(device)

    model_cfg = DenoiserConfig(frames=cfg["frames"], channels=cfg["channels"], depth=cfg["depth"],
                               heads=cfg["heads"], joints=cfg["joints"], mlp_ratio=cfg["mlp_ratio"], drop_path=0.0)
    model, _ = load_denoiser(folder / "checkpoint.bin", model_cfg)
    model = model.to(device).eval()
    checks = []
    add = lambda name, value, ref, tol: checks.append(Check(name, _dev(value.cpu(), ref), tol))

    dtype = amp_dtype(amp)
    tol_denoiser, tol_ddim = (TOL_AMP, TOL_AMP) if dtype is not None else (TOL_DENOISER, TOL_DDIM)
    with torch.no_grad(), autocast(device, dtype):
        add("denoiser_out", model(tensor("inputs_2d"), tensor("x_noisy"), tensor("t_eval")).float(),
            v["denoiser_out"], tol_denoiser)
        add("denoiser_train_out", model(tensor("inputs_2d"), tensor("x_noisy_train"), tensor("t_train")).float(),
            v["denoiser_train_out"], tol_denoiser)

    diffusion = Diffusion(cfg["timesteps"], cfg["scale"])
    add("betas", diffusion.betas, v["betas"], TOL_SCHEDULE)
    add("alphas_cumprod", diffusion.alphas_cumprod, v["alphas_cumprod"], TOL_SCHEDULE)
    sampler = DDIMSampler(diffusion, cfg["iterations"], cfg["ddim_eta"], max_batch_hypotheses=max_batch_hypotheses,
                          amp_dtype=dtype)
    add("ddim_time_pairs", torch.tensor(sampler.time_pairs), v["ddim_time_pairs"], 0)

    k, h = cfg["iterations"], cfg["hypotheses"]
    x2d = tensor("inputs_2d")
    out = sampler.sample(model, x2d, h, noise=[tensor(f"ddim_noise_{i}") for i in range(k)])
    add("ddim_out", out, v["ddim_out"], tol_ddim)
    flip = FlipTTA(tensor("inputs_2d_flip"), cfg["joints_left"], cfg["joints_right"])
    out = sampler.sample(model, x2d, h, flip=flip, noise=[tensor(f"ddim_flip_noise_{i}") for i in range(k)])
    add("ddim_flip_out", out, v["ddim_flip_out"], tol_ddim)

    hyps, gt, traj, cam = tensor("pred_for_metrics"), tensor("gt_3d"), tensor("traj"), tensor("cam")
    add("reproj_2d", reproject(hyps, traj, cam), v["reproj_2d"], TOL_AGGREGATION)
    add("j_agg_pose", j_agg(hyps, x2d, traj, cam)[0], v["j_agg_pose"], TOL_AGGREGATION)
    for protocol2, prefix in ((False, "err_"), (True, "err2_")):
        errors = aggregation_errors(hyps, gt, x2d, traj, cam, protocol2=protocol2)
        for mode, name in VECTOR_NAMES.items():
            add(prefix + name, errors[mode], v[prefix + name], TOL_AGGREGATION)
    add("mpjpe", mpjpe(tensor("metric_pred"), tensor("metric_target")), v["mpjpe"], TOL_METRIC)
    add("p_mpjpe", p_mpjpe(tensor("metric_pred"), tensor("metric_target")), v["p_mpjpe"], TOL_METRIC)
    return checks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", default=[DEFAULT_FOLDER],
                        help="conformance vector folders (default: tests/fixtures/d3dp_reference_A)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", choices=sorted(AMP_DTYPES),
                        help=f"denoiser under autocast; its outputs checked to {TOL_AMP * 1000:g} mm")
    parser.add_argument("--max-batch-hypotheses", type=non_negative_int, default=None, metavar="N",
                        help="split the sampler's denoiser calls into N clip-hypotheses")
    args = parser.parse_args(argv)
    missing = [f for f in args.folders if not (Path(f) / "vectors.npz").is_file() or
               not (Path(f) / "config.json").is_file()]
    if missing:
        print(f"error: {missing[0]} is not a conformance folder (it needs config.json and vectors.npz); "
              f"give the path of a folder of conformance vectors", file=sys.stderr)
        return 2
    failed = 0
    for folder in args.folders:
        print(f"== {folder}")
        checks = run_conformance(folder, args.device, args.amp, args.max_batch_hypotheses)
        for c in checks:
            print(f"  {c.quantity:<22} max |dev| {c.deviation:.3e}  (tol {c.tolerance:.0e})  {'ok' if c.ok else 'FAIL'}")
        bad = [c.quantity for c in checks if not c.ok]
        failed += len(bad)
        print(f"  {'all ' + str(len(checks)) + ' quantities within tolerance' if not bad else 'FAILED: ' + ', '.join(bad)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
