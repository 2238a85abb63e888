"""T-Agg (common.inference.temporal and its mode) and the motion metrics of the reports."""
import itertools

import numpy as np
import pytest
import torch

from common.datasets.mpi_inf_3dhp import LAYOUT as MPI_LAYOUT
from common.evaluation import metrics as M
from common.inference import aggregation as agg
from common.inference import temporal


def candidates(b=2, k=2, h=4, f=9, j=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    walk = torch.cumsum(0.02 * torch.randn(b, k, h, f, j, 3, generator=g), dim=3)     # smooth-ish hypotheses
    hyps = 0.25 * torch.randn(b, k, h, 1, j, 3, generator=g) + walk
    hyps[..., 0, :] = 0
    x2d = 0.2 * torch.randn(b, f, j, 2, generator=g)
    traj = torch.zeros(b, f, 1, 3)
    traj[..., 2] = 4.0 + torch.rand(b, f, 1, generator=g)
    cam = torch.tensor([1.15, 1.15, 0.01, -0.02, 0, 0, 0, 0, 0]).repeat(b, 1)
    return agg.Candidates(hyps, None, x2d, traj, cam)


def path_cost(hyps, dist, scale, lam, path):
    """The objective of temporal.joint_paths for one (clip, iteration, joint): hyps (H, F, 3)."""
    cost = sum(float(dist[p, t]) for t, p in enumerate(path))
    for t in range(1, len(path)):
        shared = (hyps[:, t] - hyps[:, t - 1]).mean(dim=0)
        step = hyps[path[t], t] - hyps[path[t - 1], t - 1] - shared
        cost += lam * float(scale[t]) * float(torch.linalg.vector_norm(step))
    return cost


def test_joint_paths_are_the_cheapest_paths_found_by_enumerating_all_of_them():
    c = candidates(b=1, k=2, h=3, f=6, j=3)
    dist = agg.reprojection_distances(c)
    scale = temporal.jump_scale(c.traj, c.cam)
    for lam in (0.3, 1.0, 4.0):
        paths = temporal.joint_paths(c.hyps, dist, scale, lam)
        for k in range(2):
            for j in range(3):
                hyps, d = c.hyps[0, k, :, :, j], dist[0, k, :, :, j]
                best = min(path_cost(hyps, d, scale[0], lam, p) for p in itertools.product(range(3), repeat=6))
                found = path_cost(hyps, d, scale[0], lam, paths[0, k, :, j].tolist())
                assert found == pytest.approx(best, rel=1e-5)


def test_without_the_switch_cost_the_path_is_j_agg_and_with_a_large_one_it_never_switches():
    c = candidates()
    j_agg_choice = agg.choose_j_agg(c)
    assert torch.equal(agg.choose_t_agg(c, switch_weight=0.0, sigma=0, bones=False), j_agg_choice)
    switches = lambda p: int((p[:, :, 1:] != p[:, :, :-1]).sum())   # noqa: E731
    assert switches(j_agg_choice) > 20
    some = agg.choose_t_agg(c, switch_weight=1.0, sigma=0, bones=False)
    assert 0 < switches(some) < switches(j_agg_choice)
    assert switches(agg.choose_t_agg(c, switch_weight=1e4, sigma=0, bones=False)) == 0


@pytest.mark.parametrize("parents", [agg.H36M_PARENTS, MPI_LAYOUT.parents])
def test_fixed_bone_lengths_give_each_bone_its_median_length_along_its_own_direction(parents):
    c = candidates()
    poses = agg.poses_of(c.hyps, agg.choose_j_agg(c))
    root = list(parents).index(-1)
    poses = poses - poses[..., root:root + 1, :]
    fixed = temporal.fixed_bone_lengths(poses, parents)
    before, after = temporal.bone_lengths(poses, parents), temporal.bone_lengths(fixed, parents)
    for k in range(poses.shape[1]):
        median = before[:, k].flatten(0, 1).median(dim=0).values
        assert torch.allclose(after[:, k], median.expand_as(after[:, k]), atol=1e-6)
    assert before.std(dim=2).mean() > 0.01                      # the input's bones did vary
    child, parent = temporal._chain(tuple(parents))
    unit = lambda p: torch.nn.functional.normalize(p[..., child, :] - p[..., parent, :], dim=-1)   # noqa: E731
    assert torch.allclose(unit(fixed), unit(poses), atol=1e-5)
    assert torch.equal(fixed[..., root, :], poses[..., root, :])


def test_t_agg_is_registered_as_a_lifting_mode_and_uses_the_skeleton_it_is_given():
    assert "T-Agg" in agg.LIFTING_MODES and agg.SHOWN_MODE == "T-Agg"
    assert agg.lifting_mode("t_agg") == agg.lifting_mode("t-agg") == "T-Agg"
    with pytest.raises(ValueError, match="choose from J-Agg, P-Agg, T-Agg"):
        agg.lifting_mode("J-Best")
    c = candidates()
    poses = agg.aggregate(c.hyps, None, c.x2d, c.traj, c.cam, parents=MPI_LAYOUT.parents)
    assert set(poses) == set(agg.LIFTING_MODES)
    lengths = temporal.bone_lengths(poses["T-Agg"], MPI_LAYOUT.parents)
    assert float(lengths.std(dim=(0, 2)).max()) < 1e-6           # one length per bone and iteration
    h36m = temporal.bone_lengths(poses["T-Agg"], agg.H36M_PARENTS)
    assert float(h36m.std(dim=(0, 2)).max()) > 1e-3              # not Human3.6M's tree: its bones vary


def test_joint_paths_leave_a_hypothesis_that_jitters_for_the_ones_that_move_together():
    """Four hypotheses explain the 2D about equally; three walk steadily and one jitters in depth
    around them: J-Agg follows the jittery one (a hair nearer the 2D), T-Agg a steady one."""
    f = 8
    hyps = torch.zeros(1, 1, 4, f, 1, 3)
    hyps[..., 0] = 0.05 * torch.arange(f, dtype=torch.float32)[:, None]   # all walk along x
    hyps[0, 0, 0, ::2, 0, 2] += 0.3                              # the first jitters in depth
    dist = torch.full((1, 1, 4, f, 1), 1e-4)
    dist[0, 0, 0] = 0.0
    scale = torch.ones(1, f)
    assert (dist.argmin(dim=2) == 0).all()
    path = temporal.joint_paths(hyps, dist, scale, 1.0)
    chosen = agg.gather(hyps, path)
    assert torch.equal(chosen[..., 2], torch.zeros_like(chosen[..., 2]))      # never the jittered depth
    assert (path[..., ::2, :] != 0).all()                        # (at odd frames hypothesis 0 is one of them)
    jagg = agg.gather(hyps, dist.argmin(dim=2))
    assert float(jagg[..., 2].abs().max()) == pytest.approx(0.3)


# ---------------------------------------------------------------------------- motion metrics

def test_accel_and_velocity_errors_of_known_motions():
    t = torch.arange(10, dtype=torch.float64)
    gt = torch.zeros(1, 10, 2, 3, dtype=torch.float64)
    pred = gt.clone()
    pred[..., 0] = 0.5 * 0.004 * t[:, None] ** 2              # constant acceleration 0.004 m/frame^2 along x
    assert float(M.accel_error(pred, gt)) == pytest.approx(0.004)
    shifted = gt + torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)     # a constant offset: no motion error
    assert float(M.accel_error(shifted, gt)) == pytest.approx(0.0) and float(M.mpjve(shifted, gt)) == pytest.approx(0)
    w = torch.ones(1, 10, dtype=torch.float64)
    assert float(M.window_motion_errors(pred[:, None], gt, w, 2)) == pytest.approx(0.004)
    w[0, 5] = 0                                                 # differences touching frame 5 do not count
    jolt = pred.clone()
    jolt[0, 5, 0, 0] += 1.0
    assert float(M.window_motion_errors(jolt[:, None], gt, w, 2)) == pytest.approx(0.004)
    assert float(M.window_motion_errors(jolt[:, None], gt, torch.ones_like(w), 2)) > 0.1


