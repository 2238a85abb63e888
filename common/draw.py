"""Evaluate a checkpoint on one Human3.6M-format sequence and draw it: the animation of the 2D
input, the H hypotheses and the J-Agg pose beside the ground truth, the errors per sampling
iteration, one frame with all hypotheses, and optionally the numbers behind them (.npz)."""
from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .arguments import resolve_device
from .camera import image_coordinates
from .coco import coco_skeleton
from .datasets.base import Sequence
from .datasets.h36m import H36MDataset
from .evaluate import evaluate_sequences
from .experiment import eval_settings, load_for_evaluation, make_sampler, show_progress
from .metrics import AGGREGATION_MODES
from .render import plot_hypotheses_frame, plot_iteration_errors, render_animation
from .report import Report
from .outputs import check_writable
from .skeleton import H36M_FPS, h36m_skeleton_17
from .calibration import stored_calibration
from .uncertainty import DEFAULT_COVERAGE, check_coverage, radius


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


def default_paths(args, seq: Sequence) -> DrawPaths:
    """main_draw.py's file names: <out>_errors.png, <out>_hypotheses.png, <out>.mp4 (.gif without
    ffmpeg) with --render, --viz-export; <out> is --viz-output without its suffix or
    plot/<dataset>/<subject>_<action>_cam<k>."""
    if args.viz_output:
        stem = Path(args.viz_output).with_suffix("")
    else:
        stem = Path("plot") / args.dataset / f"{seq.subject}_{seq.action.replace(' ', '_')}_cam{seq.camera}"
    suffix = Path(args.viz_output).suffix if args.viz_output else (".mp4" if shutil.which("ffmpeg") else ".gif")
    return DrawPaths(errors=Path(f"{stem}_errors.png"), frame=Path(f"{stem}_hypotheses.png"),
                     animation=stem.with_suffix(suffix) if args.render else None,
                     export=Path(args.viz_export) if args.viz_export else None)


def selected_sequence(args, dataset: H36MDataset) -> Sequence:
    """The sequence the --viz-* flags name, cut to --viz-limit frames."""
    seq = pick_sequence(dataset, args.viz_subject, args.viz_action, args.viz_camera, args.downsample)
    return first_frames(seq, args.viz_limit)


def draw_sequence(args, paths: DrawPaths | None = None) -> list[Path]:
    """Evaluate --evaluate on the sequence of --viz-subject/--viz-action/--viz-camera (flags of
    common.arguments.build_draw_parser) and write the files of paths (default_paths when None).
    Prints the sequence's errors per iteration; returns the files written."""
    if not args.evaluate:
        raise ValueError("drawing needs a trained model: pass --evaluate CHECKPOINT")
    device = resolve_device(args)
    dataset = H36MDataset(args.data_dir, args.keypoints, args.dataset)
    seq = selected_sequence(args, dataset)
    paths = paths or default_paths(args, seq)
    for path, flag in ((paths.errors, "--viz-output"), (paths.frame, "--viz-output"),
                       (paths.animation, "--viz-output"), (paths.export, "--viz-export")):
        if path is not None:
            check_writable(Path(path).parent, flag)
    model, checkpoint = load_for_evaluation(args, device, with_checkpoint=True)
    coverage = check_coverage(getattr(args, "coverage", DEFAULT_COVERAGE))
    calibration = stored_calibration(checkpoint, args.evaluate, args.num_proposals)

    # Evaluate the one sequence, keeping per-frame poses and hypotheses.
    sampler = make_sampler(args, args.sampling_timesteps)
    settings = eval_settings(args, dataset.layout(), args.num_proposals, args.sampling_timesteps,
                             keep_poses=True, keep_hypotheses=True, keep_frames=True)
    result = evaluate_sequences(model, sampler, [seq], settings, device, desc=seq.name)[0]
    print(Report([result]).iterations_text("p1", f"{seq.name}, {seq.num_frames} frames: MPJPE (mm) per iteration, "
                                                 f"H={args.num_proposals}"))
    j_agg = result.poses["J-Agg"][-1]                                  # (N, 17, 3) last iteration
    hypotheses = result.hypotheses[-1].transpose(1, 0, 2, 3)           # (N, H, 17, 3)
    radii = None if args.num_proposals < 2 else 1000 * radius(result.frames.spread, calibration, coverage)  # (N, 17) mm
    label = f"{coverage:.0%} radius, mm" if calibration else "spread of the hypotheses, mm (uncalibrated)"
    gt = None if args.viz_no_ground_truth else seq.pose_3d
    frame = seq.num_frames // 2 if args.viz_frame is None else args.viz_frame
    if not 0 <= frame < seq.num_frames:
        raise ValueError(f"--viz-frame {frame} is outside the {seq.num_frames} frames drawn")

    written = [plot_iteration_errors(paths.errors, {m: 1000 * result.error("p1", m) for m in AGGREGATION_MODES})]
    written.append(plot_hypotheses_frame(paths.frame, hypotheses[frame], j_agg[frame],
                                         None if gt is None else gt[frame], h36m_skeleton_17(),
                                         azim=args.viz_azimuth, uncertainty=None if radii is None else radii[frame],
                                         uncertainty_label=label))
    keypoints_px = image_coordinates(seq.pose_2d, seq.res_w, seq.res_h)  # (N, J2, 2) pixels
    if paths.export is not None:
        written.append(export(paths.export, result, seq, keypoints_px, radii))
    if paths.animation is not None:
        written.append(render_animation(
            paths.animation, keypoints_px, {"J-Agg": j_agg}, h36m_skeleton_17(), fps=H36M_FPS / args.downsample,
            size=args.viz_size, hypotheses=hypotheses, ground_truth=gt, background=args.viz_video or None,
            resolution=(seq.res_w, seq.res_h), downsample=args.viz_downsample, azim=args.viz_azimuth,
            skeleton_2d=coco_skeleton() if dataset.layout_name == "coco" else None, progress=show_progress(args),
            uncertainty=radii, uncertainty_label=label))
    return written


def export(path, result, seq: Sequence, keypoints_px: np.ndarray, uncertainty: np.ndarray | None = None) -> Path:
    """Save the drawn sequence: the same keys as main_in_the_wild.py's output, plus ground truth
    (and the J-Agg joints' uncertainty radius (N, 17) mm when given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, hypotheses=result.hypotheses.transpose(2, 0, 1, 3, 4),   # (N, K, H, 17, 3)
             j_agg=result.poses["J-Agg"][-1], p_agg=result.poses["P-Agg"][-1],
             ground_truth=seq.pose_3d, trajectory=seq.traj[:, 0], keypoints_2d=keypoints_px,
             intrinsics=seq.cam, image_size=np.array([seq.res_w, seq.res_h]),
             modes=np.array(AGGREGATION_MODES), errors_mm=np.stack([1000 * result.error("p1", m)
                                                                     for m in AGGREGATION_MODES]),
             **({} if uncertainty is None else {"uncertainty": uncertainty}))
    return path
