"""in_the_wild/exports.py: every output format read back and checked against the poses."""
import csv
import json
import os

import numpy as np
import pytest
import torch

from common.geometry.coco import coco_to_h36m
from common.in_the_wild import exports
from common.inference import temporal
from common.in_the_wild.result import VideoDetections, WildResult
from common.in_the_wild.root_depth import default_intrinsics
from common.geometry.skeleton import h36m_skeleton_17

PARENTS = h36m_skeleton_17().parents
W, H = 640, 360


def random_poses(n: int, seed: int = 0) -> np.ndarray:
    """(n, 17, 3) root-relative poses whose bones point anywhere (opposite to the rest pose too)."""
    rng = np.random.default_rng(seed)
    poses = np.zeros((n, 17, 3))
    for j, p in enumerate(PARENTS):
        if p >= 0:
            d = rng.normal(size=(n, 3))
            poses[:, j] = poses[:, p] + 0.3 * d / np.linalg.norm(d, axis=1, keepdims=True)
    poses[0, 2] = poses[0, 1] + (poses[0, 1] - poses[0, 0])           # a bone straight on from its parent's
    poses[1, 12] = poses[1, 11] + [0.28, 0, 0]                        # and one exactly along an axis
    return poses.astype(np.float32)


def make_result(n: int = 6, fps: float = 30.0, with_video: bool = True) -> WildResult:
    rng = np.random.default_rng(1)
    j_agg = random_poses(n)
    hyps = j_agg[:, None, None] + rng.normal(0, 0.01, (n, 2, 3, 17, 3)).astype(np.float32)
    coco = rng.uniform(100, 300, (n, 17, 2)).astype(np.float32)
    conf = rng.uniform(0.5, 1, (n, 17)).astype(np.float32)
    conf[2] = 0                                                       # frame 2: nobody detected, filled in
    traj = np.stack([np.linspace(-0.5, 0.5, n), np.full(n, 0.2), np.linspace(4, 5, n)], 1).astype(np.float32)
    video = None
    if with_video:
        kp = np.full((n + 3, 1, 33, 3), np.nan, np.float32)
        kp[3:, 0] = rng.uniform(0, 300, (n, 33, 3))
        video = VideoDetections("mediapipe", tuple(f"p{i}" for i in range(33)), kp, fps, (W, H))
    t_agg = temporal.fixed_bone_lengths(torch.from_numpy(j_agg + rng.normal(0, 0.02, j_agg.shape).astype(np.float32))
                                        [None, None], PARENTS)[0, 0].numpy()     # steady bones, as T-Agg's
    return WildResult(hypotheses=hyps, poses={"J-Agg": j_agg, "P-Agg": hyps[:, -1].mean(1), "T-Agg": t_agg},
                      trajectory=traj,
                      keypoints_2d=coco,
                      confidence=conf, frame_ids=np.arange(3, 3 + n), intrinsics=default_intrinsics(W, H, 500.0),
                      image_size=(W, H), input_layout="h36m", fps=fps, video=video)


def test_npz_holds_every_array_and_the_detector_keypoints(tmp_path):
    r = make_result()
    exports.write_outputs(r, [tmp_path / "a.npz"])
    d = np.load(tmp_path / "a.npz", allow_pickle=False)
    np.testing.assert_array_equal(d["j_agg"], r.j_agg)
    np.testing.assert_array_equal(d["hypotheses"], r.hypotheses)
    np.testing.assert_array_equal(d["trajectory"], r.trajectory)
    np.testing.assert_array_equal(d["detector_keypoints"], r.video.keypoints)
    assert d["detector_keypoints"].shape == (9, 1, 33, 3) and int(d["video_frames"]) == 9
    assert str(d["detector"]) == "mediapipe" and float(d["fps"]) == 30.0
    assert d["detected"].tolist() == [True, True, False, True, True, True]


