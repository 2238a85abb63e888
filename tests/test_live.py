"""Live lifting (common/in_the_wild/live.py, main_in_the_wild.py --live): the causal window is
offline lifting of the same frames, the start is padded, the JSON lines are complete and flushed
one by one, frames the lifter cannot get to are dropped and counted, non-causal filters are
refused, and SIGINT or the end of the stream end a run cleanly."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from common.api import Lifter
from common.cli import in_the_wild as wild_script
from common.geometry.coco import COCO_NAMES, keypoints_for_model
from common.geometry.skeleton import h36m_skeleton_17
from common.cli import live as cli_live
from common.in_the_wild import detectors, filters, lifting, live, live_source, live_window
from common.in_the_wild.detectors import Detector
from common.storage.video import pyav_available
from conftest import save_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
needs_pyav = pytest.mark.skipif(not pyav_available(), reason="PyAV is not installed (pip install av): live "
                                                            "streams are read through it")
W, H = 160, 120
F = 9                                                    # the tiny checkpoint's window
SHAPE = np.random.default_rng(0).uniform(-25, 25, (17, 2))


def person(frame: int) -> np.ndarray:
    """COCO-17 (17, 3) of someone walking to the right, confidence 0.9."""
    centre = [40 + 1.5 * frame, 60 + 5 * np.sin(frame / 3)]
    return np.concatenate([SHAPE + centre, np.full((17, 1), 0.9)], axis=1).astype(np.float32)


def image(frame: int) -> np.ndarray:
    """A frame that carries its number in its first pixel (for the scripted detector)."""
    out = np.zeros((H, W, 3), np.uint8)
    out[0, 0, 0] = frame
    return out


class ScriptedDetector(Detector):
    """Finds person(n) in the frame that carries n (image()); nobody in the frames of `missing`;
    sleeps `delay` seconds per frame (a slow detector)."""

    name = "scripted"
    keypoint_names = tuple(COCO_NAMES)
    coco_from = tuple(range(17))
    missing: frozenset = frozenset()
    delay = 0.0

    @classmethod
    def available(cls):
        return True

    def detect(self, rgb):
        time.sleep(self.delay)
        n = int(rgb[0, 0, 0])
        return [] if n in self.missing else [person(n)]


class CountingDetector(ScriptedDetector):
    """person(n) for the n-th frame it sees, whatever the frame shows (frames that went through a codec)."""

    name = "counting"

    def start_video(self):
        self.seen = 0

    def detect(self, rgb):
        self.seen += 1
        return [person(self.seen - 1)]


def register_counting_detector() -> None:
    """In a child process: --detector counting."""
    detectors.DETECTORS["counting"] = CountingDetector


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.bin", "h36m", keypoints="det")


@pytest.fixture(scope="module")
def lifter(tiny):
    return Lifter.from_checkpoint(tiny)


def offline_last_frame(core, options, coco: np.ndarray):
    """Offline lifting (lifting.lift_pixels) of F frames' COCO-17 keypoints (F, 17, 3), with torch's
    threads as the live streams of these tests have them (one)."""
    pixels, confidence = keypoints_for_model(coco[..., :2], core.layout.input_name, coco[..., 2])
    with one_torch_thread():
        return lifting.lift_pixels(core, pixels, confidence, np.arange(len(coco)), (W, H), options)


@contextlib.contextmanager
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def scripted_stream(lifter, frames: int, fps: float = 10, **kw) -> live.LiveStream:
    source = live_source.ImageSource([image(i) for i in range(frames)], fps=fps)
    return lifter.live(source, detector=ScriptedDetector(), seed=3, torch_threads=1, **kw)


# ---------------------------------------------------------------------------- the causal window

@pytest.mark.parametrize("layout", ["h36m", "coco"])
def test_a_causal_window_is_offline_lifting_of_its_frames_last_frame(tmp_path, layout):
    lifter = Lifter.from_checkpoint(save_tiny_checkpoint(tmp_path / "t.bin", layout))
    core, options = lifter._prepare(3, 2, 5, None, None, None)
    coco = np.stack([person(i) for i in range(F)])
    coco[4, 3, 2] = 0.1                                              # a confidence that weights the root fit
    pixels, confidence = keypoints_for_model(coco[..., :2], layout, coco[..., 2])
    offline = offline_last_frame(core, options, coco)
    with one_torch_thread():
        pose = live_window.WindowLifter(core, (W, H), options).lift(pixels, confidence)
    for mode, poses in offline.poses.items():
        np.testing.assert_array_equal(pose.poses[mode], poses[-1], err_msg=mode)
    np.testing.assert_array_equal(pose.root, offline.trajectory[-1])
    np.testing.assert_array_equal(pose.hypotheses, offline.hypotheses[-1])
    np.testing.assert_array_equal(pose.uncertainty, offline.uncertainty[-1])
    assert pose.joints_2d.shape == (17, 2) and pose.confidence.shape == (17,)


def test_every_live_frame_is_offline_lifting_of_the_last_f_frames_the_start_padded_with_the_first(lifter):
    n = F + 4
    with scripted_stream(lifter, n, hypotheses=2, iterations=2) as stream:
        frames = list(stream)
    assert stream.stats.dropped == 0 and [f.index for f in frames] == list(range(n))
    core, options = lifter._prepare(2, 2, 3, None, None, None)
    coco = np.stack([person(i) for i in range(n)])
    for f in frames:
        window = coco[max(0, f.index - F + 1):f.index + 1]
        window = np.concatenate([window[:1].repeat(F - len(window), 0), window])      # the first frame, repeated
        offline = offline_last_frame(core, options, window)
        np.testing.assert_array_equal(f.joints_3d, offline.poses["T-Agg"][-1], err_msg=str(f.index))
        np.testing.assert_array_equal(f.root, offline.trajectory[-1])
        assert f.detected and f.latency_ms > 0


def test_the_window_pads_holds_and_loses_the_person():
    window = live_window.CausalWindow(5, threshold=0.3, max_gap=2)
    assert not window.push([]) and not window.has_person          # nobody yet: nothing to lift
    first, second = person(0), person(1)
    second[7, 2] = 0.1                                             # the left elbow below the threshold
    window.push([first])
    window.push([second])
    kp = window.keypoints()
    np.testing.assert_array_equal(kp[:4], np.repeat(first[None], 4, 0))   # padded in front with the first frame
    np.testing.assert_array_equal(kp[4, 7], [*first[7, :2], 0])          # the weak joint holds its last position
    np.testing.assert_array_equal(kp[4, 8], second[8])
    assert window.push([]) and not window.detected                # held for max_gap frames
    np.testing.assert_array_equal(window.keypoints()[-1, :, :2], window.keypoints()[-2, :, :2])
    assert window.keypoints()[-1, :, 2].max() == 0
    assert window.push([])
    assert not window.push([]) and not window.has_person          # a gap over max_gap: lost, the window empties
    window.push([person(9)])
    np.testing.assert_array_equal(window.keypoints(), np.repeat(person(9)[None], 5, 0))


def test_the_window_follows_the_person_nearest_the_last_one():
    window = live_window.CausalWindow(3)
    window.push([person(0)])
    far = person(0)
    far[:, 0] += 100
    far[:, 2] = 1.0                                               # more confident, but somebody else
    window.push([far, person(1)])
    np.testing.assert_array_equal(window.keypoints()[-1], person(1))


# ---------------------------------------------------------------------------- output

def run_to_file(stream, path) -> live.LiveStats:
    with cli_live.JsonLines(path) as out:
        return cli_live.run_live(stream, out, log=lambda *_: None)


def check_lines(path: Path) -> list[dict]:
    """Every line of a live output parses and is complete: header, frames, summary."""
    text = path.read_text()
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]
    header, frames = lines[0], [r for r in lines if r["type"] == "frame"]
    skeleton = h36m_skeleton_17()
    assert header["type"] == "header" and header["joints"] == list(skeleton.names)
    assert header["parents"] == list(skeleton.parents) and header["image_size"] == [W, H]
    assert {"joints_3d", "root", "joints_2d", "latency_ms", "time_s"} <= set(header["units"])
    for r in frames:
        assert np.array(r["joints_3d"]).shape == (17, 3) and np.array(r["joints_2d"]).shape == (17, 2)
        assert np.array(r["root"]).shape == (3,) and np.array(r["confidence"]).shape == (17,)
        assert r["joints_3d"][0] == [0, 0, 0] and r["latency_ms"] >= 0 and isinstance(r["detected"], bool)
        assert r["time_unix"] > 1e9 and r["time_s"] >= 0
    assert [r["frame"] for r in frames] == sorted({r["frame"] for r in frames})
    assert np.all(np.diff([r["time_s"] for r in frames]) > 0)
    return lines


def test_the_json_lines_name_the_joints_and_give_every_lifted_frame(lifter, tmp_path):
    ScriptedDetector.missing = frozenset({0, 1, 6})
    try:
        stats = run_to_file(scripted_stream(lifter, 12, fps=20), tmp_path / "live.jsonl")
    finally:
        ScriptedDetector.missing = frozenset()
    lines = check_lines(tmp_path / "live.jsonl")
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["ended_by"] == "the end of the stream"
    assert summary["frames_read"] == 12 == summary["lifted"] + summary["dropped"] + summary["without_person"]
    assert summary["without_person"] == 2 == stats.without_person             # frames 0 and 1: nobody yet
    frames = {r["frame"]: r for r in lines if r["type"] == "frame"}
    assert not frames[6]["detected"] and frames[6]["joints_2d"] == frames[5]["joints_2d"]   # held
    assert max(frames[6]["confidence"]) == 0 and frames[7]["detected"]
    assert summary["latency_ms"]["median"] > 0 and summary["fps"] > 0


def test_with_two_hypotheses_the_lines_carry_the_uncertainty(lifter, tmp_path):
    run_to_file(scripted_stream(lifter, 3, fps=20, hypotheses=2), tmp_path / "live.jsonl")
    frames = [r for r in check_lines(tmp_path / "live.jsonl") if r["type"] == "frame"]
    assert frames and all(len(r["uncertainty_mm"]) == 17 for r in frames)


class GatedSource(live_source.Source):
    """Two frames, then waits for `release` before the third and the end."""

    name = "gated"

    def __init__(self):
        self.release = threading.Event()

    def open(self):
        def frames():
            yield image(0)
            yield image(1)
            assert self.release.wait(30)
            yield image(2)

        return live_source.StreamInfo(self.name, W, H, 25.0), frames()


def test_each_line_is_flushed_as_soon_as_its_frame_is_lifted(lifter, tmp_path):
    source, path = GatedSource(), tmp_path / "live.jsonl"
    done = threading.Thread(target=run_to_file, args=(lifter.live(source, detector=ScriptedDetector()), path))
    done.start()
    try:
        deadline = time.monotonic() + 30
        while not any(r.get("frame") == 1 for r in _lines(path)):           # while the stream is still open
            assert time.monotonic() < deadline, "no frame line before the stream ended"
            time.sleep(0.01)
        assert done.is_alive()
    finally:
        source.release.set()
        done.join(30)
    assert [r["frame"] for r in check_lines(path) if r["type"] == "frame"][-1] == 2


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]


# ---------------------------------------------------------------------------- dropping frames

@pytest.mark.parametrize("slow", ["detector", "lifter"])
def test_frames_the_pipeline_cannot_get_to_are_dropped_and_counted(lifter, monkeypatch, slow):
    if slow == "detector":
        monkeypatch.setattr(ScriptedDetector, "delay", 0.08)
    else:
        lift = live_window.WindowLifter.lift
        monkeypatch.setattr(live_window.WindowLifter, "lift", lambda self, *a: (time.sleep(0.08), lift(self, *a))[1])
    with scripted_stream(lifter, 40, fps=100) as stream:
        frames = list(stream)
    stats = stream.stats
    assert stats.read == 40 and stats.dropped > 10 and stats.lifted == len(frames) < 30
    assert stats.dropped == stats.read - stats.lifted - stats.without_person
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices)) and indices[-1] == 39          # the newest frame, never behind
    latency = np.array([f.latency_ms for f in frames])
    assert np.median(latency) < 500                                        # no backlog builds up


# ---------------------------------------------------------------------------- filters

def test_one_euro_one_frame_at_a_time_is_the_offline_filter():
    x = np.random.default_rng(1).normal(size=(40, 17, 3)).cumsum(axis=0)
    step = live_window.OneEuro(min_cutoff=1.5, beta=0.2, d_cutoff=1.0)
    online = np.stack([step(frame, 1 / 30) for frame in x])
    offline = filters.one_euro(x, 30.0, min_cutoff=1.5, beta=0.2, d_cutoff=1.0)
    np.testing.assert_allclose(online, offline, rtol=1e-6, atol=1e-6)


def test_a_live_stream_smooths_with_one_euro(lifter):
    with scripted_stream(lifter, 6, fps=20, smoothing="one-euro:min_cutoff=0.5") as stream:
        frames = list(stream)
    with scripted_stream(lifter, 6, fps=20) as plain_stream:
        plain = list(plain_stream)
    np.testing.assert_array_equal(frames[0].joints_3d, plain[0].joints_3d)     # the first frame passes
    assert not np.allclose(frames[-1].joints_3d, plain[-1].joints_3d)


@pytest.mark.parametrize("name", ["butterworth", "savgol:window=5"])
def test_a_filter_that_needs_later_frames_is_refused(lifter, tiny, capsys, name):
    with pytest.raises(ValueError, match="is not causal"):
        lifter.live(live_source.ImageSource([image(0)]), detector=ScriptedDetector(), smoothing=name)
    rc = wild_script.main(["--evaluate", str(tiny), "--live", "0", "--filter", name, "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "is not causal" in err and "one-euro" in err


@pytest.mark.parametrize("flags, message", [
    (["--output", "out.npz"], "name the file .jsonl"),
    (["--render", "--output", "x.jsonl"], "JSON lines only"),
    (["--video", "clip.mp4"], "leave out --video"),
])
def test_bad_live_flags_are_one_error_line(tiny, capsys, flags, message):
    rc = wild_script.main(["--evaluate", str(tiny), "--live", "0", "--device", "cpu", *flags])
    assert rc == 2 and message in capsys.readouterr().err


def test_live_needs_a_model(capsys):
    assert wild_script.main(["--live", "0", "--device", "cpu"]) == 2
    assert "--live needs a trained model" in capsys.readouterr().err


def test_a_missing_source_says_what_to_give(lifter):
    with pytest.raises(live_source.SourceError, match="camera index"):
        lifter.live("/no/such/fifo", detector=ScriptedDetector())


@needs_pyav
def test_a_camera_index_opens_the_device_through_ffmpegs_v4l2_input(tmp_path):
    """'7' is /dev/video7 read through FFmpeg's video4linux2 input (which PyAV's wheel carries);
    with no such camera the error names the device; nothing is written."""
    import av

    assert any("v4l2" in name.split(",") for name in av.formats_available)
    source = live_source.PyAVSource("7")
    assert (source.url, source.format) == ("/dev/video7", "v4l2")
    if Path("/dev/video7").exists():
        pytest.skip("a camera is connected as /dev/video7")
    with pytest.raises(live_source.SourceError, match="cannot open camera /dev/video7"):
        source.open()


# ---------------------------------------------------------------------------- a real process on a FIFO

CHILD = ("import sys; sys.path[:0] = [{root!r}, {tests!r}]; import test_live; test_live.register_counting_detector(); "
         "from common.cli.in_the_wild import main; sys.exit(main(sys.argv[1:]))")


def default_sigint() -> None:
    """In the child: SIGINT handled as Python does by default, also when this test runs in a job that
    a non-interactive shell started in the background (which ignores SIGINT; children inherit that)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def start_child(tiny, fifo: Path, out: Path) -> subprocess.Popen:
    code = CHILD.format(root=str(ROOT), tests=str(ROOT / "tests"))
    return subprocess.Popen([sys.executable, "-c", code, "--evaluate", str(tiny), "--live", str(fifo), "--output",
                             str(out), "--detector", "counting", "--device", "cpu"],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=default_sigint,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def feed(fifo: Path, frames: int | None, fps: float, stop: threading.Event, proc: subprocess.Popen) -> None:
    """Write frames (None: until `stop`) to the FIFO as a y4m stream at fps, once the child opens it."""
    import av

    deadline = time.monotonic() + 120
    while True:                                           # a non-blocking open fails until a reader is there
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            if stop.is_set() or proc.poll() is not None or time.monotonic() > deadline:
                return
            time.sleep(0.02)
    os.set_blocking(fd, True)
    try:
        with os.fdopen(fd, "wb") as pipe, av.open(pipe, "w", format="yuv4mpegpipe") as container:
            stream = container.add_stream("rawvideo", rate=int(fps))
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            start, i = time.perf_counter(), 0
            while (frames is None or i < frames) and not stop.is_set():
                time.sleep(max(0.0, start + i / fps - time.perf_counter()))
                frame = av.VideoFrame.from_ndarray(image(i), format="rgb24")
                frame.pts = i
                for packet in stream.encode(frame):
                    container.mux(packet)
                pipe.flush()
                i += 1
    except Exception:                                     # noqa: BLE001 - the child went away (a broken pipe,
        pass                                              # in PyAV's words): nothing more to feed


def run_on_fifo(tiny, tmp_path, frames):
    fifo, out = tmp_path / "camera", tmp_path / "live.jsonl"
    os.mkfifo(fifo)
    proc = start_child(tiny, fifo, out)
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(fifo, frames, 25, stop, proc), daemon=True)
    feeder.start()
    return proc, out, stop, feeder


