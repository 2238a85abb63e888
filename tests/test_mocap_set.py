"""Real motion in: DeepMimic files and joint-position arrays read into Human3.6M-17 joints, the
repository's real clips, and a folder of motion files turned into a training set in the
Human3.6M file format (prepare_motion.py) that the Human3.6M loader reads back exactly."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.datasets.h36m import H36MDataset, h36m_cameras, skeleton_32_to_17
from common.datasets.mocap import deepmimic
from common.datasets.mocap.motion import ANKLE_HEIGHT, H36M_NAMES, Motion, MotionError, normalized, resample
from common.datasets.mocap.positions import read_positions, save_positions
from common.datasets.mocap.training_set import (DEMO_CLIPS, DEMO_HELD_OUT, TEST_SUBJECTS, TRAIN_SUBJECTS, deal,
                                                ensure_demo_set, pieces, to_32_joints, write_motion_set)
from common.datasets.synthetic import ensure_synthetic, project_to_pixels
from common.geometry.skeleton import h36m_skeleton_17

ROOT = Path(__file__).resolve().parents[1]
PARENTS = h36m_skeleton_17().parents


def _frame(knee=0.0, root=(0.0, 0.85, 0.0)):
    """One DeepMimic frame: every joint at rest (identity quaternions), the right knee bent by `knee`."""
    f = [1 / 30, *root] + [1.0, 0.0, 0.0, 0.0] * 3 + [1.0, 0.0, 0.0, 0.0, knee] + [1.0, 0.0, 0.0, 0.0] * 2 + [0.0] \
        + [1.0, 0.0, 0.0, 0.0, 0.0] + [1.0, 0.0, 0.0, 0.0] * 2 + [0.0]
    assert len(f) == deepmimic.FRAME_VALUES
    return f


def _deepmimic_file(path: Path, frames) -> Path:
    path.write_text(json.dumps({"Loop": "none", "Frames": frames}))
    return path


def test_deepmimic_rest_pose_and_a_bent_knee_in_human36m_axes(tmp_path):
    m = deepmimic.read_deepmimic(_deepmimic_file(tmp_path / "bend.txt", [_frame(), _frame(knee=-np.pi / 2)]))
    assert m.fps == pytest.approx(30.0) and m.joints.shape == (2, 17, 3)
    rest, bent = m.joints
    # the humanoid's y up -> z; its z (to its right) -> -y; x (forward) stays
    np.testing.assert_allclose(rest[0], [0, 0, 0.85], atol=1e-12)
    np.testing.assert_allclose(rest[1], [0, -0.084887, 0.85], atol=1e-12)                  # right hip
    np.testing.assert_allclose(rest[2], [0, -0.084887, 0.85 - 0.421546], atol=1e-12)       # right knee
    np.testing.assert_allclose(rest[3], [0, -0.084887, 0.85 - 0.421546 - 0.40987], atol=1e-12)
    np.testing.assert_allclose(rest[10], [0.02, 0, 0.85 + 0.236151 + 0.223894 + 0.235], atol=1e-12)   # head top
    np.testing.assert_allclose(rest[8], [0, 0, 0.85 + 0.236151 + 0.223894], atol=1e-12)               # thorax
    # the knee bent by -90 degrees about its hinge: the shin points backwards (-x), level with the knee
    np.testing.assert_allclose(bent[3], [-0.40987, -0.084887, 0.85 - 0.421546], atol=1e-12)
    np.testing.assert_allclose(bent[6], rest[6], atol=1e-12)                                    # left leg unmoved


def test_deepmimic_errors_name_the_file(tmp_path):
    bad = tmp_path / "short.txt"
    bad.write_text(json.dumps({"Frames": [[0.1, 0, 0, 0]]}))
    with pytest.raises(MotionError, match=r"short\.txt: frames of shape \(1, 4\).*44 values"):
        deepmimic.read_deepmimic(bad)
    (tmp_path / "text.txt").write_text("not json")
    with pytest.raises(MotionError, match=r"text\.txt: not a DeepMimic motion file"):
        deepmimic.read_deepmimic(tmp_path / "text.txt")


def test_normalised_motion_is_on_the_floor_at_50_fps():
    t = np.arange(31) / 30.0
    joints = np.zeros((31, 17, 3))
    joints[..., 0] = t[:, None]                                  # moving forward at 1 m/s
    joints[..., 2] = 0.5 + np.arange(17) * 0.01
    m = normalized(Motion("m", joints, 30.0))
    assert m.fps == 50.0 and len(m.joints) == 51                 # 1 s at 50 fps, both ends kept
    assert m.joints[:, [3, 6], 2].min() == pytest.approx(ANKLE_HEIGHT)
    np.testing.assert_allclose(m.joints[:, 0, 0], np.arange(51) / 50.0, atol=1e-12)   # linear in time
    np.testing.assert_allclose(resample(joints, 30.0, 30.0), joints)


def test_motion_refuses_nan_and_wrong_shapes():
    with pytest.raises(MotionError, match="NaN"):
        Motion("m", np.full((3, 17, 3), np.nan), 50.0)
    with pytest.raises(MotionError, match=r"shape \(3, 16, 3\)"):
        Motion("m", np.zeros((3, 16, 3)), 50.0)


def test_positions_files_reorder_by_name_convert_units_and_axes(tmp_path):
    rng = np.random.default_rng(0)
    joints = rng.normal(size=(5, 17, 3))
    order = rng.permutation(17)
    np.savez(tmp_path / "named.npz", joints=joints[:, order] * 100, joint_names=np.array(H36M_NAMES)[order], fps=25.0)
    m = read_positions(tmp_path / "named.npz", units="cm")
    np.testing.assert_allclose(m.joints, joints, atol=1e-12)
    assert m.fps == 25.0
    np.save(tmp_path / "yup.npy", joints)
    y = read_positions(tmp_path / "yup.npy", fps=10.0, up="y-up").joints
    np.testing.assert_allclose(y[..., [0, 1, 2]], np.stack([joints[..., 0], -joints[..., 2], joints[..., 1]], -1))
    with pytest.raises(MotionError, match=r"yup\.npy: no frame rate.*--fps"):
        read_positions(tmp_path / "yup.npy")
    np.savez(tmp_path / "few.npz", joints=joints[:, :5], joint_names=np.array(H36M_NAMES[:5]), fps=25.0)
    with pytest.raises(MotionError, match=r"few\.npz: joint_names lacks \['left_knee', 'left_ankle'"):
        read_positions(tmp_path / "few.npz")
    m_saved = tmp_path / "saved.npz"
    save_positions(Motion("s", joints, 50.0), m_saved)
    np.testing.assert_allclose(read_positions(m_saved).joints, joints, atol=5e-4)    # whole millimetres


def test_the_repositorys_real_clips_are_rigid_people_on_the_floor():
    files = sorted(DEMO_CLIPS.glob("*.npz"))
    assert len(files) == 26 and (DEMO_CLIPS / "LICENSE").read_text().startswith("MIT License")
    seconds = 0.0
    for f in files:
        m = read_positions(f)
        seconds += m.seconds
        bones = np.linalg.norm(m.joints[:, 1:] - m.joints[:, PARENTS[1:]], axis=-1)
        assert m.fps == 50.0
        assert m.joints[:, [3, 6], 2].min() == pytest.approx(ANKLE_HEIGHT, abs=1e-3), f.name
        assert np.median(bones[:, 1]) == pytest.approx(0.4215, abs=0.002), f.name       # the thigh
        assert (bones.std(0) / bones.mean(0)).max() < 0.06, f.name                      # rigid bones
    assert 260 < seconds < 280
    walk = read_positions(DEMO_CLIPS / "walk.npz").joints
    assert (walk[:, 10, 2] - walk[:, 0, 2]).min() > 0.6                                 # the head above the pelvis


def _motion(name, frames=120, fps=50.0, x0=0.0):
    t = np.arange(frames) / fps
    base = read_positions(DEMO_CLIPS / "walk.npz").joints[0]
    joints = np.repeat(base[None], frames, axis=0) + np.stack([x0 + 0.5 * t, 0 * t, 0 * t], -1)[:, None]
    return Motion(name, joints, fps, source=f"/in/{name}.npz")


def test_long_motions_are_cut_and_recentred_and_files_are_dealt_to_subjects():
    long = normalized(_motion("long", frames=1300, x0=30.0))         # 26 s, far from the origin
    parts = pieces(long, max_seconds=10.0)
    assert [len(p) for p in parts] == [500, 500, 300]
    for p in parts:
        np.testing.assert_allclose(p[:, 0, :2].mean(0), 0.0, atol=1e-9)
    short = normalized(_motion("short", frames=1100))
    assert [len(p) for p in pieces(short, 10.0)] == [500, 600]          # a 2-s tail joins the piece before
    takes = deal([_motion(f"m{i}") for i in range(7)] + [_motion("held")], ["held*"])
    assert [t.subject for t in takes] == [*TRAIN_SUBJECTS, "S1", "S5", "S9"]
    assert takes[-1].action == "Mocap held"
    with pytest.raises(MotionError, match=r"--held-out nope\* matches no motion file"):
        deal([_motion("a")], ["nope*"])


def test_the_set_reads_back_exactly_through_the_human36m_loader(tmp_path):
    takes = deal([_motion("walk_a"), _motion("walk_b", frames=60)], ["walk_b"])
    paths = write_motion_set(takes, tmp_path, "mocap", seed=1)
    d3 = to_32_joints(takes[0].joints)
    assert d3.shape[1] == 32
    gt = H36MDataset(tmp_path, "gt", "mocap")
    seqs = gt.sequences(["S1"])
    assert [(s.subject, s.action, s.camera) for s in seqs] == [("S1", "Mocap walk_a", c) for c in range(4)]
    camera = h36m_cameras("S1")[2]
    np.testing.assert_allclose(gt.positions_2d["S1"]["Mocap walk_a"][2],
                               project_to_pixels(takes[0].joints.astype(np.float32), camera), atol=1e-3)
    kept = skeleton_32_to_17()[1]
    np.testing.assert_allclose(np.asarray(gt.positions_3d["S1"]["Mocap walk_a"])[:, kept], takes[0].joints, atol=1e-6)
    det = H36MDataset(tmp_path, "det", "mocap").positions_2d["S9"]["Mocap walk_b"][0]
    clean = gt.positions_2d["S9"]["Mocap walk_b"][0]
    assert 0.5 < np.abs(det - clean).mean() < 30                               # detector-like noise, pixels
    # an existing set is never replaced: the files keep their bytes
    before = {p: p.read_bytes() for p in paths.values()}
    with pytest.raises(Exception, match="already in .*choose another --name"):
        write_motion_set(takes[:1], tmp_path, "mocap")
    assert {p: p.read_bytes() for p in paths.values()} == before


def test_merge_adds_the_synthetic_subjects(tmp_path):
    ensure_synthetic(tmp_path, frames_per_sequence=30, actions=("Walking",), subjects=("S1", "S9"))
    write_motion_set(deal([_motion("walk")], []), tmp_path, "both", merge="synthetic")
    both = H36MDataset(tmp_path, "det", "both")
    assert both.actions("S1") == ["Walking", "Mocap walk"] and both.actions("S9") == ["Walking"]
    with pytest.raises(Exception, match="--merge nothing: data_3d_nothing.npz"):
        write_motion_set(deal([_motion("walk")], []), tmp_path, "other", merge="nothing")


def test_prepare_motion_command(tmp_path):
    folder = tmp_path / "motion"
    (folder / "sub").mkdir(parents=True)
    _deepmimic_file(folder / "sub" / "stand.txt", [_frame(root=(0.0, 0.85, 0.01 * i)) for i in range(40)])
    save_positions(_motion("walk"), folder / "walk.npz")
    cmd = [sys.executable, str(ROOT / "prepare_motion.py"), str(folder), "--data-dir", str(tmp_path / "data"),
           "--name", "lab", "--held-out", "stand*"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2 motion files -> 2 sequences: 2.4 s for training" in done.stdout
    lab = H36MDataset(tmp_path / "data", "det", "lab")
    assert lab.actions("S1") == ["Mocap walk"] and lab.actions("S9") == ["Mocap stand"]
    # a bad file: one line naming it, nothing written
    (folder / "broken.txt").write_text("{")
    again = subprocess.run(cmd[:-4] + ["--name", "lab2"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "broken.txt" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert not list((tmp_path / "data").glob("*lab2*"))


def test_the_demo_set_is_synthetic_plus_real_clips_with_whole_clips_held_out(tmp_path):
    ensure_synthetic(tmp_path, frames_per_sequence=30, actions=("Walking",))
    assert ensure_demo_set(tmp_path, "demo", "synthetic")
    demo = H36MDataset(tmp_path, "det", "demo")
    held = {a for s in TEST_SUBJECTS for a in demo.actions(s) if a.startswith("Mocap")}
    trained = {a for s in TRAIN_SUBJECTS for a in demo.actions(s) if a.startswith("Mocap")}
    assert {a.split(" ")[1] for a in held} == set(DEMO_HELD_OUT)
    assert not {a.split(" ")[1] for a in trained} & set(DEMO_HELD_OUT)
    stamp = (tmp_path / "data_demo_motion.json").read_text()
    mtime = (tmp_path / "data_3d_demo.npz").stat().st_mtime_ns
    assert ensure_demo_set(tmp_path, "demo", "synthetic")                      # up to date: not rewritten
    assert (tmp_path / "data_3d_demo.npz").stat().st_mtime_ns == mtime
    ensure_synthetic(tmp_path, frames_per_sequence=20, actions=("Walking",))    # another synthetic set: rebuilt
    assert ensure_demo_set(tmp_path, "demo", "synthetic")
    assert (tmp_path / "data_demo_motion.json").read_text() != stamp
    assert len(H36MDataset(tmp_path, "det", "demo").positions_3d["S1"]["Walking"]) == 20
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    ensure_synthetic(foreign, frames_per_sequence=20, actions=("Walking",), name="demo")   # a user's own 'demo' set
    before = (foreign / "data_3d_demo.npz").read_bytes()
    with pytest.raises(Exception, match="not the demo's own set"):
        ensure_demo_set(foreign, "demo", "synthetic")
    assert (foreign / "data_3d_demo.npz").read_bytes() == before


def test_the_demo_flags_write_and_choose_the_demo_set(tmp_path, monkeypatch, capsys):
    from common.cli import h36m
    from common.datasets.mocap import training_set
    from common.run.arguments import build_parser

    args = build_parser().parse_args(["--demo", "--data-dir", str(tmp_path / "a")])
    h36m.apply_demo(args)
    assert args.dataset == "demo" and args.epochs == 12
    assert {a.split(" ")[1] for a in H36MDataset(tmp_path / "a", "det", "demo").actions("S11") if a.startswith("Mocap")}
    monkeypatch.setattr(training_set, "DEMO_CLIPS", tmp_path / "absent")           # an installed package: no clips
    args = build_parser().parse_args(["--demo", "--data-dir", str(tmp_path / "b")])
    h36m.apply_demo(args)
    assert args.dataset == "synthetic" and "trains on synthetic motion alone" in capsys.readouterr().out
    assert not (tmp_path / "b" / "data_3d_demo.npz").exists()
