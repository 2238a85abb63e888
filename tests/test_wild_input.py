"""Doubtful in-the-wild input: several people, unusable track ids, frame-number gaps, mostly
invented clips, impossible image sizes and depths end in a right answer with a warning or a
clear error, never in a silently wrong clip."""
import json

import numpy as np
import pytest
import torch

from common.cli import in_the_wild as wild_script
from common.in_the_wild import inputs, lifting
from common.model.checkpoint import atomic_save, make_checkpoint
from common.model.denoiser import Denoiser, DenoiserConfig
from common.in_the_wild.keypoints import Keypoints2D, read_keypoints
from common.in_the_wild.tracks import link_by_position
from common.in_the_wild.result import WildResult

RNG = np.random.default_rng(0)
SHAPE = RNG.uniform(-50, 50, (17, 2))                 # a person about 100 px tall


def body(frame: int, x0: float, score: float = 0.9) -> np.ndarray:
    """(17, 3) keypoints of a person centred at x0 + 4 frame, y 300."""
    xy = SHAPE + [x0 + 4 * frame, 300]
    return np.concatenate([xy, np.full((17, 1), score)], axis=1)


def det(frame, kpts, score, **extra):
    return {"image_id": frame, "keypoints": np.asarray(kpts).ravel().tolist(), "score": score, **extra}


def crowd(path, ids=None, frames=20, frames_b=15):
    """Person A (x from 100) in every frame, person B (x from 700) in the first frames_b; B has
    the higher score in odd frames, so 'best score per frame' would switch between them."""
    dets = []
    for f in range(frames):
        dets.append(det(f, body(f, 100), 2.0, **({} if ids is None else {"track_id": ids[0]})))
        if f < frames_b:
            dets.append(det(f, body(f, 700), 3.0 if f % 2 else 1.0, **({} if ids is None else {"track_id": ids[1]})))
    path.write_text(json.dumps(dets))
    return path


def follows_a(kp, frames=20):
    expected = np.stack([body(f, 100)[:, :2] for f in range(frames)])
    np.testing.assert_allclose(kp.keypoints, expected, atol=1e-3)


def test_several_people_without_ids_follow_one_person(tmp_path):
    kp = read_keypoints(crowd(tmp_path / "crowd.json"))
    follows_a(kp)
    assert any("no track ids: linked detections by position into 2 tracks" in w for w in kp.warnings)


def test_equal_track_ids_are_treated_as_untracked(tmp_path):
    path = crowd(tmp_path / "crowd.json", ids=(0, 0))
    follows_a(read_keypoints(path))
    kp = read_keypoints(path, track_id=0)
    follows_a(kp)
    assert "do not tell people apart" in kp.warnings[0]


def test_track_id_still_picks_a_person(tmp_path):
    kp = read_keypoints(crowd(tmp_path / "crowd.json", ids=(1, 2)), track_id=2)
    np.testing.assert_array_equal(kp.frame_ids, np.arange(15))
    np.testing.assert_allclose(kp.keypoints[:, 0, 0], [body(f, 700)[0, 0] for f in range(15)], atol=1e-3)


def test_linking_keeps_a_person_across_a_short_disappearance():
    per_frame = {f: [(1.0, body(f, 100))] + ([(2.0, body(f, 400))] if f % 5 else []) for f in range(10)}
    tracks = link_by_position(per_frame)
    assert sorted(len(t) for t in tracks) == [8, 10]


def test_far_apart_frame_numbers_are_split_and_the_longest_segment_kept(tmp_path):
    path = tmp_path / "gap.json"
    path.write_text(json.dumps([det(f, body(0, 100), 1.0) for f in (1, 2, 3, 400000)]))
    kp = read_keypoints(path)
    np.testing.assert_array_equal(kp.frame_ids, [1, 2, 3])
    assert "kept frames 1..3 (3 of 4 detected frames)" in kp.warnings[0]
    assert read_keypoints(path, max_gap=10 ** 6, max_missing=1.0).num_frames == 400000


def test_unrelated_photos_are_refused(tmp_path):
    path = tmp_path / "photos.json"
    path.write_text(json.dumps([det(i, body(0, 100), 1.0) for i in (397133, 37777, 252219, 87038, 174482)]))
    with pytest.raises(ValueError, match="do not look like one video") as e:
        read_keypoints(path)
    assert "\n" not in str(e.value)


def test_a_mostly_invented_clip_is_refused_and_reported_when_accepted(tmp_path):
    images = [{"id": i, "width": 1000, "height": 800} for i in range(100)]
    anns = [det(i, body(i, 100), 1.0) for i in range(0, 100, 25)]          # 4 of 100 frames detected
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({"images": images, "annotations": anns}))
    with pytest.raises(ValueError, match="96 of 100 frames \\(96%\\) have no detection"):
        read_keypoints(path)
    kp = read_keypoints(path, max_missing=1.0)
    assert kp.filled_frames == 96 and kp.filled_joints == 96 * 17
    assert "96 of 100 frames (96%) have no detection" in kp.warnings[0]
    assert kp.summary() == ("filled by interpolation: 96 of 100 frames (no detection), 1632 of 1700 joint "
                            "positions (96.0%)")