def test_bone_variation_is_the_mean_coefficient_of_variation_of_the_bones():
    poses = torch.zeros(1, 1, 4, 17, 3, dtype=torch.float64)
    child, parent = temporal._chain(agg.H36M_PARENTS)
    for i, (c, p) in enumerate(zip(child, parent)):
        poses[..., c, :] = poses[..., p, :] + torch.tensor([0.0, 0.0, 0.1])
    stretched = poses.clone()
    stretched[0, 0, ::2, 3, 2] += torch.tensor([0.1, 0.1])       # the right shin: 0.2 m twice, 0.1 m twice
    w = torch.ones(1, 4)
    assert M.bone_variation(M.bone_moments(poses, w).numpy())[0] == pytest.approx(0.0, abs=1e-9)
    cv = M.bone_variation(M.bone_moments(stretched, w).numpy())[0]
    assert cv == pytest.approx((0.05 / 0.15) / 16)               # std 0.05, mean 0.15, one bone of 16


def test_bone_moments_add_up_over_groups():
    c = candidates(b=4)
    poses = agg.poses_of(c.hyps, agg.choose_j_agg(c))
    w = torch.rand(4, poses.shape[2])
    whole = M.bone_moments(poses, w)
    parts = M.bone_moments(poses[:2], w[:2]) + M.bone_moments(poses[2:], w[2:])
    assert torch.allclose(whole, parts)


