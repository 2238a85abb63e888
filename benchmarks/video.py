"""Speed of the video pipeline: seconds per second of video for decoding, detection, lifting
and writing, at H=1 K=1 and H=5 K=5 (what main_in_the_wild.py --video does, step by step).

    python -m benchmarks.video --checkpoint checkpoint/demo/best_epoch.bin        # the demo's model
    python -m benchmarks.video --checkpoint CKPT --video clip.mp4 --render --json video.json

Below 1.0 a step runs faster than the video plays. The goal is detection and lifting
together below 1.0 at H=1 K=1. Decoding and detection do not depend on H and K; each setting
runs the whole pipeline afresh, so the two rows also show how much the timings vary.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from common.model.checkpoint import load_denoiser
from common.geometry.coco import input_layout
from common.run.config import RunConfig
from common.in_the_wild import display, exports, lifting
from common.in_the_wild.inputs import input_layout_of
from common.in_the_wild.detectors import make_detector
from common.inference.core import InferenceCore

CLIP = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "video" / "sports2d.mp4"
SETTINGS = ((1, 1), (5, 5))
STEPS = ("decode", "detect", "lift", "write", "render")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="the model to lift with (e.g. the demo's best_epoch.bin)")
    p.add_argument("--video", default=str(CLIP), help="the clip (default: the repository's real clip)")
    p.add_argument("--detector", default="auto")
    p.add_argument("--person", default=None, help="'longest' or an id: lift one person; default: everyone")
    p.add_argument("--engine", default="auto", choices=("auto", "eager", "openvino"))
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--render", action="store_true", help="also time the MP4 animation")
    p.add_argument("--json", default="", help="also write the numbers to this file")
    return p.parse_args(argv)


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    model, checkpoint = load_denoiser(args.checkpoint)
    model.eval()
    layout, _ = input_layout_of(checkpoint)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for h, k in SETTINGS:
            with make_detector(args.detector) as detector:
                run_config = RunConfig(engine=args.engine, num_proposals=h, sampling_timesteps=k)
                core = InferenceCore.from_run(run_config, model, "cpu", input_layout(layout), compile_auto=False,
                                              log=lambda *_: None)
                person = int(args.person) if str(args.person).isdigit() else args.person
                people = lifting.lift_video(core, args.video, detector=detector, person=person)
            start = time.perf_counter()
            exports.write_outputs(people, [Path(tmp) / f"out{s}" for s in exports.EXPORTERS])
            people.timings["write"] = time.perf_counter() - start
            result = people.longest
            if args.render:
                start = time.perf_counter()
                display.render_result(result, Path(tmp) / "out.mp4", video=args.video)
                people.timings["render"] = time.perf_counter() - start
            seconds = result.video.frames / result.fps
            rows.append({"hypotheses": h, "iterations": k, "video_s": seconds, "seconds": dict(people.timings),
                         "per_video_second": {s: v / seconds for s, v in people.timings.items()},
                         "people": len(people), "lifted_frames": sum(len(p.frame_ids) for p in people),
                         "detected_frames": result.video.detected_frames, "frames": result.video.frames,
                         "max_people_per_frame": int(result.video.people.max())})
    cfg = model.cfg
    return {"video": str(args.video), "frames": rows[0]["frames"], "fps": result.fps,
            "size": list(result.image_size), "detector": result.video.detector,
            "model": f"F={cfg.frames} C={cfg.channels} D={cfg.depth}", "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "torch": torch.__version__, "rows": rows}


def format_report(r: dict) -> str:
    lines = [f"video pipeline: {Path(r['video']).name}, {r['frames']} frames, {r['frames'] / r['fps']:.2f} s at "
             f"{r['fps']:g} fps, {r['size'][0]}x{r['size'][1]}; detector {r['detector']}; model {r['model']}; "
             f"{r['threads']} torch threads, torch {r['torch']}",
             f"person detected in {r['rows'][0]['detected_frames']} of {r['frames']} frames (up to "
             f"{r['rows'][0]['max_people_per_frame']} a frame); lifted {r['rows'][0]['people']} people, "
             f"{r['rows'][0]['lifted_frames']} person-frames", "",
             "seconds per second of video (below 1.0: faster than the video plays)"]
    steps = [s for s in STEPS if s in r["rows"][0]["seconds"]]
    lines.append(f"{'':10}" + "".join(f"{s:>9}" for s in steps) + f"{'detect+lift':>13}")
    for row in r["rows"]:
        per = row["per_video_second"]
        lines.append(f"H={row['hypotheses']} K={row['iterations']:<4}" + "".join(f"{per[s]:9.3f}" for s in steps)
                     + f"{per['detect'] + per['lift']:13.3f}")
    lines.append("")
    lines.append("seconds, whole clip: " + "; ".join(
        f"H={row['hypotheses']} K={row['iterations']}: " + ", ".join(f"{s} {row['seconds'][s]:.2f}" for s in steps)
        for row in r["rows"]))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    report = run(args)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
