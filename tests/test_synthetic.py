"""Synthetic Human3.6M generator: format, determinism, geometry, caching."""
import numpy as np
import pytest

from common.datasets.h36m import H36MDataset, skeleton_32_to_17
from common.datasets.synthetic import (DEFAULT_ACTIONS, METADATA, STYLES, SUBJECTS, ensure_synthetic,
                                       subject_bones, write_synthetic_h36m)
from common.geometry.skeleton import h36m_metadata

SMALL = dict(frames_per_sequence=30, subjects=("S1", "S11"), actions=("Walking", "Sitting 1", "Greeting"))


def load(path, key):
    return np.load(path, allow_pickle=True)[key].item()


def test_files_have_the_human36m_layout(tmp_path):
    paths = write_synthetic_h36m(tmp_path, name="fmt", seed=1, **SMALL)
    assert [p.name for p in paths.values()] == ["data_3d_fmt.npz", "data_2d_fmt_gt.npz", "data_2d_fmt_det.npz"]
    pos3d = load(paths["3d"], "positions_3d")
    assert list(pos3d) == ["S1", "S11"] and list(pos3d["S1"]) == list(SMALL["actions"])
    for kind in ("gt", "det"):
        pos2d = load(paths[kind], "positions_2d")
        assert load(paths[kind], "metadata") == METADATA
        for s in pos3d:
            for a in pos3d[s]:
                assert pos3d[s][a].shape == (30, 32, 3) and pos3d[s][a].dtype == np.float32
                assert len(pos2d[s][a]) == 4
                assert all(v.shape == (30, 17, 2) and v.dtype == np.float32 for v in pos2d[s][a])


def test_default_set_covers_all_subjects_and_known_action_groups():
    assert SUBJECTS == ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
    assert all(a.split(" ")[0] in STYLES for a in DEFAULT_ACTIONS)


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    a = write_synthetic_h36m(tmp_path / "a", seed=5, **SMALL)
    b = write_synthetic_h36m(tmp_path / "b", seed=5, **SMALL)
    c = write_synthetic_h36m(tmp_path / "c", seed=6, **SMALL)
    for key in a:
        assert a[key].read_bytes() == b[key].read_bytes()
    assert not np.allclose(load(a["3d"], "positions_3d")["S1"]["Walking"],
                           load(c["3d"], "positions_3d")["S1"]["Walking"])


def test_2d_lies_inside_the_image(tmp_path):
    paths = write_synthetic_h36m(tmp_path, seed=2, frames_per_sequence=150, subjects=SUBJECTS,
                                 actions=tuple(STYLES))
    for kind in ("gt", "det"):
        for views in load(paths[kind], "positions_2d").values():
            for view in views.values():
                for v in view:
                    assert v.min() >= 0 and v.max() <= 1000


def test_bone_lengths_are_constant_and_human36m_like(tmp_path):
    paths = write_synthetic_h36m(tmp_path, seed=4, **SMALL)
    skeleton, kept = skeleton_32_to_17()
    names = h36m_metadata()["skeleton_17"]["names"]
    reference = h36m_metadata()["approximate_bone_lengths_mm_17"]
    for subject, actions in load(paths["3d"], "positions_3d").items():
        bones = subject_bones(4, subject)
        for pos in actions.values():
            pos = pos[:, kept]
            for child, parent in skeleton.bones():
                length = np.linalg.norm(pos[:, child] - pos[:, parent], axis=-1)  # (N,) metres
                assert np.ptp(length) < 1e-5
                assert length[0] == pytest.approx(bones[names[child]], abs=1e-5)
                assert 0.88 < length[0] * 1000 / reference[names[child]] < 1.12


def test_motion_walks_through_the_volume_and_sits_down(tmp_path):
    paths = write_synthetic_h36m(tmp_path, seed=0, **SMALL)
    pos = load(paths["3d"], "positions_3d")["S1"]
    walked = np.linalg.norm(pos["Walking"][-1, 0, :2] - pos["Walking"][0, 0, :2])
    assert walked > 0.4  # 0.6 s at >= 1 m/s along a curved path
    assert pos["Sitting 1"][:, 0, 2].max() < pos["Walking"][:, 0, 2].min() - 0.25  # pelvis on a chair


def test_detections_are_noisy_ground_truth(tmp_path):
    paths = write_synthetic_h36m(tmp_path, seed=0, **SMALL)
    gt, det = load(paths["gt"], "positions_2d"), load(paths["det"], "positions_2d")
    err = np.linalg.norm(gt["S11"]["Greeting"][2] - det["S11"]["Greeting"][2], axis=-1)  # pixels
    assert 1 < np.median(err) < 6


def test_synthetic_files_load_with_the_h36m_loader(tmp_path):
    write_synthetic_h36m(tmp_path, name="syn", seed=0, **SMALL)
    seqs = H36MDataset(tmp_path, "det", "syn").sequences(["S11"])
    assert len(seqs) == 3 * 4 and all(np.isfinite(s.pose_2d).all() for s in seqs)


