"""Live lifting (main_in_the_wild.py --live): its speed on a real-time stream, and what the causal
window costs in accuracy against offline lifting.

    python -m benchmarks.live                                   # both parts, the demo's model
    python -m benchmarks.live --part speed --fps 30 --loops 3
    python -m benchmarks.live --part accuracy --settings 1x1,5x5 --json live.json

1. Speed: a clip (the repository's real clip, 640x360; --video another, resized to --size) is
   written into a FIFO by a separate process at --fps in real time, as a camera would give it
   (MJPEG in NUT by default), and lifted live with H=1 K=1, exactly as the command line does it
   (LiveStream and run_live); 30 fps by default, so that 25 lifted frames/s can be told from
   "keeps up with a 25 fps stream". Printed: frames/s lifted, frames dropped, the latency from a
   frame's arrival (decoded) to its JSON line (median, 95th percentile), the delay from the
   feeder writing a frame to its arrival, and the medians of detection and lifting per frame
   inside the pipeline; then detection alone and lifting alone (one thread each, nothing else
   running of ours). The goal: 25 frames/s or more with a median latency under 100 ms on 2 cores.
2. Accuracy: the test sequences of the demo's data set (the synthetic motion and the real clips
   `main.py --demo` trains and tests on; the checkpoint's own -d/-k), lifted with the same model
   both ways: offline (the sequence in its evaluation windows, as lifting and evaluation do) and
   causal (every frame from the F-frame window that ends at it, the start padded with the first
   frame, as live lifting does). Both aggregated without ground truth (estimated root
   trajectory, the sequence's camera), MPJPE and P-MPJPE in mm over every frame; T-Agg causal
   is the window's T-Agg at its last frame.

Timings depend on what else runs on the machine: the load average is printed with them.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import describe_cpu
from common.in_the_wild.live import live_detector, percentiles

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "tests" / "fixtures" / "video" / "sports2d.mp4"
CHECKPOINT = ROOT / "checkpoint" / "demo" / "best_epoch.bin"
MODES = ("J-Agg", "P-Agg", "T-Agg")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(CHECKPOINT), help="the model (default: the demo's best_epoch.bin)")
    p.add_argument("--part", choices=("speed", "accuracy", "both"), default="both")
    p.add_argument("--video", default=str(CLIP), help="the clip to stream (default: the repository's real clip)")
    p.add_argument("--size", default="640x360", help="frame size of the stream, WxH")
    p.add_argument("--fps", type=float, default=30.0,
                   help="frame rate of the stream (the clip's own, 30: above the goal of 25, to show the headroom)")
    p.add_argument("--loops", type=int, default=2, help="times the clip is streamed, one after the other")
    p.add_argument("--format", default="nut", help="container of the stream (nut, mpegts, yuv4mpegpipe, ...)")
    p.add_argument("--codec", default="mjpeg", help="codec of the stream (mjpeg: what webcams send; rawvideo)")
    p.add_argument("--detector", default="auto")
    p.add_argument("--engine", default="auto", choices=("auto", "eager", "openvino"))
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: live's, half the cores)")
    p.add_argument("--settings", default="1x1,5x5", help="HxK settings of the accuracy part")
    p.add_argument("--every", type=int, default=None, metavar="N",
                   help="accuracy: every N-th test sequence (default: all for H=1 K=1, every 8th for more)")
    p.add_argument("--frame-stride", type=int, default=None, metavar="S",
                   help="accuracy: score every S-th frame of a sequence, both ways (default: 4 for H=1 K=1, 8 "
                        "for more; a causal window is sampled per scored frame)")
    p.add_argument("--data-dir", default=None, help="the data folder (default: the checkpoint's)")
    p.add_argument("--json", default="", help="also write the numbers to this file")
    p.add_argument("--feed", nargs=2, metavar=("FIFO", "TIMES"), help=argparse.SUPPRESS)    # the feeder process
    return p.parse_args(argv)


def machine() -> str:
    return f"{describe_cpu()}, torch {torch.__version__}"


# ---------------------------------------------------------------------------- the stream

def clip_frames(path, size: tuple[int, int]) -> list[np.ndarray]:
    """The clip's RGB frames at size (w, h)."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if (frame.width, frame.height) != size:
                frame = frame.reformat(width=size[0], height=size[1])
            frames.append(frame.to_ndarray(format="rgb24"))
    return frames


