"""From a video file to 3D: decoding (common/storage/video.py), detectors (in_the_wild/detectors.py),
following one person (as for keypoint files), lift_video and main_in_the_wild.py --video, bad
input, and the whole pipeline with MediaPipe on the real clip in tests/fixtures/video/."""
import contextlib
import io
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from common.api import Lifter
from common.model.checkpoint import load_denoiser
from common.cli import in_the_wild as wild_script
from common.geometry.coco import COCO_NAMES, input_layout
from common.run.config import RunConfig
from common.model.diffusion import DDIMSampler, Diffusion
from common.model.engine import OpenVINODenoiser, openvino_available
from common.in_the_wild import detectors, lifting
from common.in_the_wild.detectors import BLAZEPOSE_NAMES, BLAZEPOSE_TO_COCO, Detector, MediaPipeDetector
from common.in_the_wild.root_depth import TRAINING_FOCAL
from common.inference.core import InferenceCore
from common.storage.video import VideoError, VideoFrames, probe_video, pyav_available, write_mp4
from conftest import save_tiny_checkpoint

CLIP = Path(__file__).parent / "fixtures" / "video" / "sports2d.mp4"
needs_pyav = pytest.mark.skipif(not pyav_available(), reason="PyAV is not installed (pip install av)")
needs_mediapipe = pytest.mark.skipif(not MediaPipeDetector.available(),
                                     reason="mediapipe is not installed (pip install -r requirements-video.txt)")
W, H = 320, 240
SHAPE = np.random.default_rng(0).uniform(-30, 30, (17, 2))           # a person about 60 px across


def person(x: float, y: float = 120.0) -> np.ndarray:
    return np.concatenate([SHAPE + [x, y], np.full((17, 1), 0.9)], axis=1).astype(np.float32)


class ScriptedDetector(Detector):
    """Replays people per frame from a script {frame: [(17, 3) COCO keypoints]}."""

    name = "scripted"
    keypoint_names = tuple(COCO_NAMES)
    coco_from = tuple(range(17))
    script: dict = {}

    @classmethod
    def available(cls):
        return True

    def start_video(self):
        self.frame = 0

    def detect(self, image):
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        people = self.script.get(self.frame, [])
        self.frame += 1
        return people


def a_walk(frame: int) -> float:
    return 60 + 1.5 * frame


def crossing_script():
    """Person A walks in frames 0-59; no detection in 10-12; in 30-34 the detector jumps to
    person B far to the right; A leaves after 59 and comes back at 100-119 (a 40-frame gap)."""
    script = {f: [person(a_walk(f))] for f in range(60) if not 10 <= f <= 12}
    for f in range(30, 35):
        script[f] = [person(260)]
    for f in range(100, 120):
        script[f] = [person(a_walk(59))]
    return script


def grey_video(path, frames=120, size=(W, H), fps=25):
    image = np.full((size[1], size[0], 3), 128, np.uint8)
    return write_mp4(path, (image for _ in range(frames)), fps)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.bin", "h36m", keypoints="det")


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setitem(detectors.DETECTORS, "scripted", ScriptedDetector)
    monkeypatch.setattr(ScriptedDetector, "script", crossing_script())
    return ScriptedDetector


def lift_cli(ckpt, video, *extra, batch=("-b", "2")):
    return wild_script.main(["--evaluate", str(ckpt), "--video", str(video), "-num_proposals", "2",
                             "-sampling_timesteps", "2", *batch, *extra])


# ---------------------------------------------------------------------------- decoding

@needs_pyav
def test_mp4_round_trip_keeps_frames_size_and_rate(tmp_path):
    rng = np.random.default_rng(0)
    images = [np.full((48, 64, 3), v, np.uint8) for v in rng.integers(20, 230, 12)]
    write_mp4(tmp_path / "a.mp4", images, fps=12.5)
    info = probe_video(tmp_path / "a.mp4")
    assert (info.width, info.height, info.fps, info.frames, info.codec) == (64, 48, 12.5, 12, "h264")
    frames = VideoFrames(tmp_path / "a.mp4")
    decoded = list(frames)
    assert len(decoded) == 12 and frames.decoded == 12 and not frames.truncated
    for got, want in zip(decoded, images):
        assert np.abs(got.astype(int) - want).mean() < 3                 # H.264 is lossy, flat images nearly exact


