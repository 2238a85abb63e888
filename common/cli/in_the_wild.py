"""In the wild: train D3DP on COCO-17 2D input with Human3.6M 3D output, or lift one person in
a video (or a detector's 2D keypoints) to 3D (no ground truth, unknown camera).

    # train (or --evaluate on Human3.6M) with Detectron COCO-17 detections, as in the paper
    python main_in_the_wild.py -k detectron_pt_coco -c checkpoint/wild -gpu 0 --nolog
    # a video: detect 2D keypoints in every frame (MediaPipe), lift them, write and animate
    python main_in_the_wild.py --evaluate checkpoint/wild/best_epoch.bin --video clip.mp4 \
        -num_proposals 5 -sampling_timesteps 5 --output clip_3d.npz --output clip_3d.bvh --render
    # a detector's output (AlphaPose / COCO JSON, .npy, .npz) instead of detecting
    python main_in_the_wild.py --evaluate checkpoint/wild/best_epoch.bin --keypoints-file alphapose-results.json \
        --video input.mp4 -num_proposals 5 -sampling_timesteps 5 --output input_3d.npz --render

--output FILE (repeatable) writes .npz (every array: hypotheses (frames, K, H, 17, 3), j_agg,
p_agg, trajectory, camera, 2D, the detector's keypoints), .json / .csv (per frame and joint:
x, y, z metres, the 2D) or .bvh (an animation skeleton); 3D in metres, camera space,
root-relative (Human3.6M-17 joints). See common/in_the_wild/exports.py.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..run.arguments import add_viz_arguments, build_parser, number, positive_float, positive_int, resolve_device
from ..run.config import RunConfig
from ..api import Lifter
from ..run.experiment import entry_point, show_progress
from ..storage.files import check_writable_file
from ..run.runner import run_experiment
from ..storage.video import probe_video
from ..in_the_wild import display, exports, filters, inputs
from ..in_the_wild.detectors import DETECTORS, make_detector
from ..in_the_wild.keypoints import read_keypoints
from ..in_the_wild.result import PeopleResult
from .live import live_command
from ..inference.aggregation import LIFTING_MODES, SHOWN_MODE, lifting_mode


def build_wild_parser():
    p = build_parser(__doc__.splitlines()[0])
    p.set_defaults(keypoints="detectron_pt_coco")
    g = p.add_argument_group("in-the-wild input (--video, or --keypoints-file)")
    g.add_argument("--keypoints-file", default="", metavar="FILE",
                   help="one person's COCO-17 keypoints: AlphaPose / COCO results .json, .npy or .npz "
                        "(frames, 17, 2|3) pixels; needs --evaluate. Without it, --video is run through --detector")
    g.add_argument("--keypoints-layout", choices=("auto", "coco", "h36m"), default="auto",
                   help="joint order of a .npy / .npz --keypoints-file: coco (COCO-17, detectors' order) or h36m "
                        "(Human3.6M-17, the paper's CPN 2D); auto: the file's 'layout' entry, else COCO-17 (an array "
                        "that looks like Human3.6M-17 is refused). JSON files are COCO-17")
    g.add_argument("--detector", choices=("auto", *DETECTORS), default="auto",
                   help="2D pose detector for --video and --live; auto: for --video mediapipe-multi (every person; "
                        "needs LiteRT) when installed, else mediapipe (one person a frame); for --live mediapipe "
                        "(it follows one person, faster)")
    g.add_argument("--track-id", type=_track_id, default=None, metavar="ID|longest",
                   help="lift one person: in a tracked JSON its track id; in a --video the person's id (1, 2, ... in "
                        "order of appearance, as a run on every person lists them); 'longest': the person followed "
                        "longest. Default: a keypoint file's longest track; a video's every person")
    g.add_argument("--min-frames", type=positive_int, default=30, metavar="N",
                   help="--video: lift every person followed through at least N frames (default 30)")
    g.add_argument("--threshold", type=number(float, 0, 1), default=0.3, help="keypoints below this confidence are "
                                                                "interpolated over time")
    g.add_argument("--max-frame-gap", type=positive_int, default=30, metavar="N",
                   help="frame numbers further apart split the detections; the longest segment is used")
    g.add_argument("--max-missing-frames", type=number(float, 0, 1), default=0.5, metavar="SHARE",
                   help="refuse a clip when more than this share of its frames has no detection")
    g.add_argument("--width", type=positive_int, default=None, help="image width, pixels")
    g.add_argument("--height", type=positive_int, default=None, help="image height, pixels")
    g.add_argument("--video", "--viz-video", dest="video", default=None, metavar="FILE",
                   help="the video to lift (needs --evaluate); with --keypoints-file: its image size and the "
                        "background of --render")
    g.add_argument("--live", default=None, metavar="SOURCE",
                   help="lift one person live, frame by frame as the frames arrive, to JSON lines (--output "
                        "FILE.jsonl, or - for standard output; needs --evaluate): a camera index (0: /dev/video0), "
                        "a device, a URL, a FIFO, - (standard input) or a video file played in real time. Always "
                        "the newest frame (the others are dropped), from the last F frames; H=1 K=1 unless "
                        "-num_proposals / -sampling_timesteps say otherwise; Ctrl-C ends (common/in_the_wild/live.py)")
    g.add_argument("--focal", type=positive_float, default=None,
                   help="focal length, pixels; None: 0.9 x the larger image side (a 58-degree field of view across it, "
                        "as phones filming and lab cameras have; 1728 for 1920x1080 or 1080x1920)")
    g.add_argument("--no-virtual-camera", action="store_true",
                   help="lift the 2D as it is; by default it is first rescaled to how a camera with the training "
                        "cameras' focal length would see it (exact for a pinhole camera, the 3D is unchanged; "
                        "models whose training cameras had no shared focal length: always as it is)")
    g.add_argument("--input-layout", choices=("auto", "coco", "h36m"), default="auto",
                   help="2D joint layout the model was trained on (auto: from the checkpoint's training args)")
    g.add_argument("--output", action="append", default=[], metavar="FILE",
                   help="result file, .npz, .json, .csv or .bvh (repeat for several); none: "
                        "<video or keypoints file>_3d.npz beside the input")
    g.add_argument("--pose-mode", default=SHOWN_MODE, type=_pose_mode, metavar="MODE",
                   help=f"the pose the .json, .csv, .bvh, .trc, .c3d and the animation show: {', '.join(LIFTING_MODES)} "
                        f"(default {SHOWN_MODE}, steady bones and smooth motion; the .npz holds every one)")
    g.add_argument("--filter", type=_filter, default=None, metavar="NAME[:key=value,...]",
                   help="smooth the poses and the root over time: butterworth[:cutoff=6,order=4] (Hz), "
                        "savgol[:window=9,order=2] (frames), one-euro[:min_cutoff=1,beta=0.01,d_cutoff=1] (causal); "
                        "default: none")
    g.add_argument("--fps", type=positive_float, default=None,
                   help="frame rate of the animation; None: the video's, else 25")
    add_viz_arguments(p, limit_help="animate only the first N frames; None: all")
    return p


def _pose_mode(name: str) -> str:
    try:
        return lifting_mode(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _track_id(text: str):
    if text == "longest":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a person's id (a whole number) or 'longest'") from None


def _filter(spec: str) -> filters.Filter:
    try:
        return filters.Filter.parse(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def run(argv=None) -> int:
    args = build_wild_parser().parse_args(argv)
    device = resolve_device(args)
    if args.live is not None:
        return live_command(args, device)
    if args.keypoints_file or args.video:
        return lift(args, device)

    # Training / Human3.6M evaluation: main.py's flow on a (usually COCO-layout) 2D file; the
    # 2D layout is recorded in the checkpoint for inference (dataset.layout.input_name).
    run_experiment(RunConfig.from_args(args), device, args=args)   # the data set of -d
    return 0


def lift(args, device) -> int:
    """--keypoints-file or --video: lift one person to 3D, write --output, animate with --render."""
    source = Path(args.keypoints_file or args.video)
    if not args.evaluate:
        raise ValueError(f"{'--keypoints-file' if args.keypoints_file else '--video'} needs a trained model: add "
                         f"--evaluate CHECKPOINT")
    outputs = exports.check_outputs(args.output or [source.with_name(source.stem + "_3d.npz")])
    animation = None
    if args.render:
        animation = check_writable_file(args.viz_output or outputs[0].with_suffix(".mp4"), "--viz-output")
    detector = None
    info = probe_video(args.video) if args.video else None   # fail on the video or the detector before the model
    if not args.keypoints_file:
        inputs.check_frame_size(info.width, info.height, args.video)
        detector = make_detector(args.detector)
    lifter = Lifter.from_config(RunConfig.from_args(args), device, args.input_layout, log=print,
                                virtual_camera=not args.no_virtual_camera)
    run_on = (f"{lifter.layout} input (from {lifter.layout_source}); F={lifter.model.cfg.frames} "
              f"H={args.num_proposals} K={args.sampling_timesteps} on {device}")
    if args.keypoints_file:
        track = None if args.track_id == "longest" else args.track_id
        keypoints = read_keypoints(args.keypoints_file, track, args.threshold, max_gap=args.max_frame_gap,
                                   max_missing=args.max_missing_frames, layout=args.keypoints_layout)
        size = inputs.image_size(keypoints, args.width, args.height, args.video)
        for note in keypoints.warnings:
            print(f"warning: {note}", file=sys.stderr)
        print(f"{keypoints.layout_name} keypoints; {keypoints.summary()}")
        print(f"{keypoints.num_frames} frames of {size[0]}x{size[1]} pixels; {run_on}")
        result = lifter.lift_keypoints(keypoints, size, focal=args.focal)
        result.fps = info.fps if info is not None else None
        people = PeopleResult([result], timings=result.timings)
    else:
        whom = "everyone" if args.track_id is None else f"person {args.track_id}"
        print(f"detecting people in {args.video} with {detector.name} and lifting {whom}; {run_on}")
        with detector:
            people = lifter.lift_video(args.video, detector=detector, focal=args.focal, threshold=args.threshold,
                                       max_gap=args.max_frame_gap, max_missing=args.max_missing_frames,
                                       progress=show_progress(lifter.run), person=args.track_id,
                                       min_frames=args.min_frames)
        print(people.video.summary())
        for note in people.warnings:
            print(f"warning: {note}", file=sys.stderr)
        for result in people:
            for note in result.source.warnings:
                print(f"warning: person {result.person_id}: {note}", file=sys.stderr)
            first, last = int(result.frame_ids[0]), int(result.frame_ids[-1])
            print(f"person {result.person_id}: frames {first}..{last} ({len(result.frame_ids)} frames); "
                  f"{result.source.summary()}")
    for result in people:
        result.pose_mode = args.pose_mode
        if args.filter is not None:
            filters.smooth_result(result, args.filter, args.fps)
        for note in inputs.doubtful_input(result, result.source):
            print(f"warning: person {result.person_id}: {note}" if len(people) > 1 else f"warning: {note}",
                  file=sys.stderr)
    if args.filter is not None:
        print(f"smoothed the poses and the root with {people.people[0].filter}")
    start = time.perf_counter()
    written = exports.write_outputs(people, outputs)
    people.timings["write"] = time.perf_counter() - start
    depth = np.concatenate([r.trajectory[:, 2] for r in people])
    print(f"wrote {', '.join(map(str, written))}: root depth {depth.min():.2f}-{depth.max():.2f} m")
    shown = people.longest
    if animation is not None:
        start = time.perf_counter()
        path = display.render_result(shown, animation, video=args.video, fps=args.fps, size=args.viz_size,
                                     limit=args.viz_limit, downsample=args.viz_downsample, azim=args.viz_azimuth)
        people.timings["render"] = time.perf_counter() - start
        chosen = f" (person {shown.person_id}, followed longest)" if len(people) > 1 else ""
        print(f"wrote the animation {path}{chosen}")
    print(display.timing_summary(shown, people.timings))
    return 0


def main(argv=None) -> int:
    return entry_point(lambda: run(argv))