def test_json_per_frame_and_joint(tmp_path):
    r = make_result()
    exports.write_outputs(r, [tmp_path / "a.json"])
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["joints"] == h36m_skeleton_17().names and data["fps"] == 30.0
    assert data["camera"]["focal_px"] == pytest.approx([500, 500], rel=1e-5)
    assert data["camera"]["centre_px"] == pytest.approx([320, 180], rel=1e-5)
    uv, conf = coco_to_h36m(r.keypoints_2d, r.confidence)
    assert data["format"] == "d3dp-poses-2" and [p["id"] for p in data["people"]] == [1]
    frames = data["people"][0]["frames"]
    assert [f["frame"] for f in frames] == list(range(3, 9))
    for i, f in enumerate(frames):
        np.testing.assert_allclose(f["joints_3d"], r.poses["T-Agg"][i], atol=1e-6)   # T-Agg by default
        np.testing.assert_allclose(f["root"], r.trajectory[i], atol=1e-6)
        np.testing.assert_allclose(f["joints_2d"], uv[i], atol=0.006)
        np.testing.assert_allclose(f["confidence"], conf[i], atol=6e-4)
        assert f["detected"] == (i != 2) and f["time_s"] == pytest.approx((i + 3) / 30, abs=1e-6)


def test_csv_rows_per_frame_and_joint(tmp_path):
    r = make_result()
    exports.write_outputs(r, [tmp_path / "a.csv"])
    with open(tmp_path / "a.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 * 17 and tuple(rows[0]) == exports.CSV_COLUMNS
    xyz = np.array([[float(row[k]) for k in "xyz"] for row in rows]).reshape(6, 17, 3)
    cam = np.array([[float(row[k]) for k in ("cam_x", "cam_y", "cam_z")] for row in rows]).reshape(6, 17, 3)
    uv = np.array([[float(row["u"]), float(row["v"])] for row in rows]).reshape(6, 17, 2)
    np.testing.assert_allclose(xyz, r.poses["T-Agg"], atol=1e-6)
    np.testing.assert_allclose(cam, r.poses["T-Agg"] + r.trajectory[:, None], atol=1e-6)
    np.testing.assert_allclose(uv, coco_to_h36m(r.keypoints_2d), atol=0.006)
    assert rows[17 * 4 + 10]["name"] == "head" and rows[17 * 4]["frame"] == "7" and rows[0]["person"] == "1"
    assert {row["detected"] for row in rows[34:51]} == {"0"}


# ---------------------------------------------------------------------------- BVH, read back by forward kinematics

def read_bvh(path):
    """A plain BVH reader: names, parent index, offsets, channels per joint; motion (frames, values); frame time."""
    tokens = open(path).read().split()
    names, parents, offsets, channels, stack, i = [], [], [], [], [], 1
    while tokens[i] != "MOTION":
        t = tokens[i]
        if t in ("ROOT", "JOINT"):
            names.append(tokens[i + 1])
            parents.append(stack[-1] if stack else -1)
            i += 2
        elif t == "End":
            names.append(None)
            parents.append(stack[-1])
            channels.append([])
            i += 2
        elif t == "{":
            stack.append(len(names) - 1)
            i += 1
        elif t == "}":
            stack.pop()
            i += 1
        elif t == "OFFSET":
            offsets.append([float(v) for v in tokens[i + 1:i + 4]])
            i += 4
        elif t == "CHANNELS":
            k = int(tokens[i + 1])
            channels.append(tokens[i + 2:i + 2 + k])
            i += 2 + k
        else:
            raise AssertionError(f"unexpected token {t}")
    n = int(tokens[i + 2])
    frame_time = float(tokens[i + 5])
    motion = np.array(tokens[i + 6:], dtype=np.float64).reshape(n, -1)
    return names, parents, np.array(offsets), channels, motion, frame_time


def axis_rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return {"X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def forward_kinematics(parents, offsets, channels, values):
    """World positions (nodes, 3) of one frame."""
    pos, rot, col = np.zeros((len(parents), 3)), np.zeros((len(parents), 3, 3)), 0
    for k, p in enumerate(parents):
        local, translation = np.eye(3), np.zeros(3)
        for ch in channels[k]:
            if ch.endswith("position"):
                translation["XYZ".index(ch[0])] = values[col]
            else:
                local = local @ axis_rotation(ch[0], values[col])
            col += 1
        if p < 0:
            pos[k], rot[k] = offsets[k] + translation, local
        else:
            pos[k], rot[k] = pos[p] + rot[p] @ offsets[k], rot[p] @ local
    return pos


@pytest.mark.parametrize("mode", ["T-Agg", "J-Agg"])
def test_bvh_reproduces_every_bone_direction_and_the_root_motion(tmp_path, mode):
    r = make_result(n=6, fps=25.0)
    r.pose_mode = mode
    exports.write_outputs(r, [tmp_path / "a.bvh"])
    names, parents, offsets, channels, motion, frame_time = read_bvh(tmp_path / "a.bvh")
    assert frame_time == pytest.approx(0.04) and motion.shape[0] == 6
    joint_names = h36m_skeleton_17().names
    node = [names.index(n) for n in joint_names]                      # every Human3.6M joint is a node
    to_bvh = np.diag([1.0, -1.0, -1.0])
    shown = r.poses[mode]
    lengths = r.bone_lengths()                                        # the person's: the median over frames
    child = [j for j, p in enumerate(PARENTS) if p >= 0]
    np.testing.assert_allclose(lengths[child], np.median(np.linalg.norm(shown[:, child] - shown[:, PARENTS[child]],
                                                                        axis=-1), axis=0), rtol=1e-6)
    if mode == "T-Agg":                                               # one length per bone: exactly its own
        np.testing.assert_allclose(np.linalg.norm(shown[:, child] - shown[:, PARENTS[child]], axis=-1),
                                   np.broadcast_to(lengths[child], (6, 16)), atol=1e-5)
    for i in range(6):
        pos = forward_kinematics(parents, offsets, channels, motion[i])[node]   # (17, 3)
        np.testing.assert_allclose(pos[0], to_bvh @ r.trajectory[i], atol=1e-5)  # root motion
        for j, p in enumerate(PARENTS):
            if p < 0:
                continue
            bone = pos[j] - pos[p]
            want = to_bvh @ (shown[i, j] - shown[i, p])
            assert np.linalg.norm(bone) == pytest.approx(lengths[j], abs=1e-5)   # the person's lengths
            cos = bone @ want / np.linalg.norm(bone) / np.linalg.norm(want)
            assert cos > 1 - 1e-6, (i, joint_names[j], cos)


def test_json_and_csv_show_the_mode_asked_for(tmp_path):
    r = make_result()
    r.pose_mode = "j_agg"
    exports.write_outputs(r, [tmp_path / "a.json", tmp_path / "a.csv"])
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["pose"] == "J-Agg" and data["filter"] is None
    np.testing.assert_allclose(data["people"][0]["frames"][1]["joints_3d"], r.j_agg[1], atol=1e-6)
    r.pose_mode = "J-Best"
    with pytest.raises(ValueError, match="unknown pose mode 'J-Best'"):
        r.shown


def test_bvh_default_bone_lengths_are_human36m_averages():
    lengths = dict(zip(h36m_skeleton_17().names, exports.bone_lengths()))
    assert lengths["right_knee"] == pytest.approx(0.445) and lengths["left_elbow"] == pytest.approx(0.28)
    assert lengths["pelvis"] == 0


# ---------------------------------------------------------------------------- all or nothing

def test_several_formats_at_once_and_unknown_suffix_refused_before_writing(tmp_path):
    r = make_result(with_video=False)
    paths = exports.write_outputs(r, [tmp_path / "a.npz", tmp_path / "b.json", tmp_path / "c.csv", tmp_path / "d.bvh"])
    assert all(p.stat().st_size > 100 for p in paths)
    with pytest.raises(ValueError, match=r"unknown format '\.txt'.*\.npz, \.json, \.csv, \.bvh, \.trc, \.c3d"):
        exports.write_outputs(r, [tmp_path / "e.npz", tmp_path / "e.txt"])
    assert not (tmp_path / "e.npz").exists()
    with pytest.raises(ValueError, match="same file twice"):
        exports.check_outputs([tmp_path / "f.json", tmp_path / "f.json"])


def test_a_failing_writer_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    r = make_result()
    old = tmp_path / "a.npz"
    old.write_bytes(b"earlier result")

    def broken(result, path):
        path.write_text("half")
        raise OSError("disk full")

    monkeypatch.setitem(exports.EXPORTERS, ".bvh", broken)
    with pytest.raises(OSError, match="disk full"):
        exports.write_outputs(r, [old, tmp_path / "b.bvh"])
    assert old.read_bytes() == b"earlier result"
    assert sorted(os.listdir(tmp_path)) == ["a.npz"]                  # no temporary file left


def test_unwritable_folder_is_refused_with_the_flag(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(ValueError, match="--output"):
        exports.check_outputs([blocked / "sub" / "a.json"])


# ---------------------------------------------------------------------------- several people

def two_people(tmp_path=None):
    """Person 1 over frames 3..8, person 4 over frames 5..12 (other poses, another root)."""
    from common.in_the_wild.result import PeopleResult

    a = make_result()
    b = make_result(n=8)
    b.poses = {m: p[::-1].copy() for m, p in b.poses.items()}
    b.trajectory = b.trajectory + np.float32([1.0, 0, 2.0])
    b.frame_ids, b.person_id = np.arange(5, 13), 4
    return PeopleResult([a, b], video=a.video)


def test_several_people_one_file_each_for_npz_and_bvh_and_everyone_in_the_others(tmp_path):
    people = two_people()
    written = exports.write_outputs(people, [tmp_path / "v.npz", tmp_path / "v.bvh", tmp_path / "v.json",
                                             tmp_path / "v.csv"])
    assert sorted(p.name for p in written) == ["v.csv", "v.json", "v_person1.bvh", "v_person1.npz",
                                               "v_person4.bvh", "v_person4.npz"]
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in written)
    for person in people:
        d = np.load(tmp_path / f"v_person{person.person_id}.npz")
        assert int(d["person_id"]) == person.person_id
        np.testing.assert_array_equal(d["t_agg"], person.poses["T-Agg"])
        np.testing.assert_array_equal(d["frame_ids"], person.frame_ids)
    data = json.loads((tmp_path / "v.json").read_text())
    assert [p["id"] for p in data["people"]] == [1, 4]
    for listed, person in zip(data["people"], people):
        assert [f["frame"] for f in listed["frames"]] == person.frame_ids.tolist()
        np.testing.assert_allclose([f["joints_3d"] for f in listed["frames"]], person.shown, atol=1e-6)
        np.testing.assert_allclose([f["root"] for f in listed["frames"]], person.trajectory, atol=1e-6)
    with open(tmp_path / "v.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == (6 + 8) * 17
    fourth = [r for r in rows if r["person"] == "4"]
    xyz = np.array([[float(r[k]) for k in "xyz"] for r in fourth]).reshape(8, 17, 3)
    np.testing.assert_allclose(xyz, people.person(4).shown, atol=1e-6)
    assert people.longest.person_id == 4 and people.ids == [1, 4]
    with pytest.raises(ValueError, match=r"no person 2 in this video; people: \[1, 4\]"):
        people.person(2)


def test_several_people_refuse_a_per_person_name_that_is_taken_before_writing(tmp_path):
    people = two_people()
    (tmp_path / "v_person4.npz").mkdir()                              # a folder where person 4's file would go
    with pytest.raises(ValueError, match="v_person4.npz"):
        exports.write_outputs(people, [tmp_path / "v.json", tmp_path / "v.npz"])
    assert sorted(os.listdir(tmp_path)) == ["v_person4.npz"]           # nothing written
