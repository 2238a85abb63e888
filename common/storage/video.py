"""Video files: reading frames and writing H.264 MP4 with PyAV (`pip install av`, no system
ffmpeg needed); when PyAV is absent, frames are read through the `ffmpeg` program if it is on
PATH.

- probe_video(path): size, frame rate, declared frame count and codec of the first video stream;
- VideoFrames(path): the frames as RGB (h, w, 3) uint8 arrays, one at a time; a file cut short
  yields the frames that decode, and afterwards says so (`truncated`, `decoded`, `problem`);
- MP4Writer: a matplotlib-style movie writer (saving / grab_frame) that encodes H.264 through
  PyAV into a temporary file, renamed to its name only when the whole movie is written.
"""
from __future__ import annotations

import contextlib
import importlib.util
import shutil
import subprocess
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .files import atomic_files

PYAV_HINT = "install PyAV (pip install av, or pip install -r requirements-video.txt)"


class VideoError(ValueError):
    """A file that cannot be read as a video."""


def pyav_available() -> bool:
    return importlib.util.find_spec("av") is not None


def import_pyav():
    """PyAV (optional: the video extra), with FFmpeg's log silenced."""
    import av   # optional: PyAV (the video extra)
    import av.logging

    av.logging.set_level(av.logging.PANIC)       # our own one-line messages instead of FFmpeg's log
    return av


@dataclass(frozen=True)
class VideoInfo:
    """The first video stream of a file."""

    path: Path
    width: int
    height: int
    fps: float
    frames: int | None     # as the container declares it (None when it does not)
    codec: str

    @property
    def duration_s(self) -> float | None:
        return None if self.frames is None else self.frames / self.fps


def probe_video(path) -> VideoInfo:
    """Size, frame rate and declared frame count of a video (PyAV, else ffprobe)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    if not pyav_available():
        return _ffprobe(path)
    av = import_pyav()
    with _open(av, path) as container:
        stream = container.streams.video[0]
        return _info(path, stream)


def _open(av, path: Path):
    """av.open(path) with a one-line error for files that are not (complete) videos."""
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise VideoError(f"cannot read {path} as a video ({e.strerror or type(e).__name__}): give a video file "
                         f"(MP4, MOV, MKV, WebM, AVI); an MP4 cut short before its index cannot be read at all") \
            from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path} holds no video stream (an audio or data file?): give a video file")
    return container


def stream_fps(stream) -> float | None:
    """A PyAV video stream's frame rate as its container declares it (None when it declares none
    that makes sense)."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else None
    return fps if fps and np.isfinite(fps) and 0 < fps < 1000 else None


def _info(path: Path, stream) -> VideoInfo:
    fps = stream_fps(stream) or 25.0
    frames = int(stream.frames) if stream.frames else None
    if frames is None and stream.duration is not None and stream.time_base is not None:
        frames = int(round(float(stream.duration * stream.time_base) * fps)) or None
    return VideoInfo(path, int(stream.codec_context.width), int(stream.codec_context.height), fps, frames,
                     stream.codec_context.name)


