"""benchmarks/real_clip.py: the ground-truth-free measures of lifted real video."""
import numpy as np
import torch

from benchmarks.real_clip import MPI_TO_H36M, acceleration_mm, bone_cv, longest_run, reprojection_px
from common.geometry.camera import image_coordinates, project_to_2d
from common.in_the_wild.root_depth import default_intrinsics


def poses(frames=20, seed=0):
    rng = np.random.default_rng(seed)
    p = np.repeat(rng.normal(0, 0.3, (1, 17, 3)), frames, axis=0)
    return p - p[:, :1]


def test_a_rigid_skeleton_has_no_bone_variation_and_a_stretching_one_has():
    p = poses()
    assert bone_cv(p) < 1e-5                 # %: the one-pass moments (count, sum, sum of squares) keep ~8 digits
    scale = np.linspace(0.9, 1.1, len(p))[:, None, None]            # every bone +-10 %: CV of the ramp
    expected = 100 * scale[:, 0, 0].std() / scale[:, 0, 0].mean()
    assert abs(bone_cv(p * scale) - expected) < 1e-6


def test_acceleration_is_zero_for_steady_motion_and_measures_a_jerk():
    p = poses()
    drift = p + np.linspace(0, 0.2, len(p))[:, None, None] * (np.arange(17) > 0)[None, :, None]
    assert acceleration_mm(drift) < 1e-9                             # constant velocity
    jerk = p.copy()
    jerk[10, 1:] += 0.01                                             # one frame 1 cm off, every joint but the root
    acc = np.zeros(len(p) - 2)
    acc[[8, 10]], acc[9] = np.sqrt(3) * 10, 2 * np.sqrt(3) * 10      # mm: +d, -2d, +d around it, |(1,1,1)|
    assert abs(acceleration_mm(jerk) - acc.mean() * 16 / 17) < 1e-6


def test_reprojection_error_is_zero_for_the_projected_pose_and_counts_pixels():
    p, w, h = poses(), 1280, 720
    traj = np.array([0.1, 0.0, 4.0])[None, None].repeat(len(p), axis=0)
    cam = default_intrinsics(w, h)
    px = image_coordinates(project_to_2d(torch.from_numpy((p + traj).astype(np.float32)),
                                         torch.from_numpy(cam.astype(np.float32))).numpy(), w, h)
    assert reprojection_px(p, traj, px, cam, (w, h)) < 1e-3
    assert abs(reprojection_px(p, traj, px + [3.0, 4.0], cam, (w, h)) - 5.0) < 1e-3


def test_longest_run_and_the_3dhp_joint_map():
    assert longest_run(np.array([1, 1, 0, 1, 1, 1, 0, 1], bool)) == slice(3, 6)
    assert longest_run(np.zeros(3, bool)) == slice(0, 0)
    assert sorted(MPI_TO_H36M) == list(range(17)) and MPI_TO_H36M[0] == 14    # a permutation, pelvis first


def test_held_out_real_motion_is_scored_against_its_true_3d_and_the_best_constant_pose(tmp_path):
    from benchmarks.real_clip import real_motion
    from common.datasets.mocap.motion import Motion
    from common.datasets.mocap.training_set import deal, write_motion_set
    from common.evaluation.metrics import p_mpjpe
    from conftest import tiny_model

    rng = np.random.default_rng(0)
    base = np.abs(rng.normal(0, 0.3, (1, 17, 3))) + [0, 0, 0.5]
    motions = [Motion(name, base + 0.05 * np.sin(np.arange(30) / 5 + i)[:, None, None] * rng.normal(size=(1, 17, 3)),
                      50.0, source=f"{name}.npz") for i, name in enumerate(("train", "test_a", "test_b"))]
    write_motion_set(deal(motions, ["test_*"]), tmp_path, "m")
    r = real_motion(tiny_model(frames=9), tmp_path, "m", hypotheses=2, steps=1)
    assert r["clips"] == 2 and r["frames x views"] == 2 * 30 * 4
    for mode in ("J-Agg", "P-Agg", "T-Agg"):
        assert 0 < r[mode]["P-MPJPE mm"] <= r[mode]["MPJPE mm"] and r[mode]["Accel mm/f^2"] > 0
    assert r["T-Agg"]["bone CV %"] < 0.01 < r["J-Agg"]["bone CV %"]
    from common.datasets.h36m import H36MDataset

    seqs = H36MDataset(tmp_path, "det", "m").sequences(["S9", "S11"])
    truth = torch.from_numpy(np.concatenate([s.pose_3d - s.pose_3d[:, :1] for s in seqs]).astype(np.float32))
    constant = truth.mean(dim=0, keepdim=True).expand(truth.shape)
    assert abs(r["constant pose P-MPJPE mm"] - 1000 * float(p_mpjpe(constant, truth))) < 1e-3


def test_ts5_benchmark_runs_on_the_real_sequence():
    from benchmarks.real_clip import ts5
    from conftest import require_3dhp_sequence, tiny_model

    r = ts5(tiny_model(frames=9), "h36m", require_3dhp_sequence("TS5"), hypotheses=2, steps=1)
    assert r["frames (valid)"] > 0 and r["J-Agg"]["P-MPJPE mm"] > 0 and r["J-Agg"]["bone CV %"] > 0
    assert r["T-Agg"]["accel mm/f^2"] < r["J-Agg"]["accel mm/f^2"]


def test_accel_error_compares_second_differences_with_the_truth_on_valid_frames():
    from benchmarks.real_clip import accel_error_mm

    truth = poses()
    truth[:, 1:] += (0.001 * np.arange(len(truth)) ** 2)[:, None, None]      # true accelerating motion
    assert accel_error_mm(truth.copy(), truth) < 1e-9
    assert accel_error_mm(truth + 0.3, truth) < 1e-9                          # an offset has no acceleration
    jerk = truth.copy()
    jerk[10, 1:] += 0.01
    expected = np.zeros(len(truth) - 2)
    expected[[8, 10]], expected[9] = np.sqrt(3) * 10, 2 * np.sqrt(3) * 10
    assert abs(accel_error_mm(jerk, truth) - expected.mean() * 16 / 17) < 1e-6
    valid = np.ones(len(truth), bool)
    valid[10] = False                                                         # every difference touching frame 10 out
    assert accel_error_mm(jerk, truth, valid) < 1e-9
