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

import json
import math
import os
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..geometry.camera import normalize_screen_coordinates
from ..geometry.coco import coco_to_h36m, keypoints_for_model
from ..geometry.skeleton import h36m_skeleton_17
from ..inference.aggregation import SHOWN_MODE, lifting_mode
from ..inference.core import ROOT, InferenceCore
from ..inference.sampling import sample_windows
from ..run import signals
from .detectors import Detector, make_detector
from .filters import FILTERS, Filter, OneEuro
from .lifting import LiftOptions, aggregate_without_ground_truth, joint_uncertainty
from .root_depth import default_intrinsics, to_virtual_camera

DEFAULT_FPS = 25.0      # the frame rate assumed for a stream that declares none


# ---------------------------------------------------------------------------- the source

class SourceError(ValueError):
    """A live source that cannot be opened or read."""


@dataclass(frozen=True)
class StreamInfo:
    """What a source says about its frames. fps: as declared (None: unknown)."""

    name: str
    width: int
    height: int
    fps: float | None


@dataclass(frozen=True)
class Frame:
    """One decoded frame and when it arrived."""

    index: int              # position in the stream, from 0
    image: np.ndarray       # (h, w, 3) uint8 RGB
    arrival: float          # time.perf_counter() seconds when it was decoded
    wall: float             # time.time() then (seconds since the Unix epoch)


class Source:
    """Something to read frames from: open() -> (StreamInfo, an iterator of RGB frames (h, w, 3) uint8)."""

    name = "source"

    def open(self) -> tuple[StreamInfo, Iterator[np.ndarray]]:
        raise NotImplementedError


class ImageSource(Source):
    """Frames held in memory, given at `fps` in real time (pace=True) or as fast as they are taken."""

    def __init__(self, images, fps: float = DEFAULT_FPS, pace: bool = True, name: str = "images"):
        self.images, self.fps, self.pace, self.name = images, fps, pace, name

    def open(self):
        first = self.images[0]
        info = StreamInfo(self.name, first.shape[1], first.shape[0], self.fps)
        return info, paced(iter(self.images), self.fps) if self.pace else iter(self.images)


def paced(frames: Iterator[np.ndarray], fps: float) -> Iterator[np.ndarray]:
    """frames at their frame rate: frame i not before i / fps seconds after the first."""
    start = time.perf_counter()
    for i, image in enumerate(frames):
        delay = start + i / fps - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield image


class PyAVSource(Source):
    """A stream FFmpeg opens through PyAV (SOURCE of --live):
    - a camera: its index ('0' is /dev/video0) or its device path, read through v4l2;
    - '-': standard input;
    - a URL (rtsp://, http://, udp://, ...);
    - a FIFO, a character device or a socket: read as it comes;
    - a regular video file: played at its frame rate, as a camera would give it.
    Raw frames need a container that says their size (y4m, nut, matroska, mpegts)."""

    def __init__(self, spec: str):
        self.spec = spec = str(spec)
        self.format, self.pace = None, False
        # Start on the first packets and hand each frame over as it decodes (FFmpeg's low-latency
        # options; "fflags nobuffer" is not one of them: it loses the frames read while probing).
        self.options = {"flags": "low_delay", "analyzeduration": "0", "probesize": "32"}
        if spec == "-":
            self.url, self.name = "pipe:0", "standard input"
        elif spec.isdigit() or spec.startswith("/dev/video"):
            self.url = f"/dev/video{spec}" if spec.isdigit() else spec
            self.format, self.name = "v4l2", f"camera {self.url}"
        elif "://" in spec:
            self.url, self.name = spec, spec
        else:
            path = Path(spec)
            if not path.exists():
                raise SourceError(f"--live {spec}: not found; give a camera index (0 for /dev/video0), a device, a "
                                  f"URL, a FIFO, a video file, or - for standard input")
            mode = path.stat().st_mode
            self.url, self.name = str(path), str(path)
            if stat.S_ISREG(mode):
                self.pace, self.options = True, {}
        self.fps = None

    def open(self):
        try:
            import av
            import av.logging
        except ImportError:
            raise SourceError(f"--live needs PyAV to read {self.name}: pip install av (or pip install -r "
                              f"requirements-video.txt)") from None
        av.logging.set_level(av.logging.PANIC)          # our one-line messages instead of FFmpeg's log
        try:
            container = av.open(self.url, format=self.format, options=self.options)
        except (av.error.FFmpegError, ValueError) as e:
            hint = " (is the camera connected, and is this PyAV built with v4l2?)" if self.format == "v4l2" else ""
            raise SourceError(f"cannot open {self.name} as a video stream{hint}: "
                              f"{getattr(e, 'strerror', None) or e}") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.name} holds no video stream: give a video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else None
        self.fps = fps if fps and math.isfinite(fps) and 0 < fps < 1000 else None
        frames = self._frames(av, container, stream)
        try:
            first = next(frames)
        except StopIteration:
            raise SourceError(f"{self.name} ended before its first frame") from None
        info = StreamInfo(self.name, first.shape[1], first.shape[0], self.fps)

        def all_frames():
            yield first
            yield from frames

        return info, paced(all_frames(), self.fps or DEFAULT_FPS) if self.pace else all_frames()

    def _frames(self, av, container, stream):
        """Every frame that decodes; a packet that does not is skipped (a damaged live stream goes on)."""
        with container:
            for packet in container.demux(stream):
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError:
                    continue
                for frame in decoded:
                    yield frame.to_ndarray(format="rgb24")


