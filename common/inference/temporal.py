"""Time in aggregation: the parts of T-Agg (docs/method.md, 'T-Agg: a temporal aggregation').

J-Agg picks each joint's hypothesis frame by frame, so its pose jumps between hypotheses from
one frame to the next and its bones change length. T-Agg makes three changes, each usable alone:

- a path per joint through the hypotheses over the frames of a clip (`joint_paths`, dynamic
  programming over the H candidates of each frame): it minimises the sum of every frame's
  reprojection distance (J-Agg's criterion) plus `switch_weight` x each step's motion that the
  hypotheses do not agree on: the 3D step from the joint taken at frame t-1 to the one taken at t,
  less the hypotheses' mean step (P-Agg's velocity), seen at the person's depth (metres x focal /
  depth: the same normalised screen units as the reprojection). A jump between hypotheses costs
  its size; a hypothesis that jitters costs its jitter; the motion they share costs nothing.
  switch_weight = 0 gives J-Agg's choice exactly.
- smoothing over time (`smooth_over_frames`): the chosen poses convolved along the frames with a
  Gaussian of `sigma` frames, which removes the jitter of the per-frame choice.
- one set of bone lengths (`fixed_bone_lengths`): each bone's median length over the frames of
  every clip given together (one sequence's windows in evaluation, the whole clip in lifting),
  and every frame rebuilt from the root outwards with each bone along its own direction.

The parameters (SWITCH_WEIGHT, SMOOTH_SIGMA) were chosen on the demo model's synthetic test
subject S9 and on the real clips it trained on (subject S1), never on the held-out clips or TS5.
There, smoothing J-Agg's own choice was more accurate than smoothing a path: the path holds one
hypothesis per joint where J-Agg's switching, once smoothed, averages several. So by default the
path is off (lambda = 0) and T-Agg is J-Agg smoothed over time with one set of bone lengths;
lambda > 0 (e.g. 3) turns the path on, which lowers the jitter further at some cost in accuracy.

Only the 2D, the hypotheses, the root trajectory and the camera are used: no ground truth.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

HYP_DIM = 2
SWITCH_WEIGHT = 0.0           # lambda of the path; 0: J-Agg's per-frame choice (the path is off by default, see below)
SMOOTH_SIGMA = 1.5            # frames: the Gaussian that smooths the chosen poses over time
MIN_DEPTH = 0.1               # metres: the depth the jump's scale never goes below


def jump_scale(traj: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """(B, F): normalised screen units per metre at the root's depth, focal / depth.
    traj (B, F, 1, 3) metres; cam (B, 9) or (9,) normalised intrinsics."""
    fx = cam[..., 0]
    if fx.dim() == 1:
        fx = fx[:, None]
    return fx / traj[..., 0, 2].clamp_min(MIN_DEPTH)


def joint_paths(hyps: torch.Tensor, distance: torch.Tensor, scale: torch.Tensor,
                switch_weight: float = SWITCH_WEIGHT) -> torch.Tensor:
    """Per clip, iteration and joint, the hypothesis of every frame (B, K, F, J) that minimises
    sum_f distance[h_f, f] + switch_weight * sum_f scale[f] * |X[h_f, f] - X[h_{f-1}, f-1] - V[f]|
    with V[f] the mean over hypotheses of X[h, f] - X[h, f-1] (Viterbi over the H hypotheses).
    hyps (B, K, H, F, J, 3); distance (B, K, H, F, J), each hypothesis joint's reprojection
    distance; scale (B, F) (jump_scale)."""
    b, k, h, f, j = distance.shape
    cost = distance[:, :, :, 0]                                        # (B, K, H, J)
    if switch_weight == 0 or h == 1 or f == 1:
        return distance.argmin(dim=HYP_DIM)
    back = torch.empty((b, k, h, f, j), dtype=torch.long, device=distance.device)
    weight = switch_weight * scale                                     # (B, F)
    velocity = torch.diff(hyps, dim=3).mean(dim=HYP_DIM)              # (B, K, F-1, J, 3) the shared motion
    for t in range(1, f):
        now = hyps[:, :, :, t] - velocity[:, :, None, t - 1]           # (B, K, H, J, 3) less the shared step
        jump = torch.linalg.vector_norm(now[:, :, None] - hyps[:, :, :, t - 1, None], dim=-1)  # (B, K, from, to, J)
        total = cost[:, :, :, None] + weight[:, t, None, None, None, None] * jump
        cost, back[:, :, :, t] = total.min(dim=2)
        cost = cost + distance[:, :, :, t]
    path = torch.empty((b, k, f, j), dtype=torch.long, device=distance.device)
    path[:, :, -1] = cost.argmin(dim=2)
    for t in range(f - 1, 0, -1):
        path[:, :, t - 1] = back[:, :, :, t].gather(2, path[:, :, t, None]).squeeze(2)
    return path


def smooth_over_frames(poses: torch.Tensor, sigma: float) -> torch.Tensor:
    """poses (B, K, F, J, 3) convolved along the frames with a Gaussian of sigma frames (cut at
    3 sigma), each clip on its own; at a clip's ends the kernel is cut and renormalised."""
    radius = min(int(math.ceil(3 * sigma)), poses.shape[2] - 1) if sigma > 0 else 0
    if radius == 0:
        return poses
    offsets = torch.arange(-radius, radius + 1, dtype=poses.dtype, device=poses.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)[None, None]
    b, k, f, j, c = poses.shape
    x = poses.permute(0, 1, 3, 4, 2).reshape(-1, 1, f)
    total = torch.nn.functional.conv1d(x, kernel, padding=radius)
    norm = torch.nn.functional.conv1d(torch.ones_like(x[:1]), kernel, padding=radius)
    return (total / norm).reshape(b, k, j, c, f).permute(0, 1, 4, 2, 3)


@lru_cache(maxsize=8)
def _chain(parents: tuple) -> tuple[list[int], list[int]]:
    """(joints, their parents) of every bone, parents before children (breadth-first from the root)."""
    children = {p: [c for c, q in enumerate(parents) if q == p] for p in range(-1, len(parents))}
    order, queue = [], list(children[-1])
    while queue:
        joint = queue.pop(0)
        order.append(joint)
        queue.extend(children[joint])
    if len(order) != len(parents):
        raise ValueError(f"parents {list(parents)} do not form one tree")
    bones = [c for c in order if parents[c] >= 0]
    return bones, [parents[c] for c in bones]


def bone_lengths(poses: torch.Tensor, parents) -> torch.Tensor:
    """Each bone's length per frame, (..., J-1) for poses (..., J, 3), bones in _chain order."""
    child, parent = _chain(tuple(int(p) for p in parents))
    return torch.linalg.vector_norm(poses[..., child, :] - poses[..., parent, :], dim=-1)


def fixed_bone_lengths(poses: torch.Tensor, parents) -> torch.Tensor:
    """poses (B, K, F, J, 3) with every bone set to its median length over the B clips and F
    frames of each iteration, along the bone's own direction in each frame; the root stays."""
    child, parent = _chain(tuple(int(p) for p in parents))
    bones = poses[..., child, :] - poses[..., parent, :]              # (B, K, F, bones, 3)
    lengths = torch.linalg.vector_norm(bones, dim=-1, keepdim=True)
    fitted = lengths.transpose(0, 1).flatten(1, 2).median(dim=1).values   # (K, bones, 1)
    unit = bones / lengths.clamp_min(1e-9)
    out = poses.clone()
    for i, (c, p) in enumerate(zip(child, parent)):
        out[..., c, :] = out[..., p, :] + fitted[None, :, None, i] * unit[..., i, :]
    return out

