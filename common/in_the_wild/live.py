"""Live lifting: one person's 3D pose from a camera or a stream, frame by frame, as the frames
arrive (`main_in_the_wild.py --evaluate CKPT --live SOURCE --output FILE.jsonl`).

Three threads, so that decoding, detection and lifting overlap and the output never falls behind:
- the reader decodes the source (PyAV: a camera index or device, a URL, a FIFO, '-' for standard
  input, or a video file played at its frame rate) and keeps only the newest frame, with the
  moment it arrived;
- the detector takes the newest frame (frames replaced before it got to them are dropped),
  finds the people in it (COCO-17) and hands them on;
- the lifter (the caller's thread) puts every detection into the causal window, the last F frames'
  2D (F = the model's window), and lifts only the newest frame (a detection it could not get to
  is dropped too, its 2D staying in the window): one F-frame window through the InferenceCore,
  aggregated as offline lifting aggregates a clip (lifting.aggregate_without_ground_truth), and its
  last frame kept. Its pose is therefore exactly offline lifting's last frame for those F frames.

The causal window repeats its first frame until F frames have arrived (offline lifting pads a
short clip with its last frame; here the newest frame must stay last). A frame without a
detection holds the last keypoints (`detected` false); after `max_gap` such frames the person
is lost and the window starts afresh. Joints below the confidence threshold hold their last
position above it. Only causal smoothing is possible (CAUSAL_FILTERS: one-euro).

Output (JsonLines): a header line (joints, parents, image size, fps, units, model), one line
per lifted frame, flushed at once, and a summary line. Ctrl-C (SIGINT), SIGTERM and the end of
the stream all end a run cleanly: every line written is complete, the summary line is written
and printed, and the command exits with 0 (stopping is how a live run ends, not a failure).

Sampling: H and K are the run's (-num_proposals, -sampling_timesteps), 1 and 1 unless given: one
window per frame must keep up with the camera. Every frame's window uses the same noise (the
core's seed, group 0), so a still person gives a still pose.
"""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator

import numpy as np
import torch

from ..geometry.coco import keypoints_for_model
from ..geometry.skeleton import h36m_skeleton_17
from ..inference.aggregation import SHOWN_MODE, lifting_mode
from ..inference.core import InferenceCore
from .detectors import Detector, MediaPipeDetector, make_detector
from .filters import Filter
from .lifting import LiftOptions

from .live_source import DEFAULT_FPS, Frame, SourceError, StreamInfo, open_source
from .live_window import CausalWindow, Detection, Handoff, Smoother, WindowLifter, check_causal


# ---------------------------------------------------------------------------- the live stream

@dataclass
class LiveFrame:
    """One lifted frame. 3D in metres, camera space, Human3.6M-17; joints_3d root-relative."""

    index: int                  # position in the stream, from 0
    time_s: float               # arrival, seconds since the stream was opened
    wall: float                 # arrival, seconds since the Unix epoch
    arrival: float              # arrival, time.perf_counter() seconds
    detected: bool              # False: the keypoints are held from an earlier frame
    joints_3d: np.ndarray       # (17, 3) the pose of pose_mode (smoothed when a filter is on)
    root: np.ndarray            # (3,) the root position (smoothed when a filter is on)
    joints_2d: np.ndarray       # (17, 2) pixels, the same joints
    confidence: np.ndarray      # (17,) of joints_2d (0 where held)
    poses: dict                 # every lifting mode's pose (17, 3), unsmoothed
    hypotheses: np.ndarray      # (K, H, 17, 3)
    uncertainty: np.ndarray | None    # (17,) mm, H >= 2 only
    detect_ms: float
    lift_ms: float
    lifted: float               # time.perf_counter() when lifted

    @property
    def latency_ms(self) -> float:
        """From the frame's arrival until it was lifted."""
        return 1000 * (self.lifted - self.arrival)


