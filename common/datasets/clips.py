"""Training clips and evaluation windows cut from Sequences (numpy, as the authors' code).

Training (ClipSampler): each sequence of N frames is cut into ceil(N / F) non-overlapping
F-frame windows, centred on the sequence (frames outside it repeat the first / last frame);
with augmentation every window appears a second time, mirrored. Batches are shuffled per
epoch with the sampler's own numpy RandomState, whose state the checkpoints keep.

View augmentation (ours, off by default): each training clip is seen from a camera turned by
a random pitch and roll about the person's root, so that a model trained on four fixed studio
cameras also meets the camera heights and tilts of phones and tripods. The 3D target turns
with the view and the 2D input is re-projected through the clip's camera, keeping the
detector's error (the 2D minus the projection of the true 3D) as it was.

Evaluation (eval_windows): ceil(N / F) windows from the start of the sequence, the last one
aligned to the sequence end; sequences shorter than F are padded on the right.
"""
from __future__ import annotations

import copy

from typing import Iterator

import numpy as np
import torch

from ..geometry.camera import flip_intrinsics, project_to_2d
from ..geometry.skeleton import Layout, flip_pose, h36m_skeleton_17


def clip_bounds(num_frames: int, clip_length: int) -> np.ndarray:
    """Boundaries (n + 1,) of the n = ceil(N / F) centred training windows; window i is
    frames [bounds[i], bounds[i + 1]) and may reach outside [0, N) at both ends."""
    n = -(-num_frames // clip_length)
    offset = (n * clip_length - num_frames) // 2
    return np.arange(n + 1) * clip_length - offset


def warped_slice(x: np.ndarray, start: int, end: int, speed: float) -> np.ndarray:
    """The end - start frames of x around the window [start, end) played at `speed` (2: twice as
    fast, 0.5: half as fast), linearly interpolated along axis 0 about the window's centre; the
    first / last frame where the times leave x (speed 1: padded_slice exactly)."""
    frames = end - start
    t = np.clip((start + end - 1) / 2 + (np.arange(frames) - (frames - 1) / 2) * speed, 0, len(x) - 1)
    low = np.floor(t).astype(np.int64)
    high = np.minimum(low + 1, len(x) - 1)
    w = (t - low).reshape((-1,) + (1,) * (x.ndim - 1))
    return (x[low] * (1 - w) + x[high] * w).astype(x.dtype)


def padded_slice(x: np.ndarray, start: int, end: int) -> np.ndarray:
    """x[start:end] along axis 0, repeating the first / last frame where the range leaves x."""
    low, high = max(start, 0), min(end, len(x))
    out = x[low:high]
    if low - start or end - high:
        out = np.pad(out, [(low - start, end - high)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    return out


class ClipSampler:
    """Shuffled batches of F-frame training clips, optionally with flip augmentation and
    split across ranks for distributed training.

    Each batch is a dict of float32 arrays: 'pose_2d' (B, F, J, 2) normalised screen units,
    'pose_3d' (B, F, J, 3) metres root-relative, and, when every sequence has them,
    'traj' (B, F, 1, 3) metres and 'cam' (B, 9) normalised intrinsics.
    """

    def __init__(self, sequences, clip_length: int, batch_size: int, *, augment: bool = False,
                 layout: Layout | None = None, shuffle: bool = True, seed: int = 1234, rank: int = 0,
                 world_size: int = 1, view_pitch: float = 0.0, view_roll: float = 0.0, bone_scale: float = 0.0,
                 time_warp: float = 0.0):
        if augment and layout is None:
            raise ValueError("flip augmentation needs the data set's joint layout (its left/right joints)")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.sequences = list(sequences)
        self.clip_length, self.batch_size = clip_length, batch_size
        self.kps = (list(layout.kps_left), list(layout.kps_right)) if layout else ([], [])
        self.joints = (list(layout.joints_left), list(layout.joints_right)) if layout else ([], [])
        self.shuffle, self.rank, self.world_size = shuffle, rank, world_size
        self.random = np.random.RandomState(seed)
        self.with_traj = all(s.traj is not None for s in self.sequences)
        self.with_cam = all(s.cam is not None for s in self.sequences)
        # largest view change, radians: pitch (about the camera's x axis), roll (about its z axis)
        self.view = np.radians([view_pitch, view_roll])
        if self.view.any():
            if not (self.with_traj and self.with_cam):
                raise ValueError("--view-augment re-projects the 3D: every training sequence needs its root "
                                 "trajectory and camera intrinsics; train without --view-augment on this data")
            if layout is None or layout.input_name != "h36m":
                raise ValueError("--view-augment re-projects the 3D joints, so it needs 2D of the same joints "
                                 "(Human3.6M layout); for COCO-layout 2D train without --view-augment")
        self.bone_scale = float(bone_scale)       # largest change of a bone group's length, a fraction
        if self.bone_scale and (layout is None or layout.input_name != "h36m" or not (self.with_traj and self.with_cam)):
            raise ValueError("--bone-augment rebuilds the Human3.6M-17 skeleton and re-projects it: it needs "
                             "Human3.6M-layout 2D with root trajectories and cameras; train without it on this data")
        self.time_warp = float(time_warp)         # largest speed change: speeds in [1 / (1 + w), 1 + w], log-uniform
        # (sequence index, start, end, flip) per clip, in the authors' order: a sequence's
        # windows, then the same windows flipped.
        clips = []
        for i, seq in enumerate(self.sequences):
            bounds = clip_bounds(seq.num_frames, clip_length)
            for flip in ((False, True) if augment else (False,)):
                clips += [(i, start, end, flip) for start, end in zip(bounds[:-1], bounds[1:])]
        self.clips = clips

    def num_batches(self) -> int:
        """Batches per epoch for this rank (every rank gets the same number)."""
        return -(-len(self.clips) // self.batch_size) // self.world_size

    def next_epoch(self) -> Iterator[dict[str, np.ndarray]]:
        """One pass over the clips in a fresh shuffled order."""
        order = self.random.permutation(len(self.clips)) if self.shuffle else np.arange(len(self.clips))
        # drawn only when asked for, so that the authors' sequence of draws stays as it was
        views = self.random.uniform(-1, 1, (len(self.clips), 2)) * self.view if self.view.any() else None
        scales = (1 + self.random.uniform(-1, 1, (len(self.clips), len(BONE_GROUPS))) * self.bone_scale
                  if self.bone_scale else None)
        speeds = (np.exp(self.random.uniform(-1, 1, len(self.clips)) * np.log1p(self.time_warp))
                  if self.time_warp else np.ones(len(self.clips)))
        for b in range(self.num_batches()):
            g = b * self.world_size + self.rank  # this rank's share of the global batch list
            chosen = order[g * self.batch_size:(g + 1) * self.batch_size]
            batch = self._batch([self.clips[k] for k in chosen], speeds[chosen])
            if scales is not None:
                batch = scale_bones(batch, scales[chosen])
            yield batch if views is None else turn_view(batch, views[chosen])

    def random_state(self):
        """A copy of the shuffling RandomState (what the authors' checkpoints store as
        'random_state'); saved between epochs, set_random_state of it makes the following
        epochs repeat exactly."""
        return copy.deepcopy(self.random)

    def set_random_state(self, state) -> None:
        """Accepts a RandomState (ours or the authors') or a RandomState.get_state() tuple."""
        self.random.set_state(state.get_state() if isinstance(state, np.random.RandomState) else state)

    def _batch(self, clips, speeds=None) -> dict[str, np.ndarray]:
        """Cut, pad, (where asked) play at another speed and mirror the clips of one batch."""
        batch = {"pose_2d": [], "pose_3d": []}
        if self.with_traj:
            batch["traj"] = []
        if self.with_cam:
            batch["cam"] = []
        for (i, start, end, flip), speed in zip(clips, np.ones(len(clips)) if speeds is None else speeds):
            seq = self.sequences[i]
            cut = padded_slice if speed == 1 else (lambda x, a, b: warped_slice(x, a, b, speed))  # noqa: E731
            pose_2d = cut(seq.pose_2d, start, end)  # (F, J, 2)
            pose_3d = cut(seq.pose_3d, start, end)  # (F, J, 3)
            if flip:
                pose_2d, pose_3d = flip_pose(pose_2d, *self.kps), flip_pose(pose_3d, *self.joints)
            batch["pose_2d"].append(pose_2d)
            batch["pose_3d"].append(pose_3d)
            if self.with_traj:
                traj = cut(seq.traj, start, end)  # (F, 1, 3)
                batch["traj"].append(traj * np.array([-1, 1, 1], dtype=traj.dtype) if flip else traj)
            if self.with_cam:
                batch["cam"].append(flip_intrinsics(seq.cam) if flip else seq.cam)
        return {k: np.stack(v).astype(np.float32) for k, v in batch.items()}


# Human3.6M-17 bones (by child joint) scaled together: hip width, thighs, shins, spine, thorax,
# neck, head, shoulder width, upper arms, forearms (left and right alike: one person's proportions).
BONE_GROUPS = ((1, 4), (2, 5), (3, 6), (7,), (8,), (9,), (10,), (11, 14), (12, 15), (13, 16))


def scale_bones(batch: dict[str, np.ndarray], scales: np.ndarray) -> dict[str, np.ndarray]:
    """The batch's people with other proportions: each clip's bone groups (BONE_GROUPS) scaled by
    scales (B, groups), every bone keeping its direction, the root in place; the 2D is re-projected
    through the clip's camera plus its original error against the true 3D's projection."""
    factor = np.ones((len(scales), 17), np.float32)
    for g, children in enumerate(BONE_GROUPS):
        factor[:, list(children)] = scales[:, [g]]
    before = batch["pose_3d"]
    pose_3d = np.zeros_like(before)
    parents = h36m_skeleton_17().parents
    for j in range(1, 17):                                   # parents come before their children
        p = parents[j]
        pose_3d[:, :, j] = pose_3d[:, :, p] + factor[:, None, j, None] * (before[:, :, j] - before[:, :, p])
    traj, cam = torch.from_numpy(batch["traj"]), torch.from_numpy(batch["cam"])[:, None, None]
    old = project_to_2d(torch.from_numpy(before) + traj, cam).numpy()
    new = project_to_2d(torch.from_numpy(pose_3d) + traj, cam).numpy()
    return {**batch, "pose_3d": pose_3d, "pose_2d": (batch["pose_2d"] + new - old).astype(np.float32)}


def view_rotation(pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Camera-space rotations (B, 3, 3): a pitch about the x axis, then a roll about the z axis."""
    cp, sp, cr, sr = np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    one, zero = np.ones_like(pitch), np.zeros_like(pitch)
    rx = np.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(-1, 3, 3)
    rz = np.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return rz @ rx


def turn_view(batch: dict[str, np.ndarray], angles: np.ndarray) -> dict[str, np.ndarray]:
    """The batch seen from cameras turned about each clip's root by angles (B, 2) radians
    (pitch, roll): the root-relative 3D turns, the 2D is re-projected through the clip's camera
    (traj and cam of the batch) plus its original error against the true 3D's projection."""
    rotation = view_rotation(angles[:, 0], angles[:, 1]).astype(np.float32)            # (B, 3, 3)
    pose_3d = np.einsum("bij,bfkj->bfki", rotation, batch["pose_3d"])
    traj, cam = torch.from_numpy(batch["traj"]), torch.from_numpy(batch["cam"])[:, None, None]
    before = project_to_2d(torch.from_numpy(batch["pose_3d"]) + traj, cam).numpy()
    after = project_to_2d(torch.from_numpy(pose_3d) + traj, cam).numpy()
    return {**batch, "pose_3d": pose_3d, "pose_2d": (batch["pose_2d"] + after - before).astype(np.float32)}


def eval_window_indices(num_frames: int, clip_length: int) -> tuple[np.ndarray, np.ndarray]:
    """For the evaluation windows of an N-frame sequence: index (out_num, F), the frame
    each window slot shows, and new (out_num, F), True where a frame appears for the first
    time (not padding, not the overlap of the end-aligned last window), so that every
    frame can be counted exactly once."""
    out_num = -(-num_frames // clip_length)
    index = np.arange(out_num * clip_length).reshape(out_num, clip_length)
    if num_frames < clip_length:
        index[-1] = np.minimum(index[-1], num_frames - 1)
        new = index == np.arange(clip_length)
    else:
        index[-1] = np.arange(num_frames - clip_length, num_frames)
        new = index >= np.arange(out_num)[:, None] * clip_length
    return index, new


def eval_windows(x: np.ndarray, clip_length: int) -> np.ndarray:
    """Evaluation windows of a sequence x (N, ...) -> (ceil(N / F), F, ...): consecutive
    F-frame windows, the last aligned to the sequence end (overlapping the one before);
    sequences shorter than F are padded on the right with their last frame."""
    return x[eval_window_indices(len(x), clip_length)[0]]