def open_source(source) -> Source:
    """A Source as given, or the PyAVSource of --live's text."""
    return source if isinstance(source, Source) else PyAVSource(source)


# ---------------------------------------------------------------------------- threads

class Handoff:
    """Items passed from one thread to the next. keep_all: the taker gets every item put since
    its last take; otherwise only the newest, the older ones counted in `replaced`. close(error)
    ends it: take() gives what is left, then [] (or raises the error)."""

    def __init__(self, keep_all: bool):
        self.keep_all = keep_all
        self._cond = threading.Condition()
        self._items: list = []
        self._closed = False
        self.error: BaseException | None = None
        self.replaced = 0

    def put(self, item) -> None:
        with self._cond:
            if self._closed:
                return
            if not self.keep_all:
                self.replaced += len(self._items)
                self._items.clear()
            self._items.append(item)
            self._cond.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        with self._cond:
            if not self._closed:
                self._closed, self.error = True, error
            self._cond.notify_all()

    def take(self, poll: float = 0.1) -> list:
        """Wait for items (waking every `poll` seconds, so that signals reach the main thread)."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait(poll)
            items, self._items = self._items, []
            if not items and self.error is not None:
                raise self.error
            return items


@dataclass
class Detection:
    """What the detector found in one frame: people as COCO-17 (17, 3) x, y pixels, confidence."""

    frame: Frame
    people: list
    detect_s: float


# ---------------------------------------------------------------------------- the causal window

class CausalWindow:
    """The last F frames' COCO-17 keypoints (pixels) and confidence of the person followed.

    push() adds a frame's detections: the person nearest the last one (the most confident when
    there is no last one); joints missing or below `threshold` hold their last position above it
    (confidence 0); a frame without anyone holds the last keypoints (not detected) for up to
    `max_gap` frames, after which the person is lost and the window empties."""

    def __init__(self, frames: int, threshold: float = 0.3, max_gap: int = 30):
        self.frames, self.threshold, self.max_gap = frames, threshold, max_gap
        self.reset()

    def reset(self) -> None:
        self._points: list[np.ndarray] = []      # (17, 3) per frame, newest last
        self._detected: list[bool] = []
        self._held: np.ndarray | None = None     # (17, 3) the last valid position of every joint
        self.missing = 0                         # frames since the last detection

    @property
    def has_person(self) -> bool:
        return bool(self._points)

    @property
    def detected(self) -> bool:
        """Whether the newest frame's keypoints were detected (not held)."""
        return bool(self._detected and self._detected[-1])

    def push(self, people: list) -> bool:
        """Add the newest frame's detections (COCO-17 (17, 3) each); returns has_person."""
        person = self._choose([np.asarray(p, np.float32) for p in people])
        if person is None:
            self.missing += 1
            if self._held is None:
                return False
            if self.missing > self.max_gap:
                self.reset()
                return False
            held = self._held.copy()
            held[:, 2] = 0
            self._append(held, False)
            return True
        self.missing = 0
        valid = np.isfinite(person).all(axis=1) & (person[:, 2] >= self.threshold)
        if self._held is None:
            self._held = np.where(np.isfinite(person), person, 0).astype(np.float32)
        points = person.copy()
        points[~valid, :2] = self._held[~valid, :2]
        points[~valid, 2] = 0
        self._held[valid] = person[valid]
        self._append(points, True)
        return True

    def _choose(self, people: list) -> np.ndarray | None:
        people = [p for p in people if np.isfinite(p[:, :2]).any()]
        if not people:
            return None
        if self._held is None or len(people) == 1:
            return max(people, key=lambda p: float(np.nanmean(p[:, 2])))
        centre = self._held[:, :2].mean(axis=0)
        return min(people, key=lambda p: float(np.linalg.norm(np.nanmean(p[:, :2], axis=0) - centre)))

    def _append(self, points: np.ndarray, detected: bool) -> None:
        self._points.append(points)
        self._detected.append(detected)
        del self._points[:-self.frames], self._detected[:-self.frames]

    def keypoints(self) -> np.ndarray:
        """(F, 17, 3) COCO-17 x, y pixels and confidence, oldest first, the newest last; before F
        frames have arrived, the first is repeated in front."""
        pad = [self._points[0]] * (self.frames - len(self._points))
        return np.stack(pad + self._points)