@dataclass
class LiveStats:
    """Counts and times of a live run. Every frame read is lifted, dropped (a newer frame came
    before the detector or the lifter got to it, or the run stopped first) or without a person."""

    read: int = 0
    lifted: int = 0
    without_person: int = 0
    opened: float | None = None               # perf_counter when the source opened
    first_arrival: float | None = None        # of the first frame read
    first_lifted: float | None = None         # arrival of the first frame lifted
    last_output: float | None = None          # when the last line was written
    latency_ms: list = field(default_factory=list)    # per lifted frame, arrival -> output
    detect_ms: list = field(default_factory=list)     # per detected frame
    lift_ms: list = field(default_factory=list)       # per lifted frame
    ended_by: str = "the end of the stream"

    @property
    def dropped(self) -> int:
        return self.read - self.lifted - self.without_person

    @property
    def seconds(self) -> float:
        """From the first frame's arrival to the last line."""
        if self.first_arrival is None or self.last_output is None:
            return 0.0
        return max(self.last_output - self.first_arrival, 1e-9)

    @property
    def fps(self) -> float:
        """Lifted frames per second, from the first lifted frame's arrival to the last line (the
        frames before anyone was found do not count)."""
        if self.lifted < 2 or self.first_lifted is None or self.last_output is None:
            return 0.0
        return self.lifted / max(self.last_output - self.first_lifted, 1e-9)

    def as_dict(self) -> dict:
        return {"frames_read": self.read, "lifted": self.lifted, "dropped": self.dropped,
                "without_person": self.without_person, "seconds": round(self.seconds, 3), "fps": round(self.fps, 2),
                "latency_ms": percentiles(self.latency_ms), "detect_ms": percentiles(self.detect_ms),
                "lift_ms": percentiles(self.lift_ms), "ended_by": self.ended_by}

    def summary(self) -> str:
        lat, det, lift = percentiles(self.latency_ms), percentiles(self.detect_ms), percentiles(self.lift_ms)
        text = (f"live: {self.read} frames read, {self.lifted} lifted, {self.dropped} dropped, "
                f"{self.without_person} without a person in {self.seconds:.1f} s ({self.fps:.1f} lifted frames/s); "
                f"ended by {self.ended_by}")
        if self.latency_ms:
            text += (f"\nlatency from arrival to output: median {lat['median']:.0f} ms, 95th percentile "
                     f"{lat['p95']:.0f} ms; per frame (medians): detect {det['median']:.1f} ms, lift "
                     f"{lift['median']:.1f} ms")
        return text


def percentiles(values: list) -> dict:
    """{"median", "p95"} of values (ms), rounded; None for no values."""
    if not values:
        return {"median": None, "p95": None}
    return {"median": round(float(np.median(values)), 2), "p95": round(float(np.percentile(values, 95)), 2)}


