"""Evaluate a checkpoint on one Human3.6M-format sequence and draw it: the animation of the 2D
input, the H hypotheses and the J-Agg pose beside the ground truth, the errors per sampling
iteration, one frame with all hypotheses, and optionally the numbers behind them (.npz)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import RunConfig
from ..geometry.camera import image_coordinates
from ..geometry.coco import coco_skeleton
from ..datasets.base import Sequence
from ..datasets.h36m import H36MDataset
from .registry import build_dataset
from ..evaluation.evaluate import evaluate_sequences
from .experiment import eval_settings, load_for_evaluation, show_progress
from ..inference.core import InferenceCore
from ..inference.aggregation import AGGREGATION_MODES, mode_key
from ..outputs.render import mp4_available, plot_hypotheses_frame, plot_iteration_errors, render_animation
from ..evaluation.report import Report
from ..storage.files import check_writable
from ..geometry.skeleton import H36M_FPS, h36m_skeleton_17
from .calibration import stored_calibration
from ..uncertainty.factors import check_coverage, radius


@dataclass(frozen=True)
class DrawView:
    """What to draw and how (main_draw.py's --viz-* flags and --render)."""

    subject: str = "S11"
    action: str = "SittingDown"
    camera: int = 1
    limit: int | None = None             # first N frames only
    frame: int | None = None             # frame of the hypotheses still (None: the middle one)
    render: bool = False                 # write the animation
    output: str = ""                     # animation file; its stem names the other files
    export: str = ""                     # .npz of the numbers drawn
    video: str = ""                      # background video of that camera
    ground_truth: bool = True
    size: float = 5.0
    downsample: int = 1
    azimuth: float = -70.0

    @classmethod
    def from_args(cls, args) -> "DrawView":
        return cls(args.viz_subject, args.viz_action, args.viz_camera, args.viz_limit, args.viz_frame, args.render,
                   args.viz_output, args.viz_export, args.viz_video, not args.viz_no_ground_truth, args.viz_size,
                   args.viz_downsample, args.viz_azimuth)


@dataclass
class DrawPaths:
    """Where draw_sequence writes: always errors and frame (.png); animation (.mp4 or .gif)
    and export (.npz) when given."""

    errors: Path
    frame: Path
    animation: Path | None = None
    export: Path | None = None


def pick_sequence(dataset: H36MDataset, subject: str, action: str, camera: int, downsample: int = 1) -> Sequence:
    """The one sequence to draw: action is an exact name, else the first of its group."""
    names = dataset.actions(subject)
    if action not in names:
        group = [a for a in names if a.split(" ")[0] == action]
        if not group:
            raise ValueError(f"no action {action!r} for subject {subject} in {dataset.path_2d.name}; "
                             f"available: {', '.join(names)}")
        if len(group) > 1:
            print(f"--viz-action {action} matches {group}; drawing {group[0]!r}")
        action = group[0]
    if not 0 <= camera < 4:
        raise ValueError(f"--viz-camera {camera}: camera indices are 0, 1, 2 and 3")
    return next(s for s in dataset.sequences([subject], [action], downsample=downsample)
                if s.action == action and s.camera == camera)


def first_frames(seq: Sequence, n: int | None) -> Sequence:
    """The sequence cut to its first n frames (all when n is None)."""
    if n is None or n >= seq.num_frames:
        return seq
    if n < 1:
        raise ValueError(f"--viz-limit {n}: give a positive number of frames")
    cut = lambda x: None if x is None else x[:n]  # noqa: E731
    return dataclasses.replace(seq, pose_2d=seq.pose_2d[:n], pose_3d=cut(seq.pose_3d), traj=cut(seq.traj),
                               valid=cut(seq.valid), extra={k: v[:n] for k, v in seq.extra.items()})


def default_paths(view: DrawView, dataset_name: str, seq: Sequence) -> DrawPaths:
    """main_draw.py's file names: <out>_errors.png, <out>_hypotheses.png, <out>.mp4 (.gif without
    PyAV and ffmpeg) with --render, --viz-export; <out> is --viz-output without its suffix or
    plot/<dataset>/<subject>_<action>_cam<k>."""
    if view.output:
        stem = Path(view.output).with_suffix("")
    else:
        stem = Path("plot") / dataset_name / f"{seq.subject}_{seq.action.replace(' ', '_')}_cam{seq.camera}"
    suffix = Path(view.output).suffix if view.output else (".mp4" if mp4_available() else ".gif")
    return DrawPaths(errors=Path(f"{stem}_errors.png"), frame=Path(f"{stem}_hypotheses.png"),
                     animation=stem.with_suffix(suffix) if view.render else None,
                     export=Path(view.export) if view.export else None)


def selected_sequence(view: DrawView, dataset: H36MDataset, downsample: int = 1) -> Sequence:
    """The sequence the view names, cut to its first `limit` frames."""
    seq = pick_sequence(dataset, view.subject, view.action, view.camera, downsample)
    return first_frames(seq, view.limit)


def draw_sequence(run: RunConfig, view: DrawView, device, paths: DrawPaths | None = None) -> list[Path]:
    """Evaluate the run's --evaluate checkpoint on the sequence the view names and write the
    files of paths (default_paths when None). Prints the sequence's errors per iteration;
    returns the files written."""
    if not run.evaluate:
        raise ValueError("drawing needs a trained model: pass --evaluate CHECKPOINT")
    dataset = build_dataset(run)                      # the data set of -d
    if not isinstance(dataset, H36MDataset):
        raise ValueError(f"-d {run.dataset}: drawing reads sequences by subject, action and camera, as data sets "
                         f"in Human3.6M's file format have them")
    seq = selected_sequence(view, dataset, run.downsample)
    paths = paths or default_paths(view, run.dataset, seq)
    for path, flag in ((paths.errors, "--viz-output"), (paths.frame, "--viz-output"),
                       (paths.animation, "--viz-output"), (paths.export, "--viz-export")):
        if path is not None:
            check_writable(Path(path).parent, flag)
    model, checkpoint, run = load_for_evaluation(run, device)
    coverage = check_coverage(run.coverage)
    calibration = stored_calibration(checkpoint, run.evaluate, run.num_proposals)

    # Evaluate the one sequence, keeping per-frame poses and hypotheses.
    core = InferenceCore.from_run(run, model, device, dataset.layout, engines=False)
    settings = eval_settings(run, keep={"poses", "hypotheses", "frames"})
    result = evaluate_sequences(core, [seq], settings, desc=seq.name)[0]
    print(Report([result]).iterations_text("p1", f"{seq.name}, {seq.num_frames} frames: MPJPE (mm) per iteration, "
                                                 f"H={run.num_proposals}"))
    j_agg = result.poses["J-Agg"][-1]                                  # (N, 17, 3) last iteration
    hypotheses = result.hypotheses[-1].transpose(1, 0, 2, 3)           # (N, H, 17, 3)
    radii = None if run.num_proposals < 2 else 1000 * radius(result.frames.spread, calibration, coverage)  # (N, 17) mm
    label = f"{coverage:.0%} radius, mm" if calibration else "spread of the hypotheses, mm (uncalibrated)"
    gt = seq.pose_3d if view.ground_truth else None
    frame = seq.num_frames // 2 if view.frame is None else view.frame
    if not 0 <= frame < seq.num_frames:
        raise ValueError(f"--viz-frame {frame} is outside the {seq.num_frames} frames drawn")

    written = [plot_iteration_errors(paths.errors, {m: 1000 * result.error("p1", m) for m in AGGREGATION_MODES})]
    written.append(plot_hypotheses_frame(paths.frame, hypotheses[frame], j_agg[frame],
                                         None if gt is None else gt[frame], h36m_skeleton_17(),
                                         azim=view.azimuth, uncertainty=None if radii is None else radii[frame],
                                         uncertainty_label=label))
    keypoints_px = image_coordinates(seq.pose_2d, seq.res_w, seq.res_h)  # (N, J2, 2) pixels
    if paths.export is not None:
        written.append(export(paths.export, result, seq, keypoints_px, radii))
    if paths.animation is not None:
        written.append(render_animation(
            paths.animation, keypoints_px, {"J-Agg": j_agg}, h36m_skeleton_17(), fps=H36M_FPS / run.downsample,
            size=view.size, hypotheses=hypotheses, ground_truth=gt, background=view.video or None,
            resolution=(seq.res_w, seq.res_h), downsample=view.downsample, azim=view.azimuth,
            skeleton_2d=coco_skeleton() if dataset.layout_name == "coco" else None, progress=show_progress(run),
            uncertainty=radii, uncertainty_label=label))
    return written


def export(path, result, seq: Sequence, keypoints_px: np.ndarray, uncertainty: np.ndarray | None = None) -> Path:
    """Save the drawn sequence: the same keys as main_in_the_wild.py's output, plus ground truth,
    every aggregation mode's poses of the last iteration (j_agg, p_agg, p_best, j_best: the
    oracles too, as the ground truth is known) and the J-Agg joints' uncertainty radius (N, 17)
    mm when given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, hypotheses=result.hypotheses.transpose(2, 0, 1, 3, 4),   # (N, K, H, 17, 3)
             **{mode_key(m): result.poses[m][-1] for m in AGGREGATION_MODES},       # j_agg, p_agg, ...
             ground_truth=seq.pose_3d, trajectory=seq.traj[:, 0], keypoints_2d=keypoints_px,
             intrinsics=seq.cam, image_size=np.array([seq.res_w, seq.res_h]),
             modes=np.array(AGGREGATION_MODES), errors_mm=np.stack([1000 * result.error("p1", m)
                                                                     for m in AGGREGATION_MODES]),
             **({} if uncertainty is None else {"uncertainty": uncertainty}))
    return path
