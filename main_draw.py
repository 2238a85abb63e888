"""Draw one Human3.6M sequence: evaluate a checkpoint on it, animate the 2D input, the H hypotheses
and the J-Agg pose beside the ground truth, and plot its errors per sampling iteration.

    python main_draw.py -k cpn_ft_h36m_dbb -b 2 -c checkpoint -gpu 0 --nolog --evaluate h36m_best_epoch.bin \
        -num_proposals 5 -sampling_timesteps 5 --render --viz-subject S11 --viz-action SittingDown --viz-camera 1
    python main_draw.py -d synthetic -k det --evaluate checkpoint/demo/best_epoch.bin \
        -num_proposals 5 -sampling_timesteps 5 --render --viz-subject S9 --viz-action Walking --viz-camera 0

Writes <out>.mp4 (or .gif without ffmpeg) with --render, and always <out>_errors.png (the four
aggregation modes against the iteration k) and <out>_hypotheses.png (one frame, all hypotheses),
where <out> is --viz-output (default plot/<dataset>/<subject>_<action>_cam<k>).
"""
from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path

import numpy as np

from common.arguments import build_parser, resolve_device
from common.camera import image_coordinates
from common.coco import coco_skeleton
from common.datasets.base import Sequence
from common.datasets.h36m import H36MDataset
from common.evaluate import evaluate_sequences, format_iterations, summarize
from common.experiment import entry_point, eval_settings, load_for_evaluation, make_sampler
from common.metrics import AGGREGATION_MODES
from common.outputs import check_writable, check_writable_file
from common.render import plot_hypotheses_frame, plot_iteration_errors, render_animation
from common.skeleton import H36M_FPS, h36m_skeleton_17
from main import layout_of


def add_viz_arguments(parser, limit_help: str = "draw (and evaluate) only the first N frames; None: all"):
    """The animation flags shared with main_in_the_wild.py (VideoPose3D's names)."""
    g = parser.add_argument_group("visualisation")
    g.add_argument("--render", action="store_true", help="write the animation")
    g.add_argument("--viz-output", default="", metavar="FILE",
                   help="animation file, .mp4 (needs ffmpeg, else a .gif is written) or .gif")
    g.add_argument("--viz-limit", type=int, default=None, metavar="N", help=limit_help)
    g.add_argument("--viz-downsample", type=int, default=1, metavar="N", help="animate every N-th frame")
    g.add_argument("--viz-size", type=float, default=5.0, help="size of each panel, inches (100 dpi)")
    g.add_argument("--viz-azimuth", type=float, default=-70.0,
                   help="view azimuth of the 3D panels, degrees (-90 looks from the camera)")
    return g


def build_draw_parser():
    p = build_parser(__doc__.splitlines()[0])
    g = add_viz_arguments(p)
    g.add_argument("--viz-subject", default="S11", help="subject to draw")
    g.add_argument("--viz-action", default="SittingDown",
                   help="action: an exact name ('SittingDown 2') or a group (its first sequence)")
    g.add_argument("--viz-camera", type=int, default=1, help="camera index, 0-3")
    g.add_argument("--viz-video", default="", metavar="FILE", help="video of that camera to draw the 2D "
                                                                  "input on (needs ffmpeg)")
    g.add_argument("--viz-no-ground-truth", action="store_true", help="leave out the ground truth")
    g.add_argument("--viz-frame", type=int, default=None, metavar="I",
                   help="frame of the hypotheses still; None: the middle one")
    g.add_argument("--viz-export", default="", metavar="FILE.npz",
                   help="also save hypotheses, aggregated poses, ground truth and 2D input to this file")
    return p


def pick_sequence(dataset: H36MDataset, subject: str, action: str, camera: int) -> Sequence:
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
    return next(s for s in dataset.sequences([subject], [action]) if s.action == action and s.camera == camera)


def first_frames(seq: Sequence, n: int | None) -> Sequence:
    """The sequence cut to its first n frames (all when n is None)."""
    if n is None or n >= seq.num_frames:
        return seq
    if n < 1:
        raise ValueError(f"--viz-limit {n}: give a positive number of frames")
    cut = lambda x: None if x is None else x[:n]  # noqa: E731
    return dataclasses.replace(seq, pose_2d=seq.pose_2d[:n], pose_3d=cut(seq.pose_3d), traj=cut(seq.traj),
                               valid=cut(seq.valid), extra={k: v[:n] for k, v in seq.extra.items()})


