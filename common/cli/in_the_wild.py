"""In the wild: train D3DP on COCO-17 2D input with Human3.6M 3D output, or lift one person's
detected 2D keypoints from any video to 3D (no ground truth, unknown camera).

    # train (or --evaluate on Human3.6M) with Detectron COCO-17 detections, as in the paper
    python main_in_the_wild.py -k detectron_pt_coco -c checkpoint/wild -gpu 0 --nolog
    # lift a detector's output (AlphaPose / COCO JSON, .npy, .npz) to 3D and animate it
    python main_in_the_wild.py --evaluate checkpoint/wild/best_epoch.bin --keypoints-file alphapose-results.json \
        --video input.mp4 -num_proposals 5 -sampling_timesteps 5 --output input_3d.npz --render

The output .npz holds hypotheses (frames, K, H, 17, 3), the J-Agg pose j_agg (frames, 17, 3)
and p_agg, in metres, camera space, root-relative (Human3.6M-17 joints), the estimated root
trajectory (frames, 3) and the camera used (see in_the_wild/lifting.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..arguments import (add_viz_arguments, build_parser, non_negative_int, number, positive_float, positive_int,
                         resolve_device, split_list)
from ..datasets.h36m import H36MDataset
from ..experiment import (entry_point, load_for_evaluation, load_resume, make_sampler, pbest_group,
                               run_evaluation, run_training)
from ..outputs import check_writable_file
from ..in_the_wild import lifting
from ..in_the_wild.keypoints import read_keypoints


def build_wild_parser():
    p = build_parser(__doc__.splitlines()[0])
    p.set_defaults(keypoints="detectron_pt_coco")
    g = p.add_argument_group("in-the-wild input (with --keypoints-file)")
    g.add_argument("--keypoints-file", default="", metavar="FILE",
                   help="one person's COCO-17 keypoints: AlphaPose / COCO results .json, .npy or .npz "
                        "(frames, 17, 2|3) pixels; needs --evaluate")
    g.add_argument("--track-id", type=int, default=None, help="person to use in a tracked JSON; None: the "
                                                              "longest track")
    g.add_argument("--threshold", type=number(float, 0, 1), default=0.3, help="keypoints below this confidence are "
                                                                "interpolated over time")
    g.add_argument("--max-frame-gap", type=positive_int, default=30, metavar="N",
                   help="frame numbers further apart split the detections; the longest segment is used")
    g.add_argument("--max-missing-frames", type=number(float, 0, 1), default=0.5, metavar="SHARE",
                   help="refuse a clip when more than this share of its frames has no detection")
    g.add_argument("--width", type=positive_int, default=None, help="image width, pixels")
    g.add_argument("--height", type=positive_int, default=None, help="image height, pixels")
    g.add_argument("--video", "--viz-video", dest="video", default=None, metavar="FILE",
                   help="the source video: image size (with ffprobe) and background of --render")
    g.add_argument("--focal", type=positive_float, default=None, help="focal length, pixels; None: the image width")
    g.add_argument("--input-layout", choices=("auto", "coco", "h36m"), default="auto",
                   help="2D joint layout the model was trained on (auto: from the checkpoint's training args)")
    g.add_argument("--output", default="", metavar="FILE.npz",
                   help="result file; empty: <keypoints file>_3d.npz beside it")
    g.add_argument("--fps", type=positive_float, default=25.0, help="frame rate of the animation")
    add_viz_arguments(p, limit_help="animate only the first N frames; None: all")
    return p


def run(argv=None) -> int:
    args = build_wild_parser().parse_args(argv)
    device = resolve_device(args)
    if args.keypoints_file:
        return lift(args, device)

    # Training / Human3.6M evaluation: main.py's flow on a (usually COCO-layout) 2D file.
    resumed = load_resume(args) if args.resume and not args.evaluate else None   # the run's data flags
    dataset = H36MDataset(args.data_dir, args.keypoints, args.dataset)
    args.input_layout = dataset.layout_name      # recorded in the checkpoint's args for inference
    layout, actions = dataset.layout(), split_list(args.actions)
    test = dataset.sequences(split_list(args.subjects_test), actions, downsample=args.downsample)
    if args.evaluate:
        model = load_for_evaluation(args, device)
        run_evaluation(args, model, test, layout, device, Path(args.checkpoint),
                       name=f"eval_{Path(args.evaluate).stem}")
        return 0
    train = dataset.sequences(split_list(args.subjects_train), actions, args.subset, args.downsample)
    run_training(args, train, test, layout, device, resumed=resumed)
    return 0


def lift(args, device) -> int:
    if not args.evaluate:
        raise ValueError("--keypoints-file needs a trained model: add --evaluate CHECKPOINT")
    keypoints_file = Path(args.keypoints_file)
    out_path = check_writable_file(args.output or keypoints_file.with_name(keypoints_file.stem + "_3d.npz"),
                                   "--output")
    if args.render and args.viz_output:
        check_writable_file(args.viz_output, "--viz-output")
    model, checkpoint = load_for_evaluation(args, device, with_checkpoint=True)
    layout, why = lifting.input_layout_of(checkpoint, args.input_layout)
    keypoints = read_keypoints(args.keypoints_file, args.track_id, args.threshold, max_gap=args.max_frame_gap,
                               max_missing=args.max_missing_frames)
    size = lifting.image_size(keypoints, args.width, args.height, args.video)
    for note in keypoints.warnings:
        print(f"warning: {note}", file=sys.stderr)
    print(keypoints.summary())
    print(f"{keypoints.num_frames} frames of {size[0]}x{size[1]} pixels; {layout} input (from {why}); "
          f"F={model.cfg.frames} H={args.num_proposals} K={args.sampling_timesteps} on {device}")
    sampler = make_sampler(args, args.sampling_timesteps)
    result = lifting.lift_keypoints(model, sampler, keypoints, size, layout, args.num_proposals, focal=args.focal,
                                    flip=args.test_time_augmentation, batch=args.eval_batch or pbest_group(args),
                                 seed=args.seed, device=device)
    for note in lifting.doubtful_input(result, keypoints):
        print(f"warning: {note}", file=sys.stderr)
    out = result.save(out_path)
    print(f"wrote {out}: root depth {result.trajectory[:, 2].min():.2f}-{result.trajectory[:, 2].max():.2f} m")
    if args.render:
        animation = args.viz_output or out.with_suffix(".mp4")
        path = lifting.render_result(result, animation, video=args.video, fps=args.fps, size=args.viz_size,
                                     limit=args.viz_limit, downsample=args.viz_downsample, azim=args.viz_azimuth)
        print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    return entry_point(lambda: run(argv))

