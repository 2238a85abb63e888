"""Aggregating H hypotheses into one pose (docs/method.md, 'Aggregating H hypotheses').

Hypotheses are (B, K, H, F, J, 3): clips, sampling iterations, hypotheses, frames, joints,
root-relative metres. Each mode is written once, as a function of the Candidates returning
either the per-joint choice of a hypothesis it makes (B, K, F, J), MEAN, or poses of its own
(B, K, F, J, 3) that are no choice among the hypotheses; the aggregated poses and the scored
errors (common.evaluation.metrics) both follow from that answer.

MODES is the one registry (name -> function): a mode added there reaches every table, the
MPI-INF-3DHP .mat files, --save-predictions, --viz-export and the in-the-wild results and
exports, with no other file changed. A mode that chooses by the ground truth is marked with
@oracle (evaluation only: lifting and the prediction files leave it out).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..geometry.camera import project_to_2d
from ..geometry.skeleton import h36m_skeleton_17
from . import temporal

HYP_DIM = 2
MEAN = None   # the "choice" of P-Agg: no hypothesis is picked, they are averaged


def gather(values: torch.Tensor, choice: torch.Tensor | None) -> torch.Tensor:
    """Per (clip, iteration, frame, joint), the value of the hypothesis `choice` (B, K, F, J)
    picks from values (B, K, H, F, J, ...); the mean over hypotheses where choice is MEAN."""
    if choice is MEAN:
        return values.mean(dim=HYP_DIM)
    index = choice.unsqueeze(HYP_DIM)
    index = index.reshape(index.shape + (1,) * (values.dim() - index.dim())).expand(
        *choice.shape[:2], 1, *values.shape[3:])
    return torch.gather(values, HYP_DIM, index).squeeze(HYP_DIM)


def reproject(hyps: torch.Tensor, traj: torch.Tensor, cam: torch.Tensor, project=project_to_2d) -> torch.Tensor:
    """2D reprojection of every hypothesis placed at the root trajectory.
    traj (B, F, 1, 3) metres, cam (B, 9) or (9,) intrinsics -> (B, K, H, F, J, 2)."""
    if cam.dim() == 2:
        cam = cam[:, None, None, None, None, :]   # (B, 1, 1, 1, 1, 9)
    return project(hyps + traj[:, None, None], cam)


def hypothesis_errors(hyps: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-joint distance of every hypothesis to the ground truth gt (B, F, J, 3): (B, K, H, F, J)."""
    return torch.linalg.vector_norm(hyps - gt[:, None, None], dim=-1)


@dataclass
class Candidates:
    """What a mode may choose by: the hypotheses (B, K, H, F, J, 3), their per-joint errors
    (B, K, H, F, J) against the ground truth (the oracles), and the 2D input x2d (B, F, J, 2)
    with root trajectory traj (B, F, 1, 3) and intrinsics cam (J-Agg, T-Agg). weights (B, F)
    weight P-Best's batch-level choice; parents: the 3D output's skeleton (T-Agg's bones),
    Human3.6M-17's unless given. The B clips are consecutive windows of one sequence (or one clip)."""

    hyps: torch.Tensor
    errors: torch.Tensor | None = None
    x2d: torch.Tensor | None = None
    traj: torch.Tensor | None = None
    cam: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    project: object = project_to_2d
    parents: tuple | None = None

    def skeleton_parents(self) -> tuple:
        return output_parents(self.parents)


H36M_PARENTS = tuple(int(p) for p in h36m_skeleton_17().parents)


def output_parents(parents=None) -> tuple:
    """The 3D output's skeleton: the parents given, or Human3.6M-17's."""
    return H36M_PARENTS if parents is None else tuple(int(p) for p in parents)


def oracle(mode):
    """Mark a mode function as one that chooses by the ground truth (Candidates.errors)."""
    mode.needs_ground_truth = True
    return mode


def poses_of(hyps: torch.Tensor, answer) -> torch.Tensor:
    """The poses (B, K, F, J, 3) a mode's answer stands for: the hypotheses its choice picks,
    their mean for MEAN, or the poses it returned."""
    if answer is MEAN or not answer.is_floating_point():
        return gather(hyps, answer)
    return answer


# ---------------------------------------------------------------------------- the modes
# Each returns its per-joint choice (B, K, F, J) of hypothesis, or MEAN.

def reprojection_distances(c: Candidates) -> torch.Tensor:
    """(B, K, H, F, J): each hypothesis joint's distance from the 2D input once reprojected."""
    return torch.linalg.vector_norm(reproject(c.hyps, c.traj, c.cam, c.project) - c.x2d[:, None, None], dim=-1)


def choose_j_agg(c: Candidates) -> torch.Tensor:
    """J-Agg (JPMA): per frame and joint, the hypothesis whose reprojection is nearest the 2D input."""
    return reprojection_distances(c).argmin(dim=HYP_DIM)


def choose_t_agg(c: Candidates, switch_weight: float = temporal.SWITCH_WEIGHT, sigma: float = temporal.SMOOTH_SIGMA,
                 bones: bool = True) -> torch.Tensor:
    """T-Agg (common.inference.temporal): J-Agg's per-joint choice (with switch_weight > 0, a path
    through the hypotheses over the frames that trades reprojection distance against motion
    they do not share) smoothed over sigma frames, then one set of bone lengths. Its poses
    (B, K, F, J, 3); the choice (B, K, F, J) alone with sigma=0 and bones=False."""
    path = temporal.joint_paths(c.hyps, reprojection_distances(c), temporal.jump_scale(c.traj, c.cam), switch_weight)
    if sigma == 0 and not bones:
        return path
    poses = temporal.smooth_over_frames(gather(c.hyps, path), sigma)
    return temporal.fixed_bone_lengths(poses, c.skeleton_parents()) if bones else poses


