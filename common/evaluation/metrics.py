"""Pose error metrics, batched torch on any device. Poses are (..., J, 3); errors are in the
units of the input (metres in the pipeline; tables multiply by 1000 for mm)."""
from __future__ import annotations

import torch

from ..inference import aggregation as agg
from ..inference.aggregation import AGGREGATION_MODES  # noqa: F401  (re-exported: tables and callers use it from here)
from ..geometry.camera import project_to_2d


def joint_errors(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Euclidean distance per joint, (..., J, 3) -> (..., J)."""
    return torch.linalg.vector_norm(pred - target, dim=-1)


def mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Protocol 1: mean per-joint position error over everything."""
    assert pred.shape == target.shape, (tuple(pred.shape), tuple(target.shape))
    return joint_errors(pred, target).mean()


def procrustes_align(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Align each pose of pred (..., J, 3) to target by the similarity transform (rotation,
    uniform scale, translation) minimising the squared error; rotations are kept proper
    (reflections fixed). Computed in float64, returned in pred's dtype."""
    shape = pred.shape
    y = pred.reshape(-1, shape[-2], 3).double()
    x = target.expand(shape).reshape(-1, shape[-2], 3).double()
    mu_x, mu_y = x.mean(dim=1, keepdim=True), y.mean(dim=1, keepdim=True)
    x0, y0 = x - mu_x, y - mu_y
    norm_x = x0.square().sum(dim=(1, 2), keepdim=True).sqrt()
    norm_y = y0.square().sum(dim=(1, 2), keepdim=True).sqrt().clamp_min(1e-12)
    x0, y0 = x0 / norm_x.clamp_min(1e-12), y0 / norm_y
    u, s, vt = torch.linalg.svd(x0.transpose(1, 2) @ y0)
    v = vt.transpose(1, 2)
    sign = torch.sign(torch.linalg.det(v @ u.transpose(1, 2)))       # -1 for a reflection
    v = torch.cat([v[..., :2], v[..., 2:] * sign[:, None, None]], dim=-1)
    s = torch.cat([s[:, :2], s[:, 2:] * sign[:, None]], dim=-1)
    rot = v @ u.transpose(1, 2)
    scale = s.sum(dim=1)[:, None, None] * norm_x / norm_y
    trans = mu_x - scale * (mu_y @ rot)
    return (scale * (y @ rot) + trans).reshape(shape).to(pred.dtype)


def p_mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Protocol 2: MPJPE after per-pose Procrustes alignment (rotation, scale, translation)."""
    return mpjpe(procrustes_align(pred, target), target.expand(pred.shape))


def n_mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MPJPE after the per-pose scale that best fits pred to target (least squares)."""
    scale = (pred * target).sum(dim=(-2, -1), keepdim=True) / pred.square().sum(dim=(-2, -1), keepdim=True)
    return mpjpe(scale * pred, target)


def mpjve(pred: torch.Tensor, target: torch.Tensor, frame_dim: int = -3) -> torch.Tensor:
    """Mean per-joint velocity error: MPJPE of the first differences along the frame axis."""
    return mpjpe(torch.diff(pred, dim=frame_dim), torch.diff(target, dim=frame_dim))


def aggregation_joint_errors(hyps: torch.Tensor, gt: torch.Tensor, x2d: torch.Tensor, traj: torch.Tensor,
                             cam: torch.Tensor, protocol2: bool = False, weights: torch.Tensor | None = None,
                             project=None) -> dict[str, torch.Tensor]:
    """Per-joint errors (B, K, F, J) of the aggregation modes, for hypotheses (B, K, H, F, J, 3)
    against root-relative ground truth gt (B, F, J, 3), gathered from each mode's choice
    (common.inference.aggregation.choices).

    Protocol 2 aligns every hypothesis (and, for P-Agg, the mean pose) to the ground truth per
    frame before the selection, so the oracles choose by aligned errors; J-Agg's choice still
    comes from the unaligned reprojection to the 2D input x2d (B, F, J, 2) with root trajectory
    traj (B, F, 1, 3) and intrinsics cam. weights (B, F) only weight P-Best's batch-level choice.
    """
    target = gt[:, None, None]                                   # (B, 1, 1, F, J, 3)
    mean_pose = agg.p_agg(hyps)                                  # (B, K, F, J, 3)
    if protocol2:
        errors = joint_errors(procrustes_align(hyps, target), target)
        mean_errors = joint_errors(procrustes_align(mean_pose, gt[:, None]), gt[:, None])
    else:
        errors = joint_errors(hyps, target)                      # (B, K, H, F, J)
        mean_errors = joint_errors(mean_pose, gt[:, None])
    c = agg.Candidates(hyps, errors, x2d, traj, cam, weights, project or project_to_2d)
    return {mode: _mode_errors(answer, errors, mean_errors, gt, protocol2)
            for mode, answer in agg.choices(c).items()}


def _mode_errors(answer, errors, mean_errors, gt, protocol2: bool) -> torch.Tensor:
    """(B, K, F, J) errors of one mode's answer: gathered for a choice, P-Agg's for MEAN, and
    for poses of its own their distance to gt (B, F, J, 3) (aligned first under protocol 2)."""
    if answer is agg.MEAN:
        return mean_errors
    if not answer.is_floating_point():
        return agg.gather(errors, answer)
    target = gt[:, None]
    return joint_errors(procrustes_align(answer, target) if protocol2 else answer, target)


def aggregation_errors(hyps, gt, x2d, traj, cam, protocol2: bool = False, project=None) -> dict[str, torch.Tensor]:
    """The four aggregation errors per iteration, (K,) each: means over clips, frames, joints."""
    per_joint = aggregation_joint_errors(hyps, gt, x2d, traj, cam, protocol2, project=project)
    return {mode: e.mean(dim=(0, 2, 3)) for mode, e in per_joint.items()}