class LiveStream:
    """Lift a live source frame by frame: iterate to get LiveFrames as they are lifted (always
    the newest frame; see the module's docstring). Use as a context manager, or close() it: that
    stops the reader and the detector. `stats` counts what happened, `info` describes the source
    once open()ed (iteration opens it).

    source: a Source or --live's text; detector: a Detector or its name (owned, and closed, when
    given by name); pose_mode: the pose of joints_3d; smoothing: a causal Filter of joints_3d and
    root; torch_threads: torch's threads while the stream is open ('auto': live_torch_threads, one
    on a 2-core CPU; None: as they are), restored by close()."""

    def __init__(self, core: InferenceCore, source, options: LiftOptions = LiftOptions(),
                 detector: Detector | str = "auto", threshold: float = 0.3, max_gap: int = 30,
                 pose_mode: str = SHOWN_MODE, smoothing: Filter | None = None, fps: float | None = None,
                 torch_threads: int | str | None = "auto"):
        self.core, self.options = core, options
        self.pose_mode = lifting_mode(pose_mode)
        self.smoothing = check_causal(smoothing)
        self.source = open_source(source)
        self._owned = not isinstance(detector, Detector)
        self.detector = make_detector(live_detector(detector))
        self.window = CausalWindow(core.frames, threshold, max_gap)
        self.fallback_fps = fps
        self.torch_threads = live_torch_threads(core.device) if torch_threads == "auto" else torch_threads
        self._saved_threads: int | None = None
        self.stats = LiveStats()
        self.info: StreamInfo | None = None
        self._frames, self._detections = Handoff(keep_all=False), Handoff(keep_all=True)
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lifter: WindowLifter | None = None
        self._smoother: Smoother | None = None
        self._open_error: BaseException | None = None

    @property
    def fps(self) -> float:
        """The stream's frame rate: as declared, else the fps given, else DEFAULT_FPS."""
        return (self.info and self.info.fps) or self.fallback_fps or DEFAULT_FPS

    # ------------------------------------------------------------------ threads

    def open(self) -> StreamInfo:
        """Start the reader and the detector and wait until the source gives its first frame."""
        if self.info is not None:
            return self.info
        if self.torch_threads:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.torch_threads)
        warm = WindowLifter(self.core, (640, 480), self.options)       # torch's first call, before any frame
        warm.lift(np.full((self.core.frames, 17, 2), 320, np.float32), np.ones((self.core.frames, 17), np.float32))
        self._threads = [threading.Thread(target=self._read, name="live-reader", daemon=True),
                         threading.Thread(target=self._detect, name="live-detector", daemon=True)]
        for thread in self._threads:
            thread.start()
        while not self._opened.wait(0.1):
            pass
        if self._open_error is not None:
            self.close()
            raise self._open_error
        self._lifter = WindowLifter(self.core, (self.info.width, self.info.height), self.options)
        if self.smoothing is not None:
            self._smoother = Smoother(self.smoothing, self.fps)
        return self.info

    def _read(self) -> None:
        try:
            info, frames = self.source.open()
        except BaseException as e:      # reported by open() in the caller's thread
            self._open_error = e
            self._opened.set()
            self._frames.close()
            return
        self.stats.opened = time.perf_counter()
        self.info = info
        self._opened.set()
        try:
            for index, image in enumerate(frames):
                if self._stop.is_set():
                    break
                arrival = time.perf_counter()
                if self.stats.first_arrival is None:
                    self.stats.first_arrival = arrival
                self.stats.read += 1
                self._frames.put(Frame(index, image, arrival, time.time()))
        except BaseException as e:
            self._frames.close(SourceError(f"reading {self.source.name} failed: {e}"))
            return
        self._frames.close()

    def _detect(self) -> None:
        error = None
        try:
            while not self._opened.wait(0.1):
                if self._stop.is_set():
                    return
            if self._open_error is not None:
                return
            self.detector.start_video()                # the backend's first call, on a blank frame
            self.detector.detect(np.zeros((self.info.height, self.info.width, 3), np.uint8))
            self.detector.start_video()
            while not self._stop.is_set():
                taken = self._frames.take()
                if not taken:
                    break
                frame = taken[-1]
                start = time.perf_counter()
                people = [self.detector.to_coco(p) for p in self.detector.detect(frame.image)]
                spent = time.perf_counter() - start
                self.stats.detect_ms.append(1000 * spent)
                self._detections.put(Detection(frame, people, spent))
        except BaseException as e:
            error = e
        finally:
            if self._owned:
                self.detector.close()
            self._detections.close(error)

    def close(self) -> None:
        """Stop the threads (the reader may stay blocked in a read that never returns: it is a
        daemon thread and ends with the process)."""
        self._stop.set()
        self._frames.close()
        self._detections.close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5 if thread.name == "live-detector" else 0.2)
        if self._saved_threads is not None:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ lifting

    def __iter__(self) -> Iterator[LiveFrame]:
        self.open()
        try:
            while True:
                taken = self._detections.take()
                if not taken:
                    return
                for detection in taken:               # every detection into the window, the newest lifted
                    found = self.window.push(detection.people)
                if not found:
                    self.stats.without_person += 1
                    continue
                yield self._lift(taken[-1])
        finally:
            self.close()

    def _lift(self, detection: Detection) -> LiveFrame:
        start = time.perf_counter()
        frame = detection.frame
        coco = self.window.keypoints()                                       # (F, 17, 3)
        pixels, confidence = keypoints_for_model(coco[..., :2], self.core.layout.input_name, coco[..., 2])
        pose = self._lifter.lift(pixels, confidence)
        shown, root = pose.poses[self.pose_mode], pose.root
        if self._smoother is not None:
            shown, root = self._smoother(frame.index, shown, root)
        lifted = time.perf_counter()
        self.stats.lifted += 1
        if self.stats.first_lifted is None:
            self.stats.first_lifted = frame.arrival
        self.stats.lift_ms.append(1000 * (lifted - start))
        return LiveFrame(frame.index, frame.arrival - self.stats.opened, frame.wall, frame.arrival,
                         self.window.detected, shown, root, pose.joints_2d, pose.confidence, pose.poses,
                         pose.hypotheses, pose.uncertainty, 1000 * detection.detect_s, 1000 * (lifted - start), lifted)

    # ------------------------------------------------------------------ the header of the output

    def header(self) -> dict:
        """What every frame line means: joints, parents, image size, fps, units, model (after open())."""
        skeleton = h36m_skeleton_17()
        s = self.core.sampling
        return {
            "type": "header", "format": "d3dp-live-jsonl", "version": 1, "source": self.info.name,
            "image_size": [self.info.width, self.info.height], "fps": self.info.fps,
            "joints": list(skeleton.names), "parents": [int(p) for p in skeleton.parents],
            "pose_mode": self.pose_mode,
            "filter": None if self._smoother is None else self._smoother.describe(),
            "camera": {"focal_px": float(self._lifter.cam[0] * self.info.width / 2),
                       "intrinsics": [round(float(v), 6) for v in self._lifter.cam]},
            "model": {"frames": self.core.frames, "hypotheses": s.hypotheses, "iterations": s.iterations,
                      "flip": s.flip, "input_layout": self.core.layout.input_name, "device": str(self.core.device)},
            "units": {"joints_3d": "metres, camera space, relative to the root (joint 0)",
                      "root": "metres, camera space (x right, y down, z forward)",
                      "joints_2d": "pixels, the same joints", "confidence": "0-1 per joint (0: held from an earlier "
                                                                             "frame)",
                      "time_s": "seconds from the stream's opening to the frame's arrival",
                      "time_unix": "the frame's arrival, seconds since 1970-01-01 UTC",
                      "latency_ms": "milliseconds from the frame's arrival to its line",
                      "uncertainty_mm": "radius around each joint (with 2 or more hypotheses)"},
            "started": datetime.fromtimestamp(time.time(), timezone.utc).isoformat(timespec="milliseconds"),
        }