def test_ensure_synthetic_generates_once_and_again_when_options_change(tmp_path):
    paths = ensure_synthetic(tmp_path, name="demo", **SMALL)
    stamp = paths["3d"].stat().st_mtime_ns
    assert ensure_synthetic(tmp_path, name="demo", **SMALL) == paths
    assert paths["3d"].stat().st_mtime_ns == stamp
    ensure_synthetic(tmp_path, name="demo", **{**SMALL, "frames_per_sequence": 20})
    assert load(paths["3d"], "positions_3d")["S1"]["Walking"].shape[0] == 20


def test_jumping_leaves_the_floor_and_stretching_crosses_and_raises_the_arms():
    from common.datasets.synthetic.motion import (HEAD, L_ANKLE, L_SHOULDER, L_WRIST, R_ANKLE, R_SHOULDER,
                                                  R_WRIST, THORAX, animate)

    bones = subject_bones(0, "S1")
    jump = animate(STYLES["Jumping"], bones, 150, np.random.default_rng(1))
    feet = jump[:, [L_ANKLE, R_ANKLE], 2].min(axis=1)                 # lower ankle above the floor, m
    assert feet.min() == pytest.approx(0.08 * bones["scale"], abs=1e-3)   # standing phases
    assert feet.max() > 0.15                                              # both feet in the air
    assert (feet > feet.min() + 0.05).mean() > 0.15                       # repeatedly, not once
    walk = animate(STYLES["Walking"], bones, 150, np.random.default_rng(1))
    assert np.ptp(walk[:, [L_ANKLE, R_ANKLE], 2].min(axis=1)) < 1e-4      # walkers keep a foot down

    crossed = overhead = 0
    for seed in range(6):
        p = animate(STYLES["Stretching"], bones, 150, np.random.default_rng(seed))
        across = p[:, L_SHOULDER] - p[:, R_SHOULDER]                       # body's left direction
        side = lambda joint: ((p[:, joint] - p[:, THORAX]) * across).sum(-1)   # > 0: on the left
        crossed += ((side(L_WRIST) < 0) & (side(R_WRIST) > 0)).sum()          # both wrists across
        overhead += (np.maximum(p[:, L_WRIST, 2], p[:, R_WRIST, 2]) > p[:, HEAD, 2]).sum()   # a hand up
    assert crossed > 30 and overhead > 30


def test_reaching_stoops_kneeling_kneels_and_floor_sits_and_lies_on_the_floor():
    """The poses of real test sets that standing motion lacks: the torso down to horizontal with
    the legs almost straight, a knee on the floor, the seat on the floor and lying back."""
    from common.datasets.synthetic.motion import (HEAD, L_ANKLE, L_KNEE, PELVIS, R_ANKLE, R_KNEE, THORAX,
                                                  animate)

    bones = subject_bones(0, "S1")

    def run(style, seeds=range(6)):
        return np.concatenate([animate(STYLES[style], bones, 150, np.random.default_rng(s)) for s in seeds])

    def torso_tilt(p):                          # degrees from upright
        v = p[:, THORAX] - p[:, PELVIS]
        return np.degrees(np.arccos(v[:, 2] / np.linalg.norm(v, axis=1)))

    def knee_angle(p):                          # 180: straight
        a, b = p[:, 1] - p[:, R_KNEE], p[:, R_ANKLE] - p[:, R_KNEE]
        return np.degrees(np.arccos((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)))

    reach = run("Reaching")
    stooped = torso_tilt(reach) > 70
    assert stooped.mean() > 0.1 and np.median(knee_angle(reach[stooped])) > 135   # bent over, legs nearly straight
    kneel = run("Kneeling")
    knee_down = np.minimum(kneel[:, L_KNEE, 2], kneel[:, R_KNEE, 2]) < 0.06
    assert knee_down.mean() > 0.2 and kneel[knee_down, PELVIS, 2].min() > 0.35   # on the knees, upright thighs
    floor = run("Floor")
    assert floor[:, PELVIS, 2].max() < 0.35                                    # sitting or lying on the floor
    lying = torso_tilt(floor) > 70
    assert lying.mean() > 0.05 and floor[lying, HEAD, 2].max() < 0.45          # lying back, head near the floor
    kept = skeleton_32_to_17()[1]
    for p in (reach, kneel, floor):                                            # no joint below the floor
        assert p[:, kept, 2].min() > -1e-6 and p[:, [L_ANKLE, R_ANKLE], 2].min() > 0.05


def test_detection_noise_wanders_slowly_and_grows_with_the_person():
    from common.datasets.h36m import h36m_cameras
    from common.datasets.synthetic import detections

    camera = h36m_cameras("S1")[0]
    t = np.arange(200)[:, None, None]
    person = np.concatenate([np.full((200, 16, 2), 300.0), np.full((200, 1, 2), 700.0)], axis=1) + 0 * t
    err_big = detections(person, camera, np.random.default_rng(0)) - person          # 400 px tall
    small = 500 + (person - 500) / 4                                                 # 100 px tall
    err_small = detections(small, camera, np.random.default_rng(0)) - small
    assert np.abs(err_small).mean() < 0.35 * np.abs(err_big).mean()
    # much of the error is a slow offset: consecutive frames' errors are correlated
    a, b = err_big[1:].ravel(), err_big[:-1].ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.4                             # white jitter alone: 0
