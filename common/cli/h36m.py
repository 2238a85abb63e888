"""Human3.6M: train D3DP, or evaluate a checkpoint (ours or the authors').

    python main.py -k cpn_ft_h36m_dbb -c checkpoint -gpu 0 --nolog
    python main.py -k cpn_ft_h36m_dbb -c checkpoint -gpu 0 --nolog --evaluate h36m_best_epoch.bin \
        -num_proposals 5 -sampling_timesteps 5 -b 4
    python main.py --demo            # synthetic and real motion, small model, minutes on a CPU

--evaluate NAME and -r NAME open <-c folder>/NAME, as the authors' scripts do (a path that
exists as given works too).
"""
from __future__ import annotations

import sys

from ..run.arguments import build_parser, resolve_device
from ..model.checkpoint import safe_load
from ..run.config import RunConfig
from ..datasets.mocap.training_set import ensure_demo_set
from ..datasets.synthetic import ensure_synthetic
from ..inference.core import InferenceCore
from ..run.calibration import calibrate_after_training, data_label
from ..run.experiment import entry_point, eval_settings, run_evaluation
from ..evaluation.report import mean_pose_baseline
from ..run.runner import Outcome, run_experiment

# The demo: a small model on the built-in synthetic set and the repository's real motion clips
# (motion/deepmimic; whole clips held out as test subjects), sized for a few minutes on 2 CPU cores.
# -b 8 -s 1: 8 clips per training batch (b // s) and 8 clips per P-Best group in evaluation.
# --view-augment 20: cameras turned by up to 20 degrees of pitch and 10 of roll, which lifts real
# people far better than the four studio cameras alone.
DEMO_FLAGS = dict(dataset="demo", keypoints="det", number_of_frames=27, cs=64, dep=2, epochs=12,
                  learning_rate=1e-3, lr_decay=0.87, batch_size=8, stride=1, nolog=True, checkpoint="checkpoint/demo",
                  num_proposals=5, sampling_timesteps=3, val_timesteps=1, val_proposals=1, view_augment=20.0)


def apply_demo(args) -> None:
    """Demo settings, unless the user gave a flag explicitly; writes the synthetic set and the
    demo's set (synthetic and real motion) if absent."""
    for key, value in DEMO_FLAGS.items():
        if key not in args.given:
            setattr(args, key, value)
    if args.dataset != "demo":
        ensure_synthetic(args.data_dir, name=args.dataset)
        return
    ensure_synthetic(args.data_dir)
    if not ensure_demo_set(args.data_dir, "demo", merge="synthetic"):
        args.dataset = "synthetic"


def run(argv=None) -> int:
    args = build_parser(__doc__.splitlines()[0]).parse_args(argv)
    if args.demo:
        apply_demo(args)
    device = resolve_device(args)
    outcome = run_experiment(RunConfig.from_args(args), device, args=args)   # the data set of -d
    if args.demo and outcome.trainer is not None:
        demo_comparison(outcome)
    return 0


def demo_comparison(outcome: Outcome) -> None:
    """After the demo's training: evaluate the final weights, fit their per-joint uncertainty
    factors on every other test recording from that same evaluation (stored in latest_epoch.bin,
    and in best_epoch.bin when it holds the same epoch; a different best epoch is fitted on its
    own), and compare them with the mean training pose."""
    out = outcome.out_dir
    latest = safe_load(out / "latest_epoch.bin")            # the final weights
    best = out / "best_epoch.bin"
    same = best.is_file() and safe_load(best).get("epoch") == latest.get("epoch")
    report, _ = run_evaluation(outcome.config, outcome.trainer.model.eval(), outcome.test, outcome.dataset.layout,
                               outcome.device, out, name="demo_eval", checkpoint=latest, dataset=outcome.dataset,
                               refit=True, store_in=(out / "latest_epoch.bin", *((best,) if same else ())))
    if report is None:                             # under torchrun, rank 0 reports
        return
    if best.is_file() and not same:
        fit_best_epoch(outcome)
    j_agg, baseline = 1000 * report.headline(), 1000 * mean_pose_baseline(outcome.train, outcome.test)
    print(f"\nDemo result: J-Agg MPJPE {j_agg:.1f} mm vs {baseline:.1f} mm for the mean training pose "
          f"({j_agg / baseline:.0%} of the baseline).")


def fit_best_epoch(outcome: Outcome) -> None:
    """The uncertainty factors of best_epoch.bin when it is not the final epoch (common.run.calibration)."""
    config = outcome.config
    core = InferenceCore.from_run(config, outcome.trainer.model, outcome.device, outcome.dataset.layout)
    calibrate_after_training(outcome.trainer, outcome.test, core, eval_settings(config, keep={"frames"}),
                             data_label(config, outcome.test, outcome.dataset), names=("best_epoch.bin",))


def main(argv=None) -> int:
    return entry_point(lambda: run(argv))


def main_evaluate(argv=None) -> int:
    """`d3dp-evaluate`: main.py for evaluation only (--evaluate is required)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not any(a == "--evaluate" or a.startswith("--evaluate=") for a in argv):
        print("error: d3dp-evaluate needs --evaluate CHECKPOINT (d3dp-train trains)", file=sys.stderr)
        return 2
    return main(argv)

