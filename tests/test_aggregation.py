"""Aggregation modes: the authors' J-Agg poses and each mode's selection rule."""
import torch

from common.inference.aggregation import AGGREGATION_MODES, aggregate, j_agg, j_best, p_agg, p_best, reproject
from common.geometry.camera import project_to_2d
from common.evaluation.metrics import aggregation_errors, mpjpe


def test_reprojection_and_j_agg_match_authors(fixture_a):
    _, v, _ = fixture_a
    assert (reproject(v["pred_for_metrics"], v["traj"], v["cam"]) - v["reproj_2d"]).abs().max() < 1e-5
    pose, choice = j_agg(v["pred_for_metrics"], v["inputs_2d"], v["traj"], v["cam"])
    assert (pose - v["j_agg_pose"]).abs().max() < 1e-5
    b, k, h, f, j, _ = v["pred_for_metrics"].shape
    assert choice.shape == (b, k, f, j) and int(choice.max()) < h


def _setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    gt = 0.3 * torch.randn(2, 3, 17, 3, generator=g)
    hyps = gt[:, None, None] + 0.05 * torch.randn(2, 2, 4, 3, 17, 3, generator=g)
    return gt, hyps


def test_j_agg_picks_the_hypothesis_that_reprojects_onto_the_input():
    gt, hyps = _setup()
    traj = torch.tensor([0.1, -0.2, 4.5]).expand(2, 3, 1, 3)
    cam = torch.tensor([2.3, 2.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]).expand(2, 9)
    hyps[:, :, 2, :, 5] = gt[:, None, :, 5]                    # hypothesis 2 is exact at joint 5
    x2d = project_to_2d(gt + traj, cam[:, None, None])
    pose, choice = j_agg(hyps, x2d, traj, cam)
    assert torch.all(choice[..., 5] == 2)
    assert torch.allclose(pose[..., 5, :], gt[:, None, :, 5].expand_as(pose[..., 5, :]))


def test_p_best_chooses_one_hypothesis_for_the_whole_batch():
    gt, hyps = _setup(1)
    hyps[:, 1, 3] = gt + 0.001                                  # iteration 1: hypothesis 3 is best
    pose, choice = p_best(hyps, gt)
    assert choice.shape == (2,) and int(choice[1]) == 3
    assert torch.equal(pose[:, 1], hyps[:, 1, 3])


def test_j_best_takes_the_nearest_joint_and_p_agg_the_mean():
    gt, hyps = _setup(2)
    pose, choice = j_best(hyps, gt)
    dist = (hyps - gt[:, None, None]).norm(dim=-1)
    assert torch.equal(choice, dist.argmin(dim=2))
    assert torch.allclose((pose - gt[:, None]).norm(dim=-1), dist.min(dim=2).values)
    assert torch.allclose(p_agg(hyps), hyps.mean(dim=2))


def test_aggregated_poses_score_the_authors_protocol_1_errors(fixture_a):
    _, v, _ = fixture_a
    hyps, gt, x2d = v["pred_for_metrics"], v["gt_3d"], v["inputs_2d"]
    poses = aggregate(hyps, gt, x2d, v["traj"], v["cam"])
    assert tuple(poses) == AGGREGATION_MODES
    errors = aggregation_errors(hyps, gt, x2d, v["traj"], v["cam"])
    for mode, name in (("J-Agg", "err_j_agg"), ("P-Agg", "err_p_agg"), ("P-Best", "err_p_best"),
                       ("J-Best", "err_j_best")):
        from_poses = torch.stack([mpjpe(poses[mode][:, k], gt) for k in range(hyps.shape[1])])
        assert (from_poses - v[name]).abs().max() < 1e-5, mode
        assert (from_poses - errors[mode]).abs().max() < 1e-6, mode

