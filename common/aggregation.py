"""Aggregating H hypotheses into one pose (docs/method.md, 'Aggregating H hypotheses').

Hypotheses are (B, K, H, F, J, 3): clips, sampling iterations, hypotheses, frames, joints,
root-relative metres. Every function returns the aggregated poses (B, K, F, J, 3) and, where
a choice is made, the chosen hypothesis index.
"""
from __future__ import annotations

import torch

from .camera import project_to_2d

HYP_DIM = 2
AGGREGATION_MODES = ("J-Agg", "P-Agg", "P-Best", "J-Best")   # the order of every table


def _gather_joints(hyps: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """Pick, per (clip, iteration, frame, joint), the joint of hypothesis choice (B, K, F, J)."""
    index = choice.unsqueeze(HYP_DIM).unsqueeze(-1).expand(*choice.shape[:2], 1, *choice.shape[2:], hyps.shape[-1])
    return torch.gather(hyps, HYP_DIM, index).squeeze(HYP_DIM)


def p_agg(hyps: torch.Tensor) -> torch.Tensor:
    """P-Agg: the mean pose over hypotheses."""
    return hyps.mean(dim=HYP_DIM)


def reproject(hyps: torch.Tensor, traj: torch.Tensor, cam: torch.Tensor, project=project_to_2d) -> torch.Tensor:
    """2D reprojection of every hypothesis placed at the root trajectory.
    traj (B, F, 1, 3) metres, cam (B, 9) or (9,) intrinsics -> (B, K, H, F, J, 2)."""
    if cam.dim() == 2:
        cam = cam[:, None, None, None, None, :]   # (B, 1, 1, 1, 1, 9)
    return project(hyps + traj[:, None, None], cam)


def j_agg(hyps: torch.Tensor, x2d: torch.Tensor, traj: torch.Tensor, cam: torch.Tensor,
          project=project_to_2d):
    """J-Agg (JPMA): per frame and joint, the hypothesis joint whose reprojection is
    nearest the 2D input x2d (B, F, J, 2). Returns (poses, choice (B, K, F, J))."""
    dist = torch.linalg.vector_norm(reproject(hyps, traj, cam, project) - x2d[:, None, None], dim=-1)
    choice = dist.argmin(dim=HYP_DIM)
    return _gather_joints(hyps, choice), choice


def p_best(hyps: torch.Tensor, gt: torch.Tensor, errors: torch.Tensor | None = None,
           weights: torch.Tensor | None = None):
    """P-Best (oracle): per iteration, the hypothesis index with the lowest error averaged
    over all clips, frames and joints of the batch (the authors' rule, so the choice depends
    on how clips are batched). errors: per-joint errors (B, K, H, F, J) if already computed;
    weights: optional (B, F) frame weights of that average. Returns (poses, choice (K,))."""
    if errors is None:
        errors = torch.linalg.vector_norm(hyps - gt[:, None, None], dim=-1)
    if weights is None:
        per_hyp = errors.mean(dim=(0, 3, 4))                                    # (K, H)
    else:
        w = weights[:, None, None, :, None].to(errors)
        per_hyp = (errors * w).sum(dim=(0, 3, 4)) / (w.sum() * errors.shape[-1])
    choice = per_hyp.argmin(dim=1)
    poses = hyps[:, torch.arange(hyps.shape[1], device=hyps.device), choice]
    return poses, choice


def j_best(hyps: torch.Tensor, gt: torch.Tensor, errors: torch.Tensor | None = None):
    """J-Best (oracle): per frame and joint, the hypothesis joint nearest the ground truth
    gt (B, F, J, 3). Returns (poses, choice (B, K, F, J))."""
    if errors is None:
        errors = torch.linalg.vector_norm(hyps - gt[:, None, None], dim=-1)
    choice = errors.argmin(dim=HYP_DIM)
    return _gather_joints(hyps, choice), choice


def aggregate(hyps: torch.Tensor, gt: torch.Tensor, x2d: torch.Tensor, traj: torch.Tensor, cam: torch.Tensor,
              weights: torch.Tensor | None = None, project=project_to_2d) -> dict[str, torch.Tensor]:
    """The four aggregated poses {'J-Agg', 'P-Agg', 'P-Best', 'J-Best': (B, K, F, J, 3)} of
    hypotheses (B, K, H, F, J, 3), with the oracle choices made against gt (B, F, J, 3) and
    J-Agg's against the 2D x2d; weights (B, F) weight P-Best's batch-level choice."""
    errors = torch.linalg.vector_norm(hyps - gt[:, None, None], dim=-1)
    return {"J-Agg": j_agg(hyps, x2d, traj, cam, project)[0], "P-Agg": p_agg(hyps),
            "P-Best": p_best(hyps, gt, errors, weights)[0], "J-Best": j_best(hyps, gt, errors)[0]}
