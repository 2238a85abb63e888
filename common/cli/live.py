"""main_in_the_wild.py --live: the live stream (common.in_the_wild.live) written as JSON lines, each
flushed as soon as its frame is lifted, with signals (Ctrl-C, SIGTERM) and a reader that goes away
ending the run cleanly."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


from ..run import signals
from ..in_the_wild.detectors import make_detector

from ..api import Lifter
from ..run.config import RunConfig
from ..storage.files import check_writable_file
from ..in_the_wild.live import LiveStats, LiveStream, frame_record, live_detector
from ..in_the_wild.live_source import PyAVSource
from ..in_the_wild.live_window import check_causal


# ---------------------------------------------------------------------------- the output

class JsonLines:
    """A JSON Lines file ('-': standard output), each line written whole and flushed at once."""

    def __init__(self, path):
        self.path = str(path)
        self.stream = sys.stdout if self.path == "-" else open(self.path, "w", encoding="utf-8")

    def write(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        with signals.deferred():                  # a signal waits until the line is out
            self.stream.write(line)
            self.stream.flush()

    def close(self) -> None:
        if self.stream is not sys.stdout:
            self.stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_live(stream: LiveStream, output: JsonLines, log=print) -> LiveStats:
    """Write the header, a line per lifted frame and the summary; SIGINT, SIGTERM and the end of
    the stream all end it cleanly (the lines written are complete). Returns the stats."""
    stats = stream.stats
    try:
        stream.open()
        output.write(stream.header())
        log(f"lifting {stream.info.name} live ({stream.info.width}x{stream.info.height}, "
            f"{stream.info.fps or 'unknown'} fps) to {'standard output' if output.path == '-' else output.path}; "
            f"Ctrl-C ends")
        for frame in stream:
            latency = 1000 * (time.perf_counter() - frame.arrival)
            output.write(frame_record(frame, latency))
            stats.last_output = time.perf_counter()
            stats.latency_ms.append(latency)
    except KeyboardInterrupt as e:
        stats.ended_by = signals.signal_name(e)
    except BrokenPipeError:
        stats.ended_by = "the reader of the output closing it"
        _silence_stdout()
    finally:
        stream.close()
    if stream.info is not None and stats.ended_by != "the reader of the output closing it":
        output.write({"type": "summary", **stats.as_dict()})
    log(stats.summary())
    return stats


def _silence_stdout() -> None:
    """After the reader of standard output went away: no error when Python flushes it at exit."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# ---------------------------------------------------------------------------- the command line

def live_command(args, device) -> int:
    """main_in_the_wild.py --live SOURCE: lift the stream and write JSON lines to --output."""
    if not args.evaluate:
        raise ValueError("--live needs a trained model: add --evaluate CHECKPOINT")
    if args.keypoints_file or args.video:
        raise ValueError("--live lifts a stream on its own: leave out --video and --keypoints-file")
    if args.render:
        raise ValueError("--live writes JSON lines only: leave out --render")
    if len(args.output) > 1:
        raise ValueError("--live writes one JSON Lines file: give one --output FILE.jsonl (or - for standard output)")
    output = args.output[0] if args.output else "-"
    if output != "-":
        if Path(output).suffix.lower() not in (".jsonl", ".ndjson"):
            raise ValueError(f"--output {output}: --live writes JSON lines, one per frame: name the file .jsonl "
                             f"(or give - for standard output)")
        check_writable_file(output, "--output")
    check_causal(args.filter)
    say = (lambda *a: print(*a, file=sys.stderr)) if output == "-" else print   # standard output holds the lines
    source = PyAVSource(args.live)                            # fail on the source or the detector before the model
    detector = make_detector(live_detector(args.detector))
    lifter = Lifter.from_config(RunConfig.from_args(args), device, args.input_layout, log=say,
                                virtual_camera=not args.no_virtual_camera)
    stream = lifter.live(source, detector=detector, focal=args.focal, threshold=args.threshold,
                         max_gap=args.max_frame_gap, pose_mode=args.pose_mode, smoothing=args.filter, fps=args.fps)
    say(f"{lifter.layout} input (from {lifter.layout_source}); F={lifter.model.cfg.frames} "
        f"H={stream.core.sampling.hypotheses} K={stream.core.sampling.iterations} on {device}; detector "
        f"{detector.name}")
    try:
        with detector, JsonLines(output) as out:
            run_live(stream, out, log=say)
    finally:
        stream.close()
    return 0