@needs_pyav
def test_the_real_clip_decodes_all_its_frames():
    info = probe_video(CLIP)
    assert (info.width, info.height, info.fps, info.frames) == (640, 360, 30.0, 230)
    assert CLIP.stat().st_size < 600_000
    assert (CLIP.parent / "LICENSE-sports2d.txt").is_file()


def cut_short(tmp_path, frames=60, w=96, h=64):
    """A 60-frame MP4 with its index first (faststart), cut at 60% of its bytes."""
    import av

    whole = tmp_path / "whole.mp4"
    rng = np.random.default_rng(1)
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for _ in range(frames):
            image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    return cut


@needs_pyav
def test_a_cut_video_gives_its_decodable_frames_and_says_so(tmp_path):
    frames = VideoFrames(cut_short(tmp_path))
    n = len(list(frames))
    assert 0 < n < 60 and frames.decoded == n and frames.truncated
    assert "of 60 declared" in frames.summary() and "cut short" in frames.summary()


@needs_pyav
def test_not_a_video_is_one_clear_error(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n")
    with pytest.raises(VideoError, match="cannot read .*notes.mp4 as a video"):
        probe_video(text)
    with pytest.raises(FileNotFoundError, match="video not found"):
        probe_video(tmp_path / "missing.mp4")


def test_without_pyav_or_ffmpeg_reading_a_video_says_what_to_install(tmp_path, monkeypatch):
    import common.storage.video as video

    monkeypatch.setattr(video, "pyav_available", lambda: False)
    monkeypatch.setattr(video.shutil, "which", lambda name: None)
    (tmp_path / "a.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(VideoError, match=r"needs PyAV: install PyAV \(pip install av"):
        probe_video(tmp_path / "a.mp4")


# ---------------------------------------------------------------------------- detectors

def test_blazepose_to_coco_takes_the_same_named_points():
    assert len(BLAZEPOSE_NAMES) == 33 and len(BLAZEPOSE_TO_COCO) == 17
    assert [BLAZEPOSE_NAMES[i] for i in BLAZEPOSE_TO_COCO] == COCO_NAMES
    assert MediaPipeDetector.coco_from == BLAZEPOSE_TO_COCO and MediaPipeDetector.keypoint_names == BLAZEPOSE_NAMES
    blaze = np.arange(2 * 33 * 3, dtype=np.float32).reshape(2, 33, 3)
    coco = ScriptedDetector.to_coco(MediaPipeDetector.__new__(MediaPipeDetector), blaze)  # the table, no model
    assert coco.shape == (2, 17, 3)
    np.testing.assert_array_equal(coco[:, 11], blaze[:, 23])          # left hip


def test_without_a_detector_the_message_says_what_to_install(monkeypatch):
    monkeypatch.setattr(MediaPipeDetector, "available", classmethod(lambda cls: False))
    for name in ("auto", "mediapipe"):
        with pytest.raises(detectors.DetectorUnavailable,
                           match=r"pip install -r requirements-video.txt.*--keypoints-file"):
            detectors.make_detector(name)
    with pytest.raises(ValueError, match="unknown detector 'rtm'"):
        detectors.make_detector("rtm")


# ---------------------------------------------------------------------------- following one person

@needs_pyav
@pytest.mark.parametrize("person", [None, "longest", 1])
def test_lift_video_follows_the_person_through_a_crossing_and_a_gap(tmp_path, scripted, tiny_ckpt, person):
    """Everyone seen in 30 frames, the longest or person 1: A alone (B's 5 frames and A's return
    after a 40-frame gap are other, shorter people)."""
    video = grey_video(tmp_path / "v.mp4", frames=130)
    model, _ = load_denoiser(tiny_ckpt)
    core = InferenceCore.of_sampler(model, DDIMSampler(Diffusion(), 2), hypotheses=2, group=2, seed=1)
    people = lifting.lift_video(core, video, detector=ScriptedDetector(), person=person)
    assert people.ids == [1] and people.video.frames == 130 and people.video.detected_frames == 60 - 3 + 20
    result = people.longest
    np.testing.assert_array_equal(result.frame_ids, np.arange(60))      # the longest stretch of A
    assert result.source.filled_frames == 3 + 5                       # no detection, and B's frames
    # B's frames are filled from A's neighbours, not taken from B
    np.testing.assert_allclose(result.keypoints_2d[32], SHAPE + [a_walk(32), 120], atol=1e-3)
    np.testing.assert_allclose(result.keypoints_2d[11], SHAPE + [a_walk(11), 120], atol=1e-3)
    if person is None:
        assert people.warnings == ["left out 2 people seen in fewer than 30 frames (--min-frames): id (frames) "
                                   "2 (5), 3 (20)"]
    else:
        assert any("3 tracks" in w for w in result.source.warnings)
    assert result.j_agg.shape == (60, 17, 3) and result.fps == 25 and result.person_id == 1
    assert set(result.timings) == {"decode", "detect", "lift"} and set(people.timings) == {"decode", "detect", "lift"}


def two_walkers():
    """A walks right from x=40 and B left from x=280, level with A: they cross at frame 40 (the
    detector lists them in a shuffled order); B leaves after frame 59, A after frame 79; B comes
    back at frame 70 (within 30 frames: still B), A at frame 115 (35 frames gone: a new person)."""
    rng = np.random.default_rng(3)
    script = {}
    for f in range(80):
        people = [person(40 + 3 * f)] + ([person(280 - 3 * f)] if f < 60 or f >= 70 else [])
        if f >= 70:
            people[1] = person(280 - 3 * 59)
        script[f] = [people[i] for i in rng.permutation(len(people))]
    for f in range(115, 150):
        script[f] = [person(40 + 3 * 79)]
    return script


@needs_pyav
def test_lift_video_lifts_every_person_with_stable_ids(tmp_path, monkeypatch, tiny_ckpt):
    monkeypatch.setitem(detectors.DETECTORS, "scripted", ScriptedDetector)
    monkeypatch.setattr(ScriptedDetector, "script", two_walkers())
    video = grey_video(tmp_path / "v.mp4", frames=150)
    lifter = Lifter.from_checkpoint(tiny_ckpt)
    people = lifter.lift_video(video, hypotheses=2, iterations=1, detector="scripted")
    assert people.ids == [1, 2, 3]
    a, b, back = people.people
    np.testing.assert_array_equal(a.frame_ids, np.arange(80))
    np.testing.assert_array_equal(b.frame_ids, np.arange(80))          # B's absence (60-69) filled in
    np.testing.assert_array_equal(back.frame_ids, np.arange(115, 150))
    # through the crossing each keeps their own path: A always walks right, B left
    np.testing.assert_allclose(a.keypoints_2d[:, :, 0].mean(1), SHAPE[:, 0].mean() + 40 + 3 * np.arange(80),
                               atol=1e-3)
    np.testing.assert_allclose(b.keypoints_2d[:60, :, 0].mean(1), SHAPE[:, 0].mean() + 280 - 3 * np.arange(60),
                               atol=1e-3)
    assert b.source.filled_frames == 10 and a.source.filled_frames == 0
    assert people.longest.person_id == 1 and all(p.j_agg.shape == (len(p.frame_ids), 17, 3) for p in people)
    # each person is lifted as their own keypoints alone would be
    alone = lifter.lift_keypoints(b.source, (W, H), hypotheses=2, iterations=1)
    np.testing.assert_array_equal(alone.j_agg, b.j_agg)
    np.testing.assert_array_equal(alone.trajectory, b.trajectory)
    assert [p.person_id for p in [lifter.lift_video(video, hypotheses=1, iterations=1, detector="scripted",
                                                    person=2).longest]] == [2]
    many = lifter.lift_video(video, hypotheses=1, iterations=1, detector="scripted", min_frames=50)
    assert many.ids == [1, 2] and "3 (35)" in many.warnings[0]
    with pytest.raises(ValueError, match=r"no person 7; the detections link into people 1\.\.3"):
        lifter.lift_video(video, hypotheses=1, iterations=1, detector="scripted", person=7)


@needs_pyav
def test_cli_on_a_video_writes_every_format_and_lift_video_returns_the_same(tmp_path, scripted, tiny_ckpt, capsys):
    video = grey_video(tmp_path / "v.mp4", frames=130)
    outs = [tmp_path / f"v_3d{s}" for s in (".npz", ".json", ".csv", ".bvh")]
    rc = lift_cli(tiny_ckpt, video, "--detector", "scripted", *sum((["--output", str(o)] for o in outs), []), batch=())
    assert rc == 0
    out = capsys.readouterr().out
    assert "a person detected in 77 of 130 decoded frames" in out and "person 1: frames 0..59 (60 frames)" in out
    assert "seconds per second of video" in out
    d = np.load(outs[0])
    assert d["j_agg"].shape == (60, 17, 3) and d["detector_keypoints"].shape == (130, 1, 17, 3)
    assert int(np.isfinite(d["detector_keypoints"][:, 0, 0, 0]).sum()) == 77
    assert all(o.stat().st_size > 0 for o in outs)
    # the library call the command line makes (and Lifter.lift_video), with its defaults (the virtual
    # camera of a Human3.6M-format model), gives the same numbers
    model, _ = load_denoiser(tiny_ckpt)
    core = InferenceCore.of_sampler(model.eval(), DDIMSampler(Diffusion(), 2), hypotheses=2, group=1024, seed=1)
    result = lifting.lift_video(core, video, lifting.LiftOptions(virtual_focal=TRAINING_FOCAL),
                                detector="scripted").longest
    np.testing.assert_array_equal(result.frame_ids, d["frame_ids"])
    np.testing.assert_allclose(result.j_agg, d["j_agg"], atol=1e-6)
    np.testing.assert_allclose(result.hypotheses, d["hypotheses"], atol=1e-6)
    np.testing.assert_allclose(result.trajectory, d["trajectory"], atol=1e-6)
    api = Lifter.from_checkpoint(tiny_ckpt).lift_video(video, hypotheses=2, iterations=2, detector="scripted").longest
    for key in ("frame_ids", "j_agg", "p_agg", "hypotheses", "trajectory", "keypoints_2d"):
        np.testing.assert_array_equal(getattr(api, key), d[key])


@needs_pyav
def test_the_animation_has_every_input_frame(tmp_path, monkeypatch, tiny_ckpt):
    monkeypatch.setitem(detectors.DETECTORS, "scripted", ScriptedDetector)
    monkeypatch.setattr(ScriptedDetector, "script", {f: [person(100 + 2 * f)] for f in range(5, 25)})
    video = grey_video(tmp_path / "v.mp4", frames=30)
    rc = lift_cli(tiny_ckpt, video, "--detector", "scripted", "--output", str(tmp_path / "v.npz"), "--render",
                  "--viz-size", "0.8")
    assert rc == 0
    assert len(np.load(tmp_path / "v.npz")["frame_ids"]) == 20
    info = probe_video(tmp_path / "v.mp4")
    assert info.frames == 30 and info.fps == 25 and info.codec == "h264"   # all 30, not the 20 lifted


@needs_pyav
def test_cut_video_is_lifted_from_its_decodable_frames(tmp_path, monkeypatch, tiny_ckpt, capsys):
    monkeypatch.setitem(detectors.DETECTORS, "scripted", ScriptedDetector)
    monkeypatch.setattr(ScriptedDetector, "script", {f: [person(100 + f)] for f in range(60)})
    rc = lift_cli(tiny_ckpt, cut_short(tmp_path), "--detector", "scripted", "--output", str(tmp_path / "c.npz"))
    assert rc == 0
    captured = capsys.readouterr()
    n = int(np.load(tmp_path / "c.npz")["video_frames"])
    assert 0 < n < 60
    assert f"in {n} of {n} decoded frames" in captured.out and "cut short (it declares 60)" in captured.out
    assert "cut short" in captured.err and f"used the {n} frames that decode" in captured.err


# ---------------------------------------------------------------------------- bad input: one line, nothing written

@needs_pyav
@pytest.mark.parametrize("case", ["not a video", "no person", "tiny frames", "unwritable output", "unknown format"])
def test_bad_input_is_one_error_line_and_nothing_is_written(tmp_path, monkeypatch, tiny_ckpt, capsys, case):
    monkeypatch.setitem(detectors.DETECTORS, "scripted", ScriptedDetector)
    monkeypatch.setattr(ScriptedDetector, "script", {})
    video, out = tmp_path / "v.mp4", tmp_path / "out" / "v_3d.npz"
    expect = {"not a video": "cannot read .* as a video", "no person": "found no person in any of its 40 frames",
              "tiny frames": "frames of 24x24 pixels cannot be used", "unwritable output": "cannot write to",
              "unknown format": r"unknown format '\.txt'"}[case]
    if case == "not a video":
        video.write_bytes(b"\x00" * 1000)
    else:
        grey_video(video, frames=40, size=(24, 24) if case == "tiny frames" else (W, H))
    if case == "unwritable output":
        (tmp_path / "out").write_text("a file where the folder should be")
        out = tmp_path / "out" / "v_3d.npz"
    if case == "unknown format":
        out = tmp_path / "out" / "v_3d.txt"
    before = sorted(p.name for p in tmp_path.rglob("*"))
    rc = lift_cli(tiny_ckpt, video, "--detector", "scripted", "--output", str(out), "--render")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: ")
    assert re.search(expect, err[-1]), err[-1]
    after = sorted(p.name for p in tmp_path.rglob("*"))
    assert after == before or after == sorted(before + ["out"])        # at most the (empty) output folder


# ---------------------------------------------------------------------------- the real clip, with MediaPipe

@pytest.fixture(scope="module")
def real_clip(tmp_path_factory, tiny_ckpt):
    if not (pyav_available() and MediaPipeDetector.available()):
        pytest.skip("mediapipe and PyAV are not installed (pip install -r requirements-video.txt)")
    out = tmp_path_factory.mktemp("real")
    paths = [out / "clip_3d.npz", out / "clip_3d.json", out / "clip_3d.bvh"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = lift_cli(tiny_ckpt, CLIP, *sum((["--output", str(p)] for p in paths), []))
    assert rc == 0
    return out, printed.getvalue()


@needs_mediapipe
def test_mediapipe_lifts_the_jumper_and_the_walker_on_the_real_clip(real_clip):
    """The clip shows a jumper and, crossing in front of them, a walker: both are lifted, each
    in their own files with their own id; the jumper (followed longest) never jumps to the walker."""
    out, printed = real_clip
    files = sorted(out.glob("clip_3d_person*.npz"))
    people = {int(np.load(f)["person_id"]): np.load(f) for f in files}
    assert len(people) >= 2 and sorted(people) == [int(f.stem.rsplit("person", 1)[1]) for f in files]
    jumper = max(people.values(), key=lambda d: len(d["frame_ids"]))
    kp = jumper["detector_keypoints"]
    assert kp.shape[:1] == (230,) and kp.shape[2:] == (33, 3)
    frames = jumper["frame_ids"]
    assert len(frames) > 100 and np.all(np.diff(frames) == 1)
    # the followed person never jumps: the mid-hip moves less than 40 px between frames
    hips = jumper["keypoints_2d"][:, 11:13].mean(axis=1)
    assert np.abs(np.diff(hips, axis=0)).max() < 40
    walkers = [d for d in people.values() if d is not jumper]
    for walker in walkers:                                            # somewhere else in the image
        shared = np.intersect1d(walker["frame_ids"], frames)
        if len(shared):
            a = walker["keypoints_2d"][np.isin(walker["frame_ids"], shared)][:, 11:13].mean(axis=1)
            b = jumper["keypoints_2d"][np.isin(frames, shared)][:, 11:13].mean(axis=1)
            assert np.median(np.linalg.norm(a - b, axis=-1)) > 40
    for d in people.values():
        assert np.isfinite(d["j_agg"]).all() and d["hypotheses"].shape[1:] == (2, 2, 17, 3)
    data = json.loads((out / "clip_3d.json").read_text())
    assert [p["id"] for p in data["people"]] == sorted(people)
    for listed in data["people"]:
        assert [f["frame"] for f in listed["frames"]] == people[listed["id"]]["frame_ids"].tolist()
    assert all(f"person {i}: frames" in printed for i in people)


@needs_mediapipe
@needs_pyav
def test_mediapipe_finds_nobody_in_a_grey_video(tmp_path, tiny_ckpt, capsys):
    rc = lift_cli(tiny_ckpt, grey_video(tmp_path / "grey.mp4", frames=20), "--output", str(tmp_path / "g.npz"))
    assert rc == 2 and re.search("mediapipe(-multi)? found no person in any of its 20 frames", capsys.readouterr().err)
    assert not (tmp_path / "g.npz").exists()


@needs_pyav
def test_video_benchmark_splits_the_time_per_step(tmp_path, monkeypatch, tiny_ckpt):
    from benchmarks import video as bench

    monkeypatch.setitem(detectors.DETECTORS, "scripted", ScriptedDetector)
    monkeypatch.setattr(ScriptedDetector, "script", {f: [person(100 + 2 * f)] for f in range(25)})
    video = grey_video(tmp_path / "v.mp4", frames=25)
    report = bench.run(bench.parse_args(["--checkpoint", str(tiny_ckpt), "--video", str(video), "--detector",
                                         "scripted", "--engine", "eager"]))
    assert [(r["hypotheses"], r["iterations"]) for r in report["rows"]] == [(1, 1), (5, 5)]
    for row in report["rows"]:
        assert set(row["seconds"]) == {"decode", "detect", "lift", "write"} and row["video_s"] == 1.0
        assert all(row["per_video_second"][s] == row["seconds"][s] > 0 for s in row["seconds"])
    text = bench.format_report(report)
    assert "H=5 K=5" in text and "detect+lift" in text and "person detected in 25 of 25 frames" in text


@needs_pyav
@pytest.mark.skipif(not openvino_available(), reason="OpenVINO is not installed")
def test_openvino_engine_lifts_a_video_to_the_same_poses(tmp_path, monkeypatch, tiny_ckpt):
    monkeypatch.setattr(ScriptedDetector, "script", {f: [person(100 + 2 * f)] for f in range(20)})
    video = grey_video(tmp_path / "v.mp4", frames=20)
    model, _ = load_denoiser(tiny_ckpt)
    cores = [InferenceCore.from_run(RunConfig(engine=engine, num_proposals=2, sampling_timesteps=2), model.eval(),
                                    "cpu", input_layout("h36m"), log=lambda *_: None) for engine in ("eager", "openvino")]
    results = [lifting.lift_video(core, video, detector=ScriptedDetector()).longest for core in cores]
    assert isinstance(cores[1].prepared(3)[0], OpenVINODenoiser) and cores[0].prepared(3)[0] is cores[0].model
    np.testing.assert_allclose(results[1].hypotheses, results[0].hypotheses, atol=1e-4)
    np.testing.assert_allclose(results[1].j_agg, results[0].j_agg, atol=1e-4)


@needs_pyav
def test_cli_writes_every_person_in_every_format(tmp_path, monkeypatch, tiny_ckpt, capsys):
    """Two people (and a third who comes back too late): the .json lists them, the .trc and .c3d
    hold each one's markers, .npz and .bvh are one file per person; the numbers agree."""
    import c3d
    from test_mocap_exports import read_trc

    monkeypatch.setitem(detectors.DETECTORS, "scripted", ScriptedDetector)
    monkeypatch.setattr(ScriptedDetector, "script", two_walkers())
    video = grey_video(tmp_path / "v.mp4", frames=150)
    outs = [tmp_path / f"v{s}" for s in (".json", ".trc", ".c3d", ".npz", ".bvh", ".csv")]
    assert lift_cli(tiny_ckpt, video, "--detector", "scripted", *sum((["--output", str(o)] for o in outs), [])) == 0
    printed = capsys.readouterr().out
    assert all(f"person {i}: frames" in printed for i in (1, 2, 3))
    assert sorted(p.name for p in tmp_path.glob("v_person*")) == [f"v_person{i}{s}" for i in (1, 2, 3)
                                                                 for s in (".bvh", ".npz")]
    arrays = {i: np.load(tmp_path / f"v_person{i}.npz") for i in (1, 2, 3)}
    data = json.loads(outs[0].read_text())
    assert [p["id"] for p in data["people"]] == [1, 2, 3]
    header, names, frames, _, values = read_trc(outs[1])
    assert names == [f"p{i}_{joint}" for i in (1, 2, 3) for joint in data["joints"]]
    assert frames.tolist() == list(range(150))
    with open(outs[2], "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)                  # "No analog data found in file."
        reader = c3d.Reader(f)
        points = np.stack([p[:, :3] for _, p, _ in reader.read_frames()])       # (frames, markers, 3)
        residual = np.stack([p[:, 3] for _, p, _ in reader.read_frames()])
    for i, d in arrays.items():
        listed = next(p for p in data["people"] if p["id"] == i)
        np.testing.assert_allclose([f["joints_3d"] for f in listed["frames"]], d["t_agg"], atol=1e-6)
        lab = (d["t_agg"] + d["trajectory"][:, None]) * [1000.0, -1000.0, -1000.0]
        rows = d["frame_ids"]
        block = slice(17 * (i - 1), 17 * i)
        np.testing.assert_allclose(values[rows][:, block], lab, atol=2e-3)
        np.testing.assert_allclose(points[rows][:, block], lab, atol=0.05)
        absent = np.setdiff1d(np.arange(150), rows)
        assert np.isnan(values[absent][:, block]).all() and (residual[absent][:, block] == -1).all()