@needs_pyav
def test_sigint_ends_a_live_run_with_complete_lines_and_the_summary(tiny, tmp_path):
    proc, out, stop, feeder = run_on_fifo(tiny, tmp_path, None)
    try:
        deadline = time.monotonic() + 120
        while sum(1 for r in _lines(out) if r["type"] == "frame") < 5:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no frames lifted"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr                   # Ctrl-C is how a live run ends: exit 0
    assert "Traceback" not in stderr
    lines = check_lines(out)
    assert lines[-1]["type"] == "summary" and lines[-1]["ended_by"] == "SIGINT"
    assert lines[-1]["lifted"] == sum(1 for r in lines if r["type"] == "frame") >= 5
    assert "ended by SIGINT" in stdout and "latency from arrival to output: median" in stdout


@needs_pyav
def test_the_end_of_the_stream_ends_a_live_run(tiny, tmp_path):
    proc, out, stop, feeder = run_on_fifo(tiny, tmp_path, 30)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    lines = check_lines(out)
    summary = lines[-1]
    assert summary["ended_by"] == "the end of the stream" and summary["frames_read"] == 30
    assert summary["lifted"] + summary["dropped"] == 30 and summary["lifted"] >= 1   # how many: the machine's speed
    assert lines[-2]["frame"] == 29                                          # the last frame is always lifted
    assert lines[0]["fps"] == 25 and lines[0]["image_size"] == [W, H]