def output_stem(args, seq: Sequence) -> Path:
    """Path without suffix of everything this script writes."""
    if args.viz_output:
        return Path(args.viz_output).with_suffix("")
    return Path("plot") / args.dataset / f"{seq.subject}_{seq.action.replace(' ', '_')}_cam{seq.camera}"


def run(argv=None) -> int:
    args = build_draw_parser().parse_args(argv)
    if not args.evaluate:
        raise ValueError("main_draw.py draws a trained model: pass --evaluate CHECKPOINT")
    device = resolve_device(args)
    dataset = H36MDataset(args.data_dir, args.keypoints, args.dataset)
    seq = first_frames(pick_sequence(dataset, args.viz_subject, args.viz_action, args.viz_camera), args.viz_limit)
    check_writable(output_stem(args, seq).parent, "--viz-output")
    if args.viz_export:
        check_writable_file(args.viz_export, "--viz-export")
    model = load_for_evaluation(args, device)

    # Evaluate the one sequence, keeping per-frame poses and hypotheses.
    sampler = make_sampler(args, args.sampling_timesteps)
    settings = eval_settings(args, layout_of(dataset), args.num_proposals, args.sampling_timesteps,
                             keep_poses=True, keep_hypotheses=True)
    result = evaluate_sequences(model, sampler, [seq], settings, device, desc=seq.name)[0]
    print(format_iterations(summarize([result]), "p1", f"{seq.name}, {seq.num_frames} frames: MPJPE (mm) "
                                                       f"per iteration, H={args.num_proposals}"))
    j_agg = result.poses["J-Agg"][-1]                                  # (N, 17, 3) last iteration
    hypotheses = result.hypotheses[-1].transpose(1, 0, 2, 3)           # (N, H, 17, 3)
    gt = None if args.viz_no_ground_truth else seq.pose_3d
    stem = output_stem(args, seq)
    stem.parent.mkdir(parents=True, exist_ok=True)

    written = [plot_iteration_errors(f"{stem}_errors.png", {m: 1000 * result.error("p1", m)
                                                            for m in AGGREGATION_MODES})]
    frame = seq.num_frames // 2 if args.viz_frame is None else args.viz_frame
    if not 0 <= frame < seq.num_frames:
        raise ValueError(f"--viz-frame {frame} is outside the {seq.num_frames} frames drawn")
    written.append(plot_hypotheses_frame(f"{stem}_hypotheses.png", hypotheses[frame], j_agg[frame],
                                         None if gt is None else gt[frame], h36m_skeleton_17(),
                                         azim=args.viz_azimuth))
    keypoints_px = image_coordinates(seq.pose_2d, seq.res_w, seq.res_h)  # (N, J2, 2) pixels
    if args.viz_export:
        written.append(export(args.viz_export, result, seq, keypoints_px))
    if args.render:
        suffix = Path(args.viz_output).suffix if args.viz_output else (".mp4" if shutil.which("ffmpeg") else ".gif")
        written.append(render_animation(
            stem.with_suffix(suffix), keypoints_px, {"J-Agg": j_agg}, h36m_skeleton_17(), fps=H36M_FPS,
            size=args.viz_size, hypotheses=hypotheses, ground_truth=gt, background=args.viz_video or None,
            resolution=(seq.res_w, seq.res_h), downsample=args.viz_downsample, azim=args.viz_azimuth,
            skeleton_2d=coco_skeleton() if dataset.layout_name == "coco" else None))
    print("wrote " + ", ".join(str(p) for p in written) + ("" if args.render else " (--render for the animation)"))
    return 0


def export(path, result, seq: Sequence, keypoints_px: np.ndarray) -> Path:
    """Save the drawn sequence: the same keys as main_in_the_wild.py's output, plus ground truth."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, hypotheses=result.hypotheses.transpose(2, 0, 1, 3, 4),   # (N, K, H, 17, 3)
             j_agg=result.poses["J-Agg"][-1], p_agg=result.poses["P-Agg"][-1],
             ground_truth=seq.pose_3d, trajectory=seq.traj[:, 0], keypoints_2d=keypoints_px,
             intrinsics=seq.cam, image_size=np.array([seq.res_w, seq.res_h]),
             modes=np.array(AGGREGATION_MODES), errors_mm=np.stack([1000 * result.error("p1", m)
                                                                     for m in AGGREGATION_MODES]))
    return path


def main(argv=None) -> int:
    return entry_point(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