class VideoFrames:
    """Iterate over a video's frames as RGB (h, w, 3) uint8 arrays.

    Decoding stops at the first frame that cannot be decoded (a file cut short): the frames
    before it are yielded, then `truncated` is True and `problem` says what happened.
    `decoded` counts the frames yielded; `decode_s` is the time spent decoding them.
    """

    def __init__(self, path):
        self.info = probe_video(path)
        self.path = self.info.path
        self.decoded = 0
        self.truncated = False
        self.problem = ""
        self.decode_s = 0.0

    def __iter__(self):
        if not pyav_available():
            yield from self._count(_ffmpeg_frames(self.path, self.info.width, self.info.height))
            return
        av = import_pyav()
        with _open(av, self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            yield from self._count(self._decode(av, container, stream))
        if not self.truncated and self.info.frames and self.decoded < self.info.frames - 1:
            self.truncated = True
            self.problem = (f"the file declares {self.info.frames} frames but only {self.decoded} could be decoded: "
                            f"it is cut short or damaged")

    def _decode(self, av, container, stream):
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except av.error.FFmpegError as e:
                self.truncated = True
                self.problem = (f"decoding stopped at frame {self.decoded} ({e.strerror or type(e).__name__}): "
                                f"the file is cut short or damaged")
                return
            yield frame.to_ndarray(format="rgb24")

    def _count(self, frames):
        start = time.perf_counter()
        for image in frames:
            self.decode_s += time.perf_counter() - start
            self.decoded += 1
            yield image
            start = time.perf_counter()
        self.decode_s += time.perf_counter() - start

    def summary(self) -> str:
        total = f" of {self.info.frames} declared" if self.info.frames else ""
        cut = f"; {self.problem}" if self.truncated else ""
        return f"{self.decoded}{total} frames decoded from {self.path.name}{cut}"


def read_video_frames(path):
    """The RGB frames (h, w, 3) uint8 of a video, one at a time (PyAV, else ffmpeg)."""
    return iter(VideoFrames(path))


# ---------------------------------------------------------------------------- ffmpeg fallback

FFMPEG_HINT = "install ffmpeg (apt-get install ffmpeg, or conda install -c conda-forge ffmpeg)"


def _ffprobe(path: Path) -> VideoInfo:
    if shutil.which("ffprobe") is None:
        raise VideoError(f"reading the video {path} needs PyAV: {PYAV_HINT} (or {FFMPEG_HINT})")
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=width,height,avg_frame_rate,nb_frames,codec_name", "-of", "default=nw=1",
                            str(path)], capture_output=True, text=True)
    fields = dict(line.split("=", 1) for line in probe.stdout.splitlines() if "=" in line)
    if probe.returncode != 0 or "width" not in fields:
        raise VideoError(f"cannot read {path} as a video ({probe.stderr.strip() or 'no video stream'}): "
                         f"give a video file")
    rate = float(Fraction(fields.get("avg_frame_rate", "25/1"))) if fields.get("avg_frame_rate", "0/0") != "0/0" \
        else 25.0
    frames = int(fields["nb_frames"]) if fields.get("nb_frames", "").isdigit() else None
    return VideoInfo(path, int(fields["width"]), int(fields["height"]), rate, frames, fields.get("codec_name", ""))


def _ffmpeg_frames(path: Path, w: int, h: int):
    if shutil.which("ffmpeg") is None:
        raise VideoError(f"reading the video {path} needs PyAV: {PYAV_HINT} (or {FFMPEG_HINT})")
    command = ["ffmpeg", "-loglevel", "error", "-noautorotate", "-i", str(path),
               "-f", "image2pipe", "-pix_fmt", "rgb24", "-vcodec", "rawvideo", "-"]
    with subprocess.Popen(command, stdout=subprocess.PIPE) as process:
        while len(data := process.stdout.read(w * h * 3)) == w * h * 3:
            yield np.frombuffer(data, dtype=np.uint8).reshape(h, w, 3)


# ---------------------------------------------------------------------------- writing

def write_mp4(path, frames, fps: float, crf: int = 23) -> Path:
    """Encode RGB frames (h, w, 3) uint8 as H.264 MP4 (yuv420p, so odd sizes lose their last
    row / column); written to a temporary file and renamed when complete."""
    writer = MP4Writer(fps, crf=crf)
    with writer.open(path):
        for image in frames:
            writer.write(image)
    return Path(path)


class MP4Writer:
    """H.264 MP4 through PyAV. As a matplotlib movie writer: `with w.saving(fig, path, dpi):
    ... w.grab_frame()`; or directly: `with w.open(path): w.write(rgb)`."""

    def __init__(self, fps: float, crf: int = 23):
        self.fps = fps
        self.crf = crf
        self._fig = None
        self._stream = None

    @contextlib.contextmanager
    def open(self, path):
        av = import_pyav()
        path = Path(path)
        try:
            with atomic_files([path], suffix=".partial.mp4") as (tmp,):
                with av.open(str(tmp), "w", format="mp4") as container:
                    self._container = container
                    self._stream = None
                    yield self
                    if self._stream is not None:
                        for packet in self._stream.encode():
                            container.mux(packet)
                if self._stream is None:
                    raise ValueError(f"no frames to write to {path}")
        finally:
            self._stream = None

    def write(self, image: np.ndarray):
        av = import_pyav()
        h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
        image = np.ascontiguousarray(image[:h, :w, :3])
        if self._stream is None:
            self._rate = Fraction(self.fps).limit_denominator(1001)
            self._stream = self._container.add_stream("libx264", rate=self._rate, options={"crf": str(self.crf)})
            self._stream.width, self._stream.height, self._stream.pix_fmt = w, h, "yuv420p"
            self._stream.codec_context.time_base = 1 / self._rate
            self._frames = 0
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = self._frames, 1 / self._rate
        self._frames += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    # matplotlib's MovieWriter protocol, as far as render_animation uses it
    @contextlib.contextmanager
    def saving(self, fig, path, dpi):
        self._fig = fig
        with self.open(path):
            yield self

    def grab_frame(self):
        canvas = self._fig.canvas
        canvas.draw()
        self.write(np.asarray(canvas.buffer_rgba())[..., :3])