@needs_pyav
def test_a_stream_on_standard_input_gives_json_lines_on_standard_output(tiny):
    """`--live - --output -`, the README's pipe from ffmpeg: the frames come on standard input, the
    lines go to standard output (header, a line per lifted frame, summary) and the messages to
    standard error."""
    import io

    import av

    stream_bytes = io.BytesIO()
    with av.open(stream_bytes, "w", format="nut") as container:
        stream = container.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuvj420p"
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(image(i), format="rgb24").reformat(format="yuvj420p")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    code = CHILD.format(root=str(ROOT), tests=str(ROOT / "tests"))
    run = subprocess.run([sys.executable, "-c", code, "--evaluate", str(tiny), "--live", "-", "--output", "-",
                          "--detector", "counting", "--device", "cpu"], input=stream_bytes.getvalue(),
                         capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    lines = [json.loads(line) for line in run.stdout.decode().splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["source"] == "standard input"
    assert lines[0]["image_size"] == [W, H]
    frames = [r for r in lines if r["type"] == "frame"]
    assert frames and frames[-1]["frame"] == 11 and lines[-1]["type"] == "summary"
    assert lines[-1]["frames_read"] == 12 and lines[-1]["ended_by"] == "the end of the stream"
    assert b"lifting standard input live" in run.stderr


def test_live_auto_detector_is_the_one_person_mediapipe_when_installed(monkeypatch):
    """A live stream follows one person: 'auto' takes MediaPipe's one-person solution (the faster)
    when it is installed, else make_detector's choice; a name or a Detector is kept."""
    monkeypatch.setattr(detectors.MediaPipeDetector, "available", classmethod(lambda cls: True))
    assert live.live_detector("auto") == "mediapipe"
    assert live.live_detector("mediapipe-multi") == "mediapipe-multi"
    given = ScriptedDetector()
    assert live.live_detector(given) is given
    monkeypatch.setattr(detectors.MediaPipeDetector, "available", classmethod(lambda cls: False))
    assert live.live_detector("auto") == "auto"
