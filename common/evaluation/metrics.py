"""Pose error metrics, batched torch on any device. Poses are (..., J, 3); errors are in the
units of the input (metres in the pipeline; tables multiply by 1000 for mm)."""
from __future__ import annotations

import numpy as np
import torch

from ..inference import aggregation as agg, temporal
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


def accel_error(pred: torch.Tensor, target: torch.Tensor, frame_dim: int = -3) -> torch.Tensor:
    """Acceleration error (Accel): MPJPE of the second differences along the frame axis, metres
    per frame^2."""
    return mpjpe(torch.diff(pred, n=2, dim=frame_dim), torch.diff(target, n=2, dim=frame_dim))


# The motion metrics of the reports, each the weighted mean of a per-window, per-frame value (order:
# the finite difference along the frames), and the bone-length variation (BONE_CV, per sequence).
MOTION_ORDERS = {"mpjve": 1, "accel": 2}
BONE_CV = "bone_cv"


def window_motion_errors(pred: torch.Tensor, gt: torch.Tensor, weights: torch.Tensor, order: int) -> torch.Tensor:
    """(B, K): per window and iteration, the mean over frames and joints of the distance between the
    order-th differences of pred (B, K, F, J, 3) and gt (B, F, J, 3) (1: MPJVE, 2: Accel), each
    difference weighted by the product of its frames' weights (B, F); NaN without F > order."""
    diff = lambda x: torch.diff(x, n=order, dim=-3)                     # noqa: E731
    per_frame = joint_errors(diff(pred), diff(gt)[:, None]).mean(dim=-1)        # (B, K, F - order)
    w = weights.unfold(1, order + 1, 1).prod(dim=-1)[:, None]                     # (B, 1, F - order)
    return (per_frame * w).sum(dim=-1) / w.sum(dim=-1)


def bone_moments(poses: torch.Tensor, weights: torch.Tensor, parents=None) -> torch.Tensor:
    """(3, K, bones): the weighted count, sum and sum of squares of each bone's length over the
    windows and frames of poses (B, K, F, J, 3), weights (B, F); parents: the skeleton's."""
    lengths = temporal.bone_lengths(poses, agg.output_parents(parents)).double()      # (B, K, F, bones)
    w = weights.double()[:, None, :, None].expand_as(lengths)
    return torch.stack([w.sum(dim=(0, 2)), (w * lengths).sum(dim=(0, 2)), (w * lengths.square()).sum(dim=(0, 2))])


def bone_variation(moments: np.ndarray) -> np.ndarray:
    """(K,): the mean over bones of each bone's coefficient of variation (std / mean of its
    length over the frames), from bone_moments summed over a sequence."""
    n, s, s2 = (np.asarray(m, np.float64) for m in moments)
    mean = s / np.maximum(n, 1e-12)
    std = np.sqrt(np.maximum(s2 / np.maximum(n, 1e-12) - mean ** 2, 0.0))
    return (std / np.maximum(mean, 1e-12)).mean(axis=-1)


def aggregation_joint_errors(hyps: torch.Tensor, gt: torch.Tensor, x2d: torch.Tensor, traj: torch.Tensor,
                             cam: torch.Tensor, protocol2: bool = False, weights: torch.Tensor | None = None,
                             project=None, parents=None) -> dict[str, torch.Tensor]:
    """Per-joint errors (B, K, F, J) of the aggregation modes (aggregation_scores without the answers)."""
    return aggregation_scores(hyps, gt, x2d, traj, cam, protocol2, weights, project, parents)[0]


def aggregation_scores(hyps: torch.Tensor, gt: torch.Tensor, x2d: torch.Tensor, traj: torch.Tensor,
                       cam: torch.Tensor, protocol2: bool = False, weights: torch.Tensor | None = None,
                       project=None, parents=None) -> tuple[dict[str, torch.Tensor], dict]:
    """Per-joint errors (B, K, F, J) of the aggregation modes, and each mode's answer
    (common.inference.aggregation.choices), for hypotheses (B, K, H, F, J, 3)
    against root-relative ground truth gt (B, F, J, 3), gathered from each mode's choice
    (common.inference.aggregation.choices).

    Protocol 2 aligns every hypothesis (and, for P-Agg, the mean pose) to the ground truth per
    frame before the selection, so the oracles choose by aligned errors; J-Agg's choice still
    comes from the unaligned reprojection to the 2D input x2d (B, F, J, 2) with root trajectory
    traj (B, F, 1, 3) and intrinsics cam. weights (B, F) only weight P-Best's batch-level choice;
    parents: the output skeleton (T-Agg's bones; None: Human3.6M-17).
    """
    target = gt[:, None, None]                                   # (B, 1, 1, F, J, 3)
    mean_pose = agg.p_agg(hyps)                                  # (B, K, F, J, 3)
    if protocol2:
        errors = joint_errors(procrustes_align(hyps, target), target)
        mean_errors = joint_errors(procrustes_align(mean_pose, gt[:, None]), gt[:, None])
    else:
        errors = joint_errors(hyps, target)                      # (B, K, H, F, J)
        mean_errors = joint_errors(mean_pose, gt[:, None])
    c = agg.Candidates(hyps, errors, x2d, traj, cam, weights, project or project_to_2d, parents)
    answers = agg.choices(c)
    return {mode: _mode_errors(answer, errors, mean_errors, gt, protocol2) for mode, answer in answers.items()}, answers


def _mode_errors(answer, errors, mean_errors, gt, protocol2: bool) -> torch.Tensor:
    """(B, K, F, J) errors of one mode's answer: gathered for a choice, P-Agg's for MEAN, and
    for poses of its own their distance to gt (B, F, J, 3) (aligned first under protocol 2)."""
    if answer is agg.MEAN:
        return mean_errors
    if not answer.is_floating_point():
        return agg.gather(errors, answer)
    target = gt[:, None]
    return joint_errors(procrustes_align(answer, target) if protocol2 else answer, target)


def aggregation_errors(hyps, gt, x2d, traj, cam, protocol2: bool = False, project=None,
                       parents=None) -> dict[str, torch.Tensor]:
    """Every aggregation mode's error per iteration, (K,) each: means over clips, frames, joints."""
    per_joint = aggregation_joint_errors(hyps, gt, x2d, traj, cam, protocol2, project=project, parents=parents)
    return {mode: e.mean(dim=(0, 2, 3)) for mode, e in per_joint.items()}