# ---------------------------------------------------------------------------- lifting one window

@dataclass
class WindowPose:
    """The last frame of one lifted window."""

    poses: dict                 # mode -> (17, 3) root-relative metres, camera space (Human3.6M-17)
    root: np.ndarray            # (3,) metres, camera space
    joints_2d: np.ndarray       # (17, 2) pixels, Human3.6M-17 (the 3D output's joints)
    confidence: np.ndarray      # (17,) of joints_2d
    hypotheses: np.ndarray      # (K, H, 17, 3) root-relative metres
    uncertainty: np.ndarray | None    # (17,) mm around the J-Agg joints; None for one hypothesis


class WindowLifter:
    """One causal window's last frame, lifted as lifting.lift_pixels lifts a clip (the same
    normalisation, virtual camera, sampling and aggregation), with the model and the sampler
    prepared once by the InferenceCore instead of once per frame."""

    def __init__(self, core: InferenceCore, size: tuple[int, int], options: LiftOptions = LiftOptions()):
        self.core, self.size, self.options = core, size, options
        self.layout = core.layout.input_name
        self.cam = default_intrinsics(*size, options.focal)
        self.model, self.sampler = core.prepared(1)

    def sample(self, x2d: np.ndarray) -> np.ndarray:
        """x2d (F, J, 2) normalised -> (F, K, H, 17, 3) metres, root-relative: core.sample_clip of
        one F-frame window."""
        if len(x2d) != self.core.frames:
            raise ValueError(f"a causal window has {self.core.frames} frames, not {len(x2d)}")
        s = self.core.sampling
        (_, _, hyps), = sample_windows(self.model, self.sampler, [x2d], s.hypotheses, s.group,
                                       self.core.layout if s.flip else None, s.seed, self.core.device,
                                       s.compute_batch, progress=False)
        hyps[..., ROOT, :] = 0
        return hyps[0].permute(2, 0, 1, 3, 4).cpu().numpy()             # (K, H, F, J, 3) -> (F, K, H, J, 3)

    def lift(self, pixels: np.ndarray, confidence: np.ndarray) -> WindowPose:
        """pixels (F, 17, 2) and confidence (F, 17) in the model's input layout."""
        w, h = self.size
        x2d = normalize_screen_coordinates(pixels, w, h)
        target_px, target_conf = coco_to_h36m(pixels, confidence) if self.layout == "coco" else (pixels, confidence)
        target = normalize_screen_coordinates(target_px, w, h)
        lift_cam = self.cam
        if self.options.virtual_focal is not None:
            x2d, _ = to_virtual_camera(x2d, self.cam, self.options.virtual_focal)
            target, lift_cam = to_virtual_camera(target, self.cam, self.options.virtual_focal)
        hyps = self.sample(x2d)
        poses, traj = aggregate_without_ground_truth(hyps, target, lift_cam, target_conf)
        last = {mode: p[-1, -1] for mode, p in poses.items()}
        spread = joint_uncertainty(hyps[-1:], last["J-Agg"][None], self.options.calibration, self.options.coverage)
        return WindowPose(last, traj[-1, 0], target_px[-1], target_conf[-1], hyps[-1],
                          None if spread is None else spread[0])