def choose_p_agg(c: Candidates):
    """P-Agg: the mean pose over hypotheses."""
    return MEAN


def p_best_index(errors: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """P-Best's hypothesis per iteration (K,): lowest error averaged over all clips, frames and
    joints of the batch (the authors' rule, so the choice depends on how clips are batched);
    weights (B, F) weight that average."""
    if weights is None:
        per_hyp = errors.mean(dim=(0, 3, 4))                                    # (K, H)
    else:
        w = weights[:, None, None, :, None].to(errors)
        per_hyp = (errors * w).sum(dim=(0, 3, 4)) / (w.sum() * errors.shape[-1])
    return per_hyp.argmin(dim=1)


@oracle
def choose_p_best(c: Candidates) -> torch.Tensor:
    """P-Best (oracle): one hypothesis per iteration for the whole batch (p_best_index)."""
    b, k, _, f, j = c.errors.shape
    return p_best_index(c.errors, c.weights)[None, :, None, None].expand(b, k, f, j)


@oracle
def choose_j_best(c: Candidates) -> torch.Tensor:
    """J-Best (oracle): per frame and joint, the hypothesis joint nearest the ground truth."""
    return c.errors.argmin(dim=HYP_DIM)


# The aggregation modes, in the order of every table. A new mode: one function above, one entry here.
MODES = {"J-Agg": choose_j_agg, "P-Agg": choose_p_agg, "P-Best": choose_p_best, "J-Best": choose_j_best,
         "T-Agg": choose_t_agg}
AGGREGATION_MODES = tuple(MODES)
PAPER_MODES = ("J-Agg", "P-Agg", "P-Best", "J-Best")   # the paper's four (the authors' code computes these)
ORACLE_MODES = tuple(m for m, fn in MODES.items() if getattr(fn, "needs_ground_truth", False))
# The modes that need no ground truth: what lifting gives and the prediction files hold.
LIFTING_MODES = tuple(m for m in MODES if m not in ORACLE_MODES)


def lifting_modes() -> tuple:
    """The modes registered now that need no ground truth (LIFTING_MODES and any added since)."""
    return tuple(m for m, fn in MODES.items() if not getattr(fn, "needs_ground_truth", False))


# The pose a lifted clip's .json, .csv, .bvh and animation show unless told otherwise.
SHOWN_MODE = "T-Agg"


def lifting_mode(name: str) -> str:
    """A lifting mode registered now by its name or key ('T-Agg', 't_agg', 't-agg'); a clear error otherwise."""
    for mode in lifting_modes():
        if name in (mode, mode_key(mode), mode.lower()):
            return mode
    raise ValueError(f"unknown pose mode {name!r}: choose from {', '.join(lifting_modes())}")


def mode_key(mode: str) -> str:
    """A mode's name in files and arrays: 'J-Agg' -> 'j_agg'."""
    return mode.lower().replace("-", "_")


def choices(c: Candidates, modes=None) -> dict:
    """Every mode's answer {mode: choice (B, K, F, J), MEAN or poses (B, K, F, J, 3)}; modes:
    every mode registered in MODES when it is called (None), or these."""
    return {mode: MODES[mode](c) for mode in (tuple(MODES) if modes is None else modes)}


def aggregate(hyps: torch.Tensor, gt: torch.Tensor | None, x2d: torch.Tensor, traj: torch.Tensor, cam: torch.Tensor,
              weights: torch.Tensor | None = None, project=project_to_2d, modes=None,
              parents=None) -> dict[str, torch.Tensor]:
    """The aggregated poses {mode: (B, K, F, J, 3)} of hypotheses (B, K, H, F, J, 3), every
    mode's by default, the lifting modes' only when gt is None; the oracles choose against gt
    (B, F, J, 3), J-Agg against the 2D x2d; weights (B, F) weight P-Best's batch-level choice;
    parents: the output skeleton (Candidates.parents)."""
    if modes is None:
        modes = tuple(MODES) if gt is not None else lifting_modes()
    errors = hypothesis_errors(hyps, gt) if gt is not None else None
    c = Candidates(hyps, errors, x2d, traj, cam, weights, project, parents)
    return {mode: poses_of(hyps, answer) for mode, answer in choices(c, modes).items()}


# ---------------------------------------------------------------------------- one mode at a time

def p_agg(hyps: torch.Tensor) -> torch.Tensor:
    """P-Agg poses (B, K, F, J, 3)."""
    return gather(hyps, MEAN)


def j_agg(hyps: torch.Tensor, x2d: torch.Tensor, traj: torch.Tensor, cam: torch.Tensor, project=project_to_2d):
    """J-Agg poses and their choice (B, K, F, J), without ground truth."""
    choice = choose_j_agg(Candidates(hyps, x2d=x2d, traj=traj, cam=cam, project=project))
    return gather(hyps, choice), choice


def p_best(hyps: torch.Tensor, gt: torch.Tensor, errors: torch.Tensor | None = None,
           weights: torch.Tensor | None = None):
    """P-Best poses and the chosen hypothesis per iteration (K,)."""
    index = p_best_index(hypothesis_errors(hyps, gt) if errors is None else errors, weights)
    return hyps[:, torch.arange(hyps.shape[1], device=hyps.device), index], index


def j_best(hyps: torch.Tensor, gt: torch.Tensor, errors: torch.Tensor | None = None):
    """J-Best poses and their choice (B, K, F, J)."""
    choice = choose_j_best(Candidates(hyps, hypothesis_errors(hyps, gt) if errors is None else errors))
    return gather(hyps, choice), choice