def feed(args) -> None:
    """The feeder process: the clip, --loops times, into the FIFO at --fps; the wall-clock time each
    frame was written goes to the TIMES file at the end."""
    import av

    from common.in_the_wild.live_source import paced

    fifo, times_path = args.feed
    w, h = map(int, args.size.split("x"))
    frames = clip_frames(args.video, (w, h)) * args.loops
    written = []
    with av.open(fifo, "w", format=args.format, options={"flush_packets": "1"}) as container:
        stream = container.add_stream(args.codec, rate=Fraction(args.fps).limit_denominator(1001))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuvj420p" if args.codec == "mjpeg" else "yuv420p"
        for i, image in enumerate(paced(iter(frames), args.fps)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
            written.append(time.time())
        for packet in stream.encode():
            container.mux(packet)
    Path(times_path).write_text(json.dumps(written))


def speed(args, lifter) -> dict:
    from common.cli import live as cli_live

    with tempfile.TemporaryDirectory() as tmp:
        fifo, times, out = Path(tmp) / "camera", Path(tmp) / "times.json", Path(tmp) / "live.jsonl"
        os.mkfifo(fifo)
        feeder = subprocess.Popen([sys.executable, "-m", "benchmarks.live", "--feed", str(fifo), str(times),
                                   "--video", args.video, "--size", args.size, "--fps", str(args.fps),
                                   "--loops", str(args.loops), "--format", args.format, "--codec", args.codec],
                                  cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        stream = lifter.live(str(fifo), detector=args.detector, hypotheses=1, iterations=1,
                             torch_threads=args.threads or "auto")
        threads = stream.torch_threads or torch.get_num_threads()
        with cli_live.JsonLines(out) as output:
            stats = cli_live.run_live(stream, output, log=lambda *_: None)
        feeder.wait(timeout=60)
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        written = json.loads(times.read_text()) if times.exists() else []
    arrivals = [(r["frame"], r["time_unix"]) for r in lines if r["type"] == "frame"]
    transport = [1000 * (t - written[i]) for i, t in arrivals if i < len(written)]
    result = {"stream": f"{args.size} at {args.fps:g} fps, {args.format}/{args.codec}, {stats.read} frames",
              "detector": stream.detector.name, "torch_threads": threads, **stats.as_dict(),
              "input_fps": round(stats.read / stats.seconds, 2) if stats.seconds else None,
              "write_to_arrival_ms": percentiles(transport)}
    result.update(alone(args, lifter, threads))
    return result


def alone(args, lifter, threads: int) -> dict:
    """Detection alone and lifting alone, ms per frame (medians), one after the other on the clip."""
    from common.in_the_wild.detectors import make_detector
    from common.in_the_wild.live_window import CausalWindow, WindowLifter
    from common.geometry.coco import keypoints_for_model

    w, h = map(int, args.size.split("x"))
    frames = clip_frames(args.video, (w, h))
    detect, found = [], []
    with make_detector(live_detector(args.detector)) as detector:
        detector.start_video()
        for image in frames:
            start = time.perf_counter()
            people = detector.detect(image)
            detect.append(1000 * (time.perf_counter() - start))
            found.append([detector.to_coco(p) for p in people])
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        core, options = lifter._prepare(1, 1, None, None, None, None)
        window_lifter = WindowLifter(core, (w, h), options)
        window = CausalWindow(core.frames)
        lift = []
        for people in found:
            if not window.push(people):
                continue
            coco = window.keypoints()
            pixels, confidence = keypoints_for_model(coco[..., :2], core.layout.input_name, coco[..., 2])
            start = time.perf_counter()
            window_lifter.lift(pixels, confidence)
            lift.append(1000 * (time.perf_counter() - start))
    finally:
        torch.set_num_threads(saved)
    return {"detect_alone_ms": percentiles(detect[5:]), "lift_alone_ms": percentiles(lift[5:])}


def print_speed(r: dict) -> None:
    def ms(d):
        return "-" if d["median"] is None else f"{d['median']:.1f} / {d['p95']:.1f}"

    print(f"\n1. Speed: {r['stream']} through a FIFO; detector {r['detector']}, H=1 K=1, torch threads "
          f"{r['torch_threads']}")
    print(f"   frames read {r['frames_read']} ({r['input_fps']} fps in), lifted {r['lifted']} "
          f"({r['fps']:.1f} frames/s), dropped {r['dropped']}, without a person {r['without_person']}")
    rows = [("latency, arrival -> JSON line", r["latency_ms"]), ("feeder write -> arrival (decoded)",
                                                                 r["write_to_arrival_ms"]),
            ("detection in the pipeline", r["detect_ms"]), ("lifting in the pipeline", r["lift_ms"]),
            ("detection alone", r["detect_alone_ms"]), ("lifting alone", r["lift_alone_ms"])]
    print(f"   {'ms per frame':36s} median / 95th percentile")
    for name, d in rows:
        print(f"   {name:36s} {ms(d)}")
    goal = r["fps"] >= 25 and r["latency_ms"]["median"] is not None and r["latency_ms"]["median"] < 100
    print(f"   goal (25 frames/s or more, median latency under 100 ms): {'met' if goal else 'not met'}")


# ---------------------------------------------------------------------------- causal vs offline

def test_sequences(checkpoint: dict, data_dir: str | None):
    """The test sequences of the checkpoint's data set (-d, -k, its test subjects), written first
    when absent (as main.py --demo writes them) and their joint layout."""
    from common.datasets.mocap.training_set import ensure_demo_set
    from common.datasets.synthetic import ensure_synthetic
    from common.run.config import RunConfig
    from common.run.registry import lookup

    stored = checkpoint.get("args") or {}
    fields = {k: stored[k] for k in ("dataset", "keypoints", "subjects_test", "actions", "data_dir") if k in stored}
    if data_dir:
        fields["data_dir"] = data_dir
    run = RunConfig(**fields)
    if run.dataset in ("synthetic", "demo"):
        ensure_synthetic(run.data_dir)
        if run.dataset == "demo":
            ensure_demo_set(run.data_dir, "demo", merge="synthetic", log=lambda *_: None)
    entry = lookup(run.dataset)
    data = entry.build(run, None)
    return data.test_sequences(entry.selection(run, None)), f"{run.dataset} (-k {run.keypoints}), test subjects " \
                                                            f"{run.subjects_test}"


def causal_windows(x2d: np.ndarray, frames: int) -> np.ndarray:
    """(N, F, J, 2): frame i's window, frames i-F+1 .. i, the first frame repeated before the start."""
    index = np.maximum(np.arange(len(x2d))[:, None] + np.arange(1 - frames, 1)[None], 0)
    return x2d[index]


def accuracy(args, lifter, hypotheses: int, iterations: int, sequences, stride: int) -> dict:
    from common.evaluation.metrics import joint_errors, procrustes_align
    from common.in_the_wild.lifting import aggregate_without_ground_truth

    core, _ = lifter._prepare(hypotheses, iterations, 0, None, None, None)
    if core.layout.input_name != "h36m":
        raise ValueError("the accuracy part compares 3D with Human3.6M-layout 2D: give a checkpoint trained on it")
    frames = core.frames
    causal_core = core.replace(group=1, compute_batch=256)           # a window per group, 256 per call
    errors = {(way, mode, p): [] for way in ("offline", "causal") for mode in MODES for p in (1, 2)}
    start = time.perf_counter()
    for seq in sequences:
        scored = np.arange(0, len(seq.pose_2d), stride)
        gt = torch.from_numpy(seq.pose_3d[scored])
        offline = core.sample_clip(seq.pose_2d)                                      # (N, K, H, J, 3)
        poses, _ = aggregate_without_ground_truth(offline, seq.pose_2d, seq.cam)
        chosen = {("offline", m): poses[m][scored, -1] for m in MODES}
        windows = causal_windows(seq.pose_2d, frames)[scored]                       # (n, F, J, 2)
        causal = {m: np.empty_like(chosen[("offline", m)]) for m in MODES}
        for g, _, hyps in causal_core.sample_windows(list(windows), progress=False):
            hyps[..., 0, :] = 0
            window = hyps[0].permute(2, 0, 1, 3, 4).cpu().numpy()                    # (F, K, H, J, 3)
            poses, _ = aggregate_without_ground_truth(window, windows[g.seq_index], seq.cam)   # as live lifting
            for m in MODES:
                causal[m][g.seq_index] = poses[m][-1, -1]                           # the window's last frame
        chosen.update({("causal", m): causal[m] for m in MODES})
        for (way, mode), pose in chosen.items():
            pred = torch.from_numpy(np.ascontiguousarray(pose))
            errors[(way, mode, 1)].append(joint_errors(pred, gt).mean(dim=-1))
            errors[(way, mode, 2)].append(joint_errors(procrustes_align(pred, gt), gt).mean(dim=-1))
    table = {f"{way} {mode} P{p}": round(1000 * float(torch.cat(v).mean()), 2) for (way, mode, p), v in errors.items()
             if v}
    return {"hypotheses": hypotheses, "iterations": iterations, "sequences": len(sequences), "frame_stride": stride,
            "frames": int(sum(len(range(0, len(s.pose_2d), stride)) for s in sequences)),
            "seconds": round(time.perf_counter() - start, 1), "mm": table}


def print_accuracy(rows: list, data: str) -> None:
    print(f"\n2. Accuracy, causal window vs offline lifting: {data}; aggregated without ground truth "
          f"(estimated root, the sequence's camera); mm over the scored frames")
    for r in rows:
        mm = r["mm"]
        print(f"   H={r['hypotheses']} K={r['iterations']}: {r['sequences']} sequences, {r['frames']} frames scored "
              f"(every {r['frame_stride']}th; {r['seconds']:.0f} s)")
        print(f"   {'':8s} {'MPJPE offline':>14s} {'causal':>8s} {'diff':>7s}   {'P-MPJPE offline':>16s} "
              f"{'causal':>8s} {'diff':>7s}")
        for m in MODES:
            p1o, p1c, p2o, p2c = (mm[f"{w} {m} P{p}"] for p in (1, 2) for w in ("offline", "causal"))
            print(f"   {m:8s} {p1o:14.2f} {p1c:8.2f} {p1c - p1o:+7.2f}   {p2o:16.2f} {p2c:8.2f} {p2c - p2o:+7.2f}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.feed:
        feed(args)
        return 0
    from common.api import Lifter
    from common.model.checkpoint import safe_load

    print(f"live lifting benchmark: {args.checkpoint}\nCPU: {machine()}")
    lifter = Lifter.from_checkpoint(args.checkpoint, engine=args.engine)
    print(f"model: F={lifter.model.cfg.frames}, {lifter.layout} input, engine {args.engine}")
    report = {"command": " ".join([sys.executable, "-m", "benchmarks.live", *(argv or sys.argv[1:])]),
              "machine": machine()}
    if args.part in ("speed", "both"):
        report["speed"] = speed(args, lifter)
        print_speed(report["speed"])
    if args.part in ("accuracy", "both"):
        sequences, data = test_sequences(safe_load(args.checkpoint), args.data_dir)
        rows = []
        for setting in args.settings.split(","):
            h, k = map(int, setting.lower().split("x"))
            light = h * k == 1
            every = args.every or (1 if light else 8)
            stride = args.frame_stride or (4 if light else 8)
            rows.append(accuracy(args, lifter, h, k, sequences[::every], stride))
        report["accuracy"] = {"data": data, "rows": rows}
        print_accuracy(rows, data)
    print(f"\nCPU at the end: {machine()}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