def test_smoothing_keeps_straight_motion_and_removes_frame_to_frame_jitter():
    f = 30
    t = torch.arange(f, dtype=torch.float64)
    line = torch.zeros(1, 1, f, 2, 3, dtype=torch.float64)
    line[..., 0] = 0.01 * t[:, None]                                # constant velocity
    assert torch.allclose(temporal.smooth_over_frames(line, 1.5)[:, :, 5:-5], line[:, :, 5:-5], atol=1e-12)
    jitter = line.clone()
    jitter[:, :, ::2, :, 1] += 0.02
    smoothed = temporal.smooth_over_frames(jitter, 1.5)
    accel = lambda p: float(torch.diff(p, n=2, dim=2)[:, :, 4:-4].abs().max())   # noqa: E731  (inside the clip)
    assert accel(smoothed) < 0.05 * accel(jitter)
    assert torch.equal(temporal.smooth_over_frames(jitter, 0), jitter)
    one = temporal.smooth_over_frames(jitter[:, :, :1], 1.5)       # a single frame stays as it is
    assert torch.equal(one, jitter[:, :, :1])


def test_t_agg_is_smoother_than_j_agg_with_steady_bones():
    c = candidates(b=2, k=1, h=5, f=27)
    j = agg.poses_of(c.hyps, agg.choose_j_agg(c))
    t = agg.choose_t_agg(c)
    accel = lambda p: float(torch.diff(p, n=2, dim=2).norm(dim=-1).mean())   # noqa: E731
    assert accel(t) < 0.3 * accel(j)
    lengths = temporal.bone_lengths(t, agg.H36M_PARENTS)
    assert float(lengths.std(dim=(0, 2)).max()) < 1e-6


def test_a_mode_registered_at_run_time_reaches_lifting_and_the_report(monkeypatch):
    """What the ablation benchmark and a user comparing variants rely on."""
    from functools import partial

    from common.in_the_wild.lifting import aggregate_without_ground_truth

    monkeypatch.setitem(agg.MODES, "Smooth only", partial(agg.choose_t_agg, bones=False))
    assert "Smooth only" in agg.lifting_modes() and "Smooth only" not in agg.LIFTING_MODES
    assert agg.lifting_mode("smooth only") == "Smooth only"                  # --pose-mode can name it
    g = torch.Generator().manual_seed(3)
    hyps = (0.2 * torch.randn(12, 2, 3, 17, 3, generator=g)).numpy()
    hyps[..., 0, :] = 0
    target = (0.1 * torch.randn(12, 17, 2, generator=g)).numpy()
    cam = np.array([1.15, 1.15, 0, 0, 0, 0, 0, 0, 0], np.float32)
    poses, _ = aggregate_without_ground_truth(hyps, target, cam)
    assert set(poses) == {"J-Agg", "P-Agg", "T-Agg", "Smooth only"}
    assert not np.allclose(poses["Smooth only"], poses["T-Agg"])
    lengths = temporal.bone_lengths(torch.from_numpy(poses["T-Agg"]).permute(1, 0, 2, 3)[None], agg.H36M_PARENTS)
    assert float(lengths.std(dim=2).max()) < 1e-5
