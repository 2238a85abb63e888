"""The project's figures, made from the demo model on the synthetic set:

  fig/demo.gif    2D input, the J-Agg pose over its hypotheses, and the ground truth (animation)
  fig/frame.png   one frame: all hypotheses, the J-Agg pose and the ground truth
  fig/errors.png  MPJPE of the four aggregation modes against the sampling iteration k
  fig/method.png  the method at a glance: 2D input -> denoiser (H hypotheses, K DDIM steps)
                  -> JPMA reprojection choosing per joint -> 3D output
  fig/reliability.png  the per-joint uncertainty on the test recordings its factors were not
                  fitted on: stated vs observed coverage, spread vs error

    python main.py --demo            # trains checkpoint/demo/best_epoch.bin (a few minutes on a CPU)
    python fig/make_figures.py       # then this (about a minute)
    python fig/make_figures.py --only reliability     # just fig/reliability.png
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.run.arguments import non_negative_int  # noqa: E402
from common.geometry.camera import image_coordinates, project_to_2d  # noqa: E402
from common.outputs.render import CENTER_COLOR, LEFT_COLOR, RIGHT_COLOR  # noqa: E402
from common.geometry.skeleton import h36m_skeleton_17  # noqa: E402

# The sequence shown: a test subject of the synthetic set sitting down.
DRAW_FLAGS = ["-d", "synthetic", "-k", "det", "--viz-subject", "S11", "--viz-action", "SittingDown",
              "--viz-camera", "1", "-num_proposals", "5", "-sampling_timesteps", "5", "-b", "4"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(ROOT / "checkpoint" / "demo" / "best_epoch.bin"))
    p.add_argument("--data-dir", default=str(ROOT / "data"), help="folder with the synthetic set (made by --demo)")
    p.add_argument("--out", default=str(ROOT / "fig"))
    p.add_argument("--frame", type=non_negative_int, default=40, help="frame of frame.png")
    p.add_argument("--only", choices=("all", "reliability"), default="all", help="which figures to make")
    args = p.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        print(f"error: {args.checkpoint} not found: train the demo model first with `python main.py --demo`",
              file=sys.stderr)
        return 2
    from common.run.arguments import build_draw_parser, resolve_device
    from common.run.config import RunConfig
    from common.datasets.synthetic import ensure_synthetic
    from common.run.draw import DrawPaths, DrawView, draw_sequence

    ensure_synthetic(args.data_dir)
    out = Path(args.out)
    draw_args = build_draw_parser().parse_args(DRAW_FLAGS + [
        "--data-dir", args.data_dir, "--evaluate", args.checkpoint, "--viz-size", "2", "--viz-downsample", "2",
        "--viz-azimuth", "-60", "--viz-frame", str(args.frame)])
    from common.run.experiment import entry_point

    if args.only == "reliability":
        if entry_point(lambda: reliability_figure(args.checkpoint, args.data_dir, out / "reliability.png")):
            return 2
        print(f"wrote {out / 'reliability.png'}")
        return 0

    def draw() -> int:
        with tempfile.TemporaryDirectory() as tmp:
            export = Path(tmp) / "demo.npz"
            draw_sequence(RunConfig.from_args(draw_args), DrawView.from_args(draw_args), resolve_device(draw_args),
                          DrawPaths(errors=out / "errors.png", frame=out / "frame.png", animation=out / "demo.gif",
                                    export=export))
            with np.load(export) as d:
                method_figure(out / "method.png", {k: d[k] for k in d.files})
        return 0

    if entry_point(draw):
        return 2
    print(f"wrote {out / 'method.png'}, {out / 'frame.png'}, {out / 'errors.png'}, {out / 'demo.gif'}")
    return 0


# ---------------------------------------------------------------------------- reliability.png

def reliability_figure(checkpoint, data_dir, path) -> int:
    """Evaluate the demo model (H=5, K=5) on the synthetic test recordings its uncertainty
    factors were not fitted on, and plot how its radius holds there."""
    from common.run.calibration import stored_calibration
    from common.model.checkpoint import load_denoiser
    from common.datasets.h36m import H36MDataset
    from common.model.diffusion import DDIMSampler, Diffusion
    from common.evaluation.evaluate import EvalSettings, evaluate_sequences
    from common.inference.core import InferenceCore
    from common.uncertainty.frames import fitted_mask, usable_frames
    from common.uncertainty.report import plot_reliability

    model, ckpt = load_denoiser(checkpoint)
    calibration = stored_calibration(ckpt, checkpoint, 5)
    dataset = H36MDataset(data_dir, "det", "synthetic")
    sequences = [s for s in dataset.sequences(["S9", "S11"]) if not fitted_mask(calibration, s).any()]  # held out
    core = InferenceCore.of_sampler(model.eval(), DDIMSampler(Diffusion(), 5), layout=dataset.layout, hypotheses=5,
                                    group=8, seed=1)
    results = evaluate_sequences(core, sequences, EvalSettings(keep_frames=True, progress=False))
    keep = [usable_frames(r) & ~fitted_mask(calibration, r.sequence) for r in results]
    error = np.concatenate([r.frames.error[k] for r, k in zip(results, keep)])[:, 1:]     # the root left out
    spread = np.concatenate([r.frames.spread[k] for r, k in zip(results, keep)])[:, 1:]
    if calibration is not None:                           # the factors of the 16 other joints
        from common.uncertainty.factors import Calibration

        calibration = Calibration([row[1:] for row in calibration.table], calibration.counts[1:],
                                  calibration.fitted_on, calibration.levels)
    plot_reliability(path, error, spread, calibration,
                     title=f"demo model, synthetic S9/S11, H=5 K=5: {len(error)} frames the factors were not "
                           f"fitted on")
    return 0


# ---------------------------------------------------------------------------- method.png

def method_figure(path, d: dict) -> None:
    """Five panels joined by arrows, drawn from the demo model's real output at the frame
    where its hypotheses differ most."""
    skeleton = h36m_skeleton_17()
    frame = int(d["hypotheses"][:, -1].std(axis=1).mean(axis=(1, 2)).argmax())
    hyps = d["hypotheses"][frame, -1]                                  # (H, 17, 3) last iteration
    chosen, agg = d["j_agg"][frame], d["p_agg"][frame]
    w, h = (int(v) for v in d["image_size"])
    cam = torch.from_numpy(d["intrinsics"])
    traj = d["trajectory"][frame]                                      # (3,)
    reproj = image_coordinates(project_to_2d(torch.from_numpy(hyps + traj), cam).numpy(), w, h)   # (H, 17, 2)
    keypoints = d["keypoints_2d"][frame]                               # (17, 2) pixels
    num_h, num_k = d["hypotheses"].shape[2], d["hypotheses"].shape[1]

    fig = Figure(figsize=(13, 3.4), dpi=110)
    FigureCanvasAgg(fig)
    xs = [0.01, 0.205, 0.40, 0.595, 0.79]
    width, bottom, height = 0.18, 0.13, 0.7

    ax = fig.add_axes([xs[0], bottom, width, height])
    for back in range(6, 0, -2):                                      # a few earlier frames, fainter
        _draw_2d(ax, d["keypoints_2d"][max(frame - 3 * back, 0)], skeleton, alpha=0.15)
    _draw_2d(ax, keypoints, skeleton)
    _frame_2d(ax, keypoints, "2D keypoints\n(F frames x 17 joints)")

    ax = fig.add_axes([xs[1], bottom, width, height])
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.add_patch(FancyBboxPatch((0.08, 0.3), 0.84, 0.4, boxstyle="round,pad=0.02", fc="#dde8f5", ec="0.3"))
    ax.text(0.5, 0.56, "Denoiser", ha="center", va="center", fontsize=13, fontweight="bold")
    ax.text(0.5, 0.41, "spatial / temporal\ntransformer", ha="center", va="center", fontsize=9)
    ax.text(0.5, 0.9, f"{num_h} hypotheses $y_T \\sim \\mathcal{{N}}(0, I)$", ha="center", fontsize=9)
    ax.annotate("", (0.5, 0.72), (0.5, 0.85), arrowprops=dict(arrowstyle="->", color="0.3"))
    ax.annotate("", (0.3, 0.27), (0.7, 0.27), arrowprops=dict(arrowstyle="->", color="tab:orange", lw=1.5,
                                                              connectionstyle="arc3,rad=-0.6"))
    ax.text(0.5, 0.02, f"K = {num_k} DDIM steps:\n$y_t \\rightarrow \\hat y_0 \\rightarrow y_{{t'}}$",
            ha="center", va="bottom", fontsize=9, color="tab:orange")
    ax.set_title("Diffusion sampling", fontsize=11)

    ax = fig.add_axes([xs[2], bottom, width, height], projection="3d")
    for hyp in hyps:
        _draw_3d(ax, hyp, skeleton, color="0.5", lw=1, alpha=0.6)
    _draw_3d(ax, agg, skeleton, color="0.15", lw=1.8, alpha=1, dashed=True)
    _frame_3d(ax, hyps, f"{num_h} 3D hypotheses\n(dashed: their mean, P-Agg)")

    ax = fig.add_axes([xs[3], bottom, width, height])
    for hyp_2d in reproj:
        _draw_2d(ax, hyp_2d, skeleton, color="0.55", alpha=0.6, points=False)
    dist = np.linalg.norm(reproj - keypoints, axis=-1)                 # (H, 17) pixels
    best = dist.argmin(axis=0)
    j = int(np.ptp(dist, axis=0).argmax())                             # the joint where hypotheses differ most
    ax.scatter(*reproj[best, np.arange(len(best))].T, s=9, c="tab:green", zorder=5)   # the kept joints
    ax.scatter(*keypoints.T, s=10, c="k", marker="x", zorder=6, linewidths=1)
    _frame_2d(ax, np.concatenate([keypoints, reproj.reshape(-1, 2)]),
              "JPMA: reproject with the camera,\nper joint keep the nearest to 2D")
    zoom = ax.inset_axes([0.62, 0.02, 0.36, 0.36])                    # one joint's choice, enlarged
    for k in range(num_h):
        keep = k == best[j]
        zoom.plot(*np.stack([reproj[k, j], keypoints[j]]).T, color="tab:green" if keep else "0.6",
                  lw=1.5 if keep else 0.8)
        zoom.scatter(*reproj[k, j], s=22 if keep else 12, c="tab:green" if keep else "0.5", zorder=5)
    zoom.scatter(*keypoints[j], s=30, c="k", marker="x", zorder=6)
    _frame_2d(zoom, np.concatenate([keypoints[j:j + 1], reproj[:, j]]), "")
    for spine in zoom.spines.values():
        spine.set_color("tab:green")
    ax.indicate_inset_zoom(zoom, edgecolor="tab:green")

    ax = fig.add_axes([xs[4], bottom, width, height], projection="3d")
    _draw_3d(ax, chosen, skeleton, lw=2.2, alpha=1)
    _frame_3d(ax, hyps, "3D pose (J-Agg)")

    for a, b in zip(xs[:-1], xs[1:]):
        fig.add_artist(FancyArrowPatch((a + width - 0.005, bottom + height / 2), (b + 0.005, bottom + height / 2),
                                       transform=fig.transFigure, arrowstyle="-|>", mutation_scale=16,
                                       color="0.25", lw=1.5))
    fig.text(0.5, 0.025, "The 2D keypoints condition every denoiser call; every iteration's hypotheses can be "
                        "aggregated. Black x: 2D input; green: the hypothesis joint JPMA keeps.",
             ha="center", fontsize=9, color="0.3")
    fig.savefig(path)


def _draw_2d(ax, pose, skeleton, color=None, alpha=1.0, points=True):
    colors = _colors(skeleton)
    for child, parent in skeleton.bones():
        ax.plot(*pose[[child, parent]].T, color=color or colors[child], lw=1.5, alpha=alpha)
    if points:
        ax.scatter(*pose.T, s=6, c=color or colors, alpha=alpha, zorder=3)


def _frame_2d(ax, points, title):
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre, half = (lo + hi) / 2, 0.6 * (hi - lo).max()
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] + half, centre[1] - half)                   # image y points down
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)


def _draw_3d(ax, pose, skeleton, color=None, lw=2.0, alpha=1.0, dashed=False):
    colors = _colors(skeleton)
    p = np.stack([pose[:, 0], pose[:, 2], -pose[:, 1]], axis=-1)      # camera (x, y down, z) -> plot (x, z, up)
    for child, parent in skeleton.bones():
        ax.plot(*p[[child, parent]].T, color=color or colors[child], lw=lw, alpha=alpha,
                ls="--" if dashed else "-")


def _frame_3d(ax, poses, title):
    radius = 1.05 * np.abs(poses).max()
    ax.set_xlim3d(-radius, radius)
    ax.set_ylim3d(-radius, radius)
    ax.set_zlim3d(-radius, radius)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=12, azim=-65)
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_ticklabels([])
    ax.set_title(title, fontsize=10)


def _colors(skeleton):
    left, right = set(skeleton.joints_left), set(skeleton.joints_right)
    return [LEFT_COLOR if j in left else RIGHT_COLOR if j in right else CENTER_COLOR
            for j in range(skeleton.num_joints())]


if __name__ == "__main__":
    sys.exit(main())
