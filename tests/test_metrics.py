"""Metrics against the authors' vectors and by their defining properties."""
import math

import pytest
import torch

from common.inference.aggregation import PAPER_MODES
from common.evaluation.metrics import (AGGREGATION_MODES, aggregation_errors, aggregation_joint_errors, mpjpe,
                            mpjve, n_mpjpe, p_mpjpe, procrustes_align)


def _rotation(axis_angle):
    k = torch.tensor(axis_angle, dtype=torch.float64)
    theta = k.norm()
    k = k / theta
    K = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(theta) * K + (1 - math.cos(theta)) * K @ K


def test_plain_metrics_match_authors(fixture_a):
    _, v, _ = fixture_a
    assert abs(mpjpe(v["metric_pred"], v["metric_target"]) - v["mpjpe"]) < 1e-6
    assert abs(p_mpjpe(v["metric_pred"], v["metric_target"]) - v["p_mpjpe"]) < 1e-6


@pytest.mark.parametrize("protocol2", [False, True])
def test_four_aggregation_errors_match_authors(fixture_a, protocol2):
    _, v, _ = fixture_a
    errs = aggregation_errors(v["pred_for_metrics"], v["gt_3d"], v["inputs_2d"], v["traj"], v["cam"], protocol2)
    prefix = "err2_" if protocol2 else "err_"
    for mode in PAPER_MODES:
        ref = v[prefix + mode.lower().replace("-", "_")]
        assert (errs[mode] - ref).abs().max() < 1e-5, mode


def test_p_mpjpe_is_invariant_to_similarity_transforms_of_the_prediction():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(6, 17, 3, generator=g, dtype=torch.float64)
    pred = target + 0.1 * torch.randn(6, 17, 3, generator=g, dtype=torch.float64)
    moved = 2.7 * pred @ _rotation([0.3, -1.2, 0.5]).T + torch.tensor([4.0, -1.0, 9.0], dtype=torch.float64)
    assert p_mpjpe(moved, target) == pytest.approx(float(p_mpjpe(pred, target)), abs=1e-9)
    assert p_mpjpe(pred, target) < mpjpe(pred, target)
    assert float(p_mpjpe(moved, target)) < 0.2 < float(mpjpe(moved, target))


def test_procrustes_never_reflects():
    g = torch.Generator().manual_seed(1)
    target = torch.randn(4, 17, 3, generator=g, dtype=torch.float64)
    mirrored = target * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    aligned = procrustes_align(mirrored, target)
    # A proper rotation cannot undo a mirror image: the error stays well above zero.
    assert float(mpjpe(aligned, target)) > 0.1
    assert float(mpjpe(procrustes_align(target * 3 + 1, target), target)) < 1e-9


def test_n_mpjpe_removes_scale_only_and_mpjve_ignores_constant_offsets():
    g = torch.Generator().manual_seed(2)
    target = torch.randn(2, 8, 17, 3, generator=g)
    assert float(n_mpjpe(target * 1.7, target)) < 1e-5
    assert float(n_mpjpe(target + 1.0, target)) > 0.1
    assert float(mpjve(target + torch.tensor([0.5, 0.0, 0.0]), target)) < 1e-6
    assert mpjpe(target + torch.tensor([0.5, 0.0, 0.0]), target) == pytest.approx(0.5, abs=1e-6)


def test_j_best_is_never_worse_than_p_best_or_j_agg():
    """J-Best <= P-Best and J-Best <= J-Agg element-wise per iteration (both protocols):
    both pick one hypothesis per joint, J-Best the nearest."""
    g = torch.Generator().manual_seed(3)
    b, k, h, f, j = 3, 4, 5, 6, 17
    gt = 0.3 * torch.randn(b, f, j, 3, generator=g)
    gt[..., 0, :] = 0
    hyps = gt[:, None, None] + 0.05 * torch.randn(b, k, h, f, j, 3, generator=g)
    traj = torch.tensor([0.0, 0.0, 5.0]) + 0.1 * torch.randn(b, f, 1, 3, generator=g)
    cam = torch.tensor([2.3, 2.3, 0.0, 0.0, -0.2, 0.24, 0.0, 0.0, 0.0])
    from common.geometry.camera import project_to_2d
    x2d = project_to_2d(gt + traj, cam) + 0.002 * torch.randn(b, f, j, 2, generator=g)
    for protocol2 in (False, True):
        e = aggregation_errors(hyps, gt, x2d, traj, cam, protocol2)
        for mode in ("P-Best", "J-Agg"):
            assert torch.all(e["J-Best"] <= e[mode] + 1e-9), (protocol2, mode)
        per_joint = aggregation_joint_errors(hyps, gt, x2d, traj, cam, protocol2)
        assert torch.all(per_joint["J-Best"] <= per_joint["J-Agg"] + 1e-9)
        assert torch.all(per_joint["J-Best"] <= per_joint["P-Best"] + 1e-9)
        assert all(t.shape == (b, k, f, j) for t in per_joint.values())


def test_j_best_beats_p_agg_on_sampler_output_but_not_by_theorem(fixture_a):
    """On real sampler hypotheses (set A) J-Best <= P-Agg per iteration; it is not a theorem:
    the mean of hypotheses scattered evenly around the truth beats the nearest of them."""
    _, v, _ = fixture_a
    for protocol2 in (False, True):
        e = aggregation_errors(v["pred_for_metrics"], v["gt_3d"], v["inputs_2d"], v["traj"], v["cam"], protocol2)
        assert torch.all(e["J-Best"] <= e["P-Agg"]) and torch.all(e["J-Best"] <= e["P-Best"])
    gt = torch.zeros(1, 1, 17, 3)
    offsets = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]]).view(1, 1, 2, 1, 1, 3)
    hyps = gt[:, None, None] + offsets
    e = aggregation_errors(hyps, gt, torch.zeros(1, 1, 17, 2), torch.zeros(1, 1, 1, 3) + 5, torch.ones(9))
    assert float(e["P-Agg"][0]) == 0.0 and float(e["J-Best"][0]) == 1.0
