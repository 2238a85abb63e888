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
    assert bone_cv(p) < 1e-9
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
