"""The sources of live lifting: a camera, a device, a URL, a FIFO, standard input or a video file
played in real time (PyAVSource), or images given in Python (ImageSource); each opened into its
size, its frame rate and an iterator of RGB frames."""
from __future__ import annotations

import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..storage.video import import_pyav, stream_fps

DEFAULT_FPS = 25.0      # the frame rate assumed for a stream that declares none


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
            av = import_pyav()                          # FFmpeg's log silenced: our one-line messages instead
        except ImportError:
            raise SourceError(f"--live needs PyAV to read {self.name}: pip install av (or pip install -r "
                              f"requirements-video.txt)") from None
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
        self.fps = stream_fps(stream)
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