def test_low_confidence_joints_are_counted(tmp_path):
    kpts = [body(f, 100) for f in range(4)]
    kpts[1][3, 2] = 0.1
    kpts[2][[4, 5], 2] = 0.0
    path = tmp_path / "a.json"
    path.write_text(json.dumps([det(f, k, 1.0) for f, k in enumerate(kpts)]))
    kp = read_keypoints(path)
    assert (kp.filled_frames, kp.filled_joints, kp.warnings) == (0, 3, [])


@pytest.mark.parametrize("w, h", [(0, 720), (1280, -720)])
def test_impossible_image_size_is_an_error(w, h):
    kp = Keypoints2D(np.zeros((2, 17, 2), np.float32), np.ones((2, 17), np.float32), np.arange(2))
    with pytest.raises(ValueError, match="must be positive"):
        inputs.image_size(kp, w, h)
    kp.res_w, kp.res_h = w, h
    with pytest.raises(ValueError, match="must be positive"):
        inputs.image_size(kp)


def test_negative_root_depth_is_warned_about():
    kp = Keypoints2D(np.full((3, 17, 2), 500, np.float32), np.ones((3, 17), np.float32), np.arange(3))
    result = WildResult(hypotheses=None, poses={},
                             trajectory=np.array([[0, 0, 4.0], [0, 0, -1.5], [0, 0, 3.0]]), keypoints_2d=None,
                             confidence=None, frame_ids=None, intrinsics=None, image_size=(1000, 1000),
                             input_layout="coco")
    notes = inputs.doubtful_input(result, kp)
    assert len(notes) == 1 and "negative or zero in 1 of 3 frames (min -1.50 m)" in notes[0]
    result.trajectory[1, 2] = 5.0
    assert inputs.doubtful_input(result, kp) == []


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ck") / "tiny.bin"
    atomic_save(make_checkpoint(Denoiser(DenoiserConfig(frames=9, channels=16, depth=1, heads=2)),
                                args={"input_layout": "coco"}), path)
    return path


def test_command_line_reports_warnings_and_interpolation(tmp_path, tiny_checkpoint, capsys):
    source = crowd(tmp_path / "crowd.json")
    rc = wild_script.main(["--evaluate", str(tiny_checkpoint), "--keypoints-file", str(source), "--width", "1280",
                           "--height", "720", "-num_proposals", "2", "-sampling_timesteps", "1"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "warning: up to 2 people per frame" in captured.err
    assert "filled by interpolation: 0 of 20 frames" in captured.out
    with pytest.raises(SystemExit) as stop:                # refused as the command line is parsed
        wild_script.main(["--evaluate", str(tiny_checkpoint), "--keypoints-file", str(source), "--width", "0",
                          "--height", "720"])
    assert stop.value.code == 2 and "--width: 0 is out of range: give an integer >= 1" in capsys.readouterr().err


def test_unwritable_output_is_refused_before_lifting(tmp_path, tiny_checkpoint, monkeypatch, capsys):
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(lifting, "lift_keypoints", lambda *a, **k: pytest.fail("lifting started"))
    rc = wild_script.main(["--evaluate", str(tiny_checkpoint), "--keypoints-file", str(crowd(tmp_path / "c.json")),
                           "--width", "1280", "--height", "720", "--output", str(tmp_path / "file" / "out.npz")])
    assert rc == 2 and "cannot write to" in capsys.readouterr().err


def test_people_seen_mostly_undetected_are_left_out_with_a_warning_not_an_error():
    """Person 1 walks through 0-59; person 2 is seen in frames 0-4 and 55-59 only (within the gap
    as set), so most of their stretch would be invented: they are left out, person 1 is lifted;
    asked for by id, person 2 is refused with the reason."""
    from common.in_the_wild.people import people_from_detections

    per_frame = {f: [(1.0, body(f, 100))] + ([(1.0, body(0, 600))] if f < 5 or f >= 55 else []) for f in range(60)}
    people, warnings = people_from_detections(per_frame, "clip", max_gap=60, min_frames=5)
    assert [pid for pid, _ in people] == [1]
    assert len(warnings) == 1 and warnings[0].startswith("left out person 2: clip person 2: 50 of 60 frames")
    np.testing.assert_array_equal(people[0][1].frame_ids, np.arange(60))
    with pytest.raises(ValueError, match="50 of 60 frames"):
        people_from_detections(per_frame, "clip", max_gap=60, person=2)