# ---------------------------------------------------------------------------- causal smoothing

# The filters of filters.py that see only the past, by name: what a live stream can use.
CAUSAL_FILTERS = {"one-euro": OneEuro}


def check_causal(spec: Filter | None) -> Filter | None:
    """spec, or a clear error when it is not causal."""
    if spec is not None and spec.name not in CAUSAL_FILTERS:
        offline = ", ".join(n for n in FILTERS if n not in CAUSAL_FILTERS)
        raise ValueError(f"--filter {spec.name} is not causal: it smooths each frame with the frames after it, which "
                         f"a live stream does not have yet ({offline} work on files only); use --filter "
                         f"{', '.join(CAUSAL_FILTERS)} (e.g. one-euro:min_cutoff=1,beta=0.01) or no filter")
    return spec


class Smoother:
    """A causal filter on the shown pose and on the root: one state each."""

    def __init__(self, spec: Filter, fps: float):
        make = CAUSAL_FILTERS[check_causal(spec).name]
        self.spec, self.fps = spec, fps
        self.pose, self.root = make(**dict(spec.params)), make(**dict(spec.params))
        self.last_index: int | None = None

    def __call__(self, index: int, pose: np.ndarray, root: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dt = (1 if self.last_index is None else index - self.last_index) / self.fps
        self.last_index = index
        return self.pose(pose, dt).astype(np.float32), self.root(root, dt).astype(np.float32)

    def describe(self) -> str:
        return f"{self.spec.describe()} at {self.fps:g} fps"


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
                "latency_ms": _percentiles(self.latency_ms), "detect_ms": _percentiles(self.detect_ms),
                "lift_ms": _percentiles(self.lift_ms), "ended_by": self.ended_by}

    def summary(self) -> str:
        lat, det, lift = _percentiles(self.latency_ms), _percentiles(self.detect_ms), _percentiles(self.lift_ms)
        text = (f"live: {self.read} frames read, {self.lifted} lifted, {self.dropped} dropped, "
                f"{self.without_person} without a person in {self.seconds:.1f} s ({self.fps:.1f} lifted frames/s); "
                f"ended by {self.ended_by}")
        if self.latency_ms:
            text += (f"\nlatency from arrival to output: median {lat['median']:.0f} ms, 95th percentile "
                     f"{lat['p95']:.0f} ms; per frame (medians): detect {det['median']:.1f} ms, lift "
                     f"{lift['median']:.1f} ms")
        return text


def _percentiles(values: list) -> dict:
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
        self.detector = make_detector(detector)
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
    from ..api import Lifter
    from ..run.config import RunConfig
    from ..storage.files import check_writable_file

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
    detector = make_detector(args.detector)
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


def live_torch_threads(device) -> int | None:
    """torch's threads while lifting live on the CPU: half the cores (the detector and the decoder
    use the others), unless OMP_NUM_THREADS says otherwise; None on other devices. On 2 busy cores
    two torch threads made a 15 ms window take up to 500 ms (threads waiting for each other)."""
    if str(device).split(":")[0] != "cpu" or os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, (os.cpu_count() or 2) // 2)