def frame_record(frame: LiveFrame, latency_ms: float) -> dict:
    """One JSON line's content for a lifted frame."""
    record = {"type": "frame", "frame": frame.index, "time_s": round(frame.time_s, 4),
              "time_unix": round(frame.wall, 4), "latency_ms": round(latency_ms, 2), "detected": frame.detected,
              "root": _numbers(frame.root, 5), "joints_3d": _numbers(frame.joints_3d, 5),
              "joints_2d": _numbers(frame.joints_2d, 2), "confidence": _numbers(frame.confidence, 3)}
    if frame.uncertainty is not None:
        record["uncertainty_mm"] = _numbers(frame.uncertainty, 1)
    return record


def _numbers(values: np.ndarray, digits: int):
    """Nested lists of rounded floats; None for what is not finite (JSON has no NaN)."""
    values = np.asarray(values, np.float64)
    if values.ndim == 0:
        return round(float(values), digits) if math.isfinite(values) else None
    return [_numbers(v, digits) for v in values]


def live_detector(name):
    """The detector a live stream uses for `name`: 'auto' is MediaPipe's one-person Pose solution
    when installed (a live stream follows one person, and it is the faster: 28.3-28.8 lifted frames/s
    at 640x360 against 22.8-25.9 for mediapipe-multi, benchmarks/live.py), else what make_detector's
    'auto' picks; any other name or Detector as given."""
    if isinstance(name, str) and name == "auto" and MediaPipeDetector.available():
        return "mediapipe"
    return name


def live_torch_threads(device) -> int | None:
    """torch's threads while lifting live on the CPU: half the cores (the detector and the decoder
    use the others), unless OMP_NUM_THREADS says otherwise; None on other devices. On 2 busy cores
    two torch threads made a 15 ms window take up to 500 ms (threads waiting for each other)."""
    if str(device).split(":")[0] != "cpu" or os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, (os.cpu_count() or 2) // 2)
