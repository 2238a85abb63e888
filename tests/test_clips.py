"""Training clips (bounds, padding, flip and view augmentation, shuffling state, sharding) and
evaluation windows."""
import dataclasses

import numpy as np
import pytest
import torch

from common.geometry.camera import project_to_2d
from common.datasets.clips import (ClipSampler, clip_bounds, eval_window_indices, eval_windows, padded_slice,
                                   warped_slice)
from common.datasets.base import Sequence
from common.datasets.h36m import H36MDataset
from common.datasets.synthetic import write_synthetic_h36m
from common.geometry.coco import input_layout
from common.geometry.skeleton import H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT

SYM = dict(layout=input_layout("h36m"))


def tagged_sequence(index, num_frames):
    """A sequence whose values encode (sequence index, frame): 2D x = frame, y = index."""
    frames = np.arange(num_frames, dtype=np.float32)
    pose_2d = np.zeros((num_frames, 17, 2), np.float32)
    pose_2d[..., 0], pose_2d[..., 1] = frames[:, None], index
    pose_3d = np.repeat(pose_2d[..., :1], 3, axis=-1) + np.arange(17, dtype=np.float32)[:, None]
    traj = np.tile(frames[:, None, None], (1, 1, 3)) + 1
    cam = np.arange(9, dtype=np.float32) + 1
    return Sequence("S1", f"A{index}", 0, pose_2d=pose_2d, pose_3d=pose_3d, traj=traj, cam=cam)


def clip_ids(batch):
    """(sequence index, first frame) of every clip of a batch (unflipped clips)."""
    return [(int(c[0, 0, 1]), int(c[0, 0, 0])) for c in batch["pose_2d"]]


def test_clip_bounds_centre_the_windows():
    np.testing.assert_array_equal(clip_bounds(10, 4), [-1, 3, 7, 11])
    np.testing.assert_array_equal(clip_bounds(8, 4), [0, 4, 8])
    np.testing.assert_array_equal(clip_bounds(3, 4), [0, 4])  # offset (4 - 3) // 2 = 0


def test_padded_slice_repeats_edge_frames():
    x = np.arange(10)
    np.testing.assert_array_equal(padded_slice(x, -1, 3), [0, 0, 1, 2])
    np.testing.assert_array_equal(padded_slice(x, 7, 11), [7, 8, 9, 9])
    np.testing.assert_array_equal(padded_slice(x, -2, 12), [0, 0] + list(range(10)) + [9, 9])


def test_unshuffled_epoch_yields_every_window_with_edge_padding():
    sampler = ClipSampler([tagged_sequence(0, 10), tagged_sequence(1, 8)], clip_length=4, batch_size=2,
                          shuffle=False)
    batches = list(sampler.next_epoch())
    assert sampler.num_batches() == 3 == len(batches)
    frames = np.concatenate([b["pose_2d"][:, :, 0, 0] for b in batches])  # (5, 4)
    np.testing.assert_array_equal(frames, [[0, 0, 1, 2], [3, 4, 5, 6], [7, 8, 9, 9], [0, 1, 2, 3], [4, 5, 6, 7]])
    b = batches[0]
    assert b["pose_2d"].shape == (2, 4, 17, 2) and b["pose_3d"].shape == (2, 4, 17, 3)
    assert b["traj"].shape == (2, 4, 1, 3) and b["cam"].shape == (2, 9)
    assert all(v.dtype == np.float32 for v in b.values())


def test_augmentation_adds_each_window_once_flipped_and_flipping_back_restores_it():
    sampler = ClipSampler([tagged_sequence(0, 10)], clip_length=4, batch_size=6, augment=True, shuffle=False, **SYM)
    (batch,) = list(sampler.next_epoch())
    plain, flipped = {k: v[:3] for k, v in batch.items()}, {k: v[3:] for k, v in batch.items()}
    perm = list(range(17))
    for l, r in zip(H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT):
        perm[l], perm[r] = r, l
    sign = np.array([-1, 1], np.float32)
    np.testing.assert_array_equal(flipped["pose_2d"][:, :, perm] * sign, plain["pose_2d"])
    np.testing.assert_array_equal(flipped["pose_3d"][:, :, perm] * np.append(sign, 1), plain["pose_3d"])
    np.testing.assert_array_equal(flipped["traj"] * np.append(sign, 1), plain["traj"])
    cam = flipped["cam"].copy()
    cam[:, [2, 7]] *= -1
    np.testing.assert_array_equal(cam, plain["cam"])


def test_flipped_2d_is_the_projection_of_flipped_3d_with_flipped_intrinsics(tmp_path):
    write_synthetic_h36m(tmp_path, name="flip", seed=1, frames_per_sequence=30, subjects=("S9",),
                         actions=("Greeting",))
    seqs = H36MDataset(tmp_path, "gt", "flip").sequences(["S9"])
    sampler = ClipSampler(seqs, clip_length=9, batch_size=64, augment=True, shuffle=False, **SYM)
    (batch,) = list(sampler.next_epoch())
    projected = project_to_2d(torch.from_numpy(batch["pose_3d"] + batch["traj"]), torch.from_numpy(batch["cam"]))
    np.testing.assert_allclose(projected.numpy(), batch["pose_2d"], atol=1e-4)


def test_view_augmentation_turns_the_3d_about_the_root_and_reprojects_the_2d_keeping_its_error(tmp_path):
    write_synthetic_h36m(tmp_path, name="view", seed=1, frames_per_sequence=30, subjects=("S9",),
                         actions=("Greeting",))
    data = H36MDataset(tmp_path, "gt", "view")
    exact = data.sequences(["S9"])
    noisy = [dataclasses.replace(s, pose_2d=s.pose_2d + np.float32(0.01) * np.sin(np.arange(s.pose_2d.size))
                                 .reshape(s.pose_2d.shape).astype(np.float32)) for s in exact]
    plain = next(ClipSampler(noisy, clip_length=9, batch_size=64, shuffle=False, seed=3, **SYM).next_epoch())
    sampler = ClipSampler(noisy, clip_length=9, batch_size=64, shuffle=False, seed=3, view_pitch=20, view_roll=10,
                          **SYM)
    (turned,) = list(sampler.next_epoch())
    assert not np.allclose(turned["pose_3d"], plain["pose_3d"], atol=1e-3)
    # a rigid turn about the root: the root stays, every joint keeps its distance from it
    np.testing.assert_array_equal(turned["pose_3d"][..., 0, :], 0)
    np.testing.assert_allclose(np.linalg.norm(turned["pose_3d"], axis=-1), np.linalg.norm(plain["pose_3d"], axis=-1),
                               atol=1e-5)
    # one rotation per clip (fitted over all its frames), of at most 20 deg pitch and 10 deg roll
    angles = []
    for before, after in zip(plain["pose_3d"], turned["pose_3d"]):
        x, y = before.reshape(-1, 3), after.reshape(-1, 3)
        u, _, vt = np.linalg.svd(x.T @ y)
        rotation = (u @ vt).T
        np.testing.assert_allclose(x @ rotation.T, y, atol=1e-5)
        angles.append(np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1))))
    assert 5 < max(angles) <= np.hypot(20, 10) + 1e-3
    # the 2D is the projection of the turned 3D plus the original 2D's error
    error = plain["pose_2d"] - project_to_2d(torch.from_numpy(plain["pose_3d"] + plain["traj"]),
                                             torch.from_numpy(plain["cam"])[:, None, None]).numpy()
    reprojected = project_to_2d(torch.from_numpy(turned["pose_3d"] + turned["traj"]),
                                torch.from_numpy(turned["cam"])[:, None, None]).numpy()
    np.testing.assert_allclose(turned["pose_2d"], reprojected + error, atol=1e-5)
    assert np.abs(error).max() > 0.005


def test_view_augmentation_needs_3d_joints_for_the_2d():
    seq = tagged_sequence(0, 5)
    with pytest.raises(ValueError, match="Human3.6M layout"):
        ClipSampler([seq], clip_length=4, batch_size=2, view_pitch=10, layout=input_layout("coco"))
    with pytest.raises(ValueError, match="trajectory and camera"):
        ClipSampler([dataclasses.replace(seq, traj=None)], clip_length=4, batch_size=2, view_pitch=10, **SYM)


def test_view_augmentation_is_drawn_from_the_saved_random_state():
    """The views come from the sampler's RandomState, which checkpoints keep: a resumed run
    sees the same views; without view augmentation the draws are the authors' (order test above)."""
    seqs = [dataclasses.replace(tagged_sequence(i, 12), cam=np.array([2, 2, 0, 0, 0, 0, 0, 0, 0], np.float32),
                                traj=np.full((12, 1, 3), [0, 0, 5], np.float32)) for i in range(3)]
    a = ClipSampler(seqs, clip_length=4, batch_size=3, seed=7, view_pitch=30, **SYM)
    list(a.next_epoch())
    state = a.random_state()
    expected = [b["pose_2d"] for b in a.next_epoch()]
    b = ClipSampler(seqs, clip_length=4, batch_size=3, seed=1, view_pitch=30, **SYM)
    b.set_random_state(state)
    for x, y in zip(b.next_epoch(), expected):
        np.testing.assert_array_equal(x["pose_2d"], y)


def test_shuffle_order_matches_the_authors_generator():
    seqs = [tagged_sequence(i, n) for i, n in enumerate([10, 7, 13])]
    sampler = ClipSampler(seqs, clip_length=4, batch_size=3, seed=1234)
    pairs = []  # the authors' ChunkedGenerator: (seq, start, end, flip), permuted by RandomState(1234)
    for i, s in enumerate(seqs):
        bounds = clip_bounds(s.num_frames, 4)
        pairs += zip(np.repeat(i, len(bounds) - 1), bounds[:-1], bounds[1:], np.zeros(len(bounds) - 1, bool))
    expected = np.random.RandomState(1234).permutation(pairs)
    got = [ids for b in sampler.next_epoch() for ids in clip_ids(b)]
    assert got == [(int(seq), max(int(start), 0)) for seq, start, _, _ in expected]


def test_restoring_the_random_state_between_epochs_repeats_the_next_epochs():
    seqs = [tagged_sequence(i, 30) for i in range(4)]
    a = ClipSampler(seqs, clip_length=4, batch_size=3, seed=7)
    list(a.next_epoch())
    state = a.random_state()
    assert isinstance(state, np.random.RandomState)  # as in the authors' checkpoints
    expected = [[clip_ids(x) for x in a.next_epoch()] for _ in range(2)]
    b = ClipSampler(seqs, clip_length=4, batch_size=3, seed=99)
    b.set_random_state(state)
    assert [[clip_ids(x) for x in b.next_epoch()] for _ in range(2)] == expected


def test_ranks_get_disjoint_equal_shares_of_each_epoch():
    seqs = [tagged_sequence(i, 30) for i in range(4)]  # 32 clips -> 11 global batches of 3
    full = [clip_ids(b) for b in ClipSampler(seqs, clip_length=4, batch_size=3, seed=5).next_epoch()]
    shards = [[clip_ids(b) for b in ClipSampler(seqs, clip_length=4, batch_size=3, seed=5, rank=r,
                                                world_size=2).next_epoch()] for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5
    assert shards[0] == full[0:10:2] and shards[1] == full[1:10:2]


def test_augment_without_symmetry_is_refused():
    with pytest.raises(ValueError, match="joint layout"):
        ClipSampler([tagged_sequence(0, 5)], clip_length=4, batch_size=2, augment=True)


@pytest.mark.parametrize("num_frames, expected", [
    (3, [[0, 1, 2, 2, 2]]),                                # N < F: right padding
    (5, [[0, 1, 2, 3, 4]]),                                # N = F
    (15, [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14]]),
    (12, [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [7, 8, 9, 10, 11]]),  # last window aligned to the end
])
def test_eval_windows(num_frames, expected):
    x = np.arange(num_frames)[:, None] * np.ones((1, 2))  # (N, 2)
    windows = eval_windows(x, 5)
    assert windows.shape == (len(expected), 5, 2)
    np.testing.assert_array_equal(windows[..., 0], expected)


@pytest.mark.parametrize("num_frames", [3, 5, 15, 2 * 5 + 3])
def test_eval_window_new_frames_count_each_frame_once(num_frames):
    index, new = eval_window_indices(num_frames, 5)
    assert sorted(index[new].tolist()) == list(range(num_frames))


def test_eval_windows_on_two_windows_and_five_frames():
    index, new = eval_window_indices(2 * 4 + 5, 4)  # N = 2F + 5 with F = 4
    np.testing.assert_array_equal(index, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [9, 10, 11, 12]])
    np.testing.assert_array_equal(new[-1], [False, False, False, True])


def test_bone_augmentation_changes_proportions_keeps_directions_and_reprojects_the_2d(tmp_path):
    from common.datasets.clips import BONE_GROUPS
    from common.geometry.skeleton import h36m_skeleton_17

    write_synthetic_h36m(tmp_path, name="bones", seed=1, frames_per_sequence=30, subjects=("S9",),
                         actions=("Greeting",))
    exact = H36MDataset(tmp_path, "gt", "bones").sequences(["S9"])
    noisy = [dataclasses.replace(s, pose_2d=s.pose_2d + np.float32(0.01) * np.cos(np.arange(s.pose_2d.size))
                                 .reshape(s.pose_2d.shape).astype(np.float32)) for s in exact]
    plain = next(ClipSampler(noisy, clip_length=9, batch_size=64, shuffle=False, seed=3, **SYM).next_epoch())
    (scaled,) = list(ClipSampler(noisy, clip_length=9, batch_size=64, shuffle=False, seed=3, bone_scale=0.2,
                                 **SYM).next_epoch())
    parents = list(h36m_skeleton_17().parents)
    bone = lambda p: p[..., 1:, :] - p[..., parents[1:], :]  # noqa: E731
    before, after = bone(plain["pose_3d"]), bone(scaled["pose_3d"])
    ratio = np.linalg.norm(after, axis=-1) / np.linalg.norm(before, axis=-1)               # (B, F, 16)
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1], ratio.shape), atol=1e-4)   # one factor per clip
    for children in BONE_GROUPS:                                                           # left and right alike
        group = ratio[..., [c - 1 for c in children]]
        np.testing.assert_allclose(group, np.broadcast_to(group[..., :1], group.shape), atol=1e-4)
    assert ratio.min() >= 0.8 - 1e-4 and ratio.max() <= 1.2 + 1e-4 and ratio.std() > 0.05
    cosine = (after * before).sum(-1) / np.linalg.norm(after, axis=-1) / np.linalg.norm(before, axis=-1)
    assert cosine.min() > 1 - 1e-5                                                          # directions kept
    np.testing.assert_array_equal(scaled["pose_3d"][..., 0, :], 0)
    error = plain["pose_2d"] - project_to_2d(torch.from_numpy(plain["pose_3d"] + plain["traj"]),
                                             torch.from_numpy(plain["cam"])[:, None, None]).numpy()
    reprojected = project_to_2d(torch.from_numpy(scaled["pose_3d"] + scaled["traj"]),
                                torch.from_numpy(scaled["cam"])[:, None, None]).numpy()
    np.testing.assert_allclose(scaled["pose_2d"], reprojected + error, atol=1e-5)
    with pytest.raises(ValueError, match="--bone-augment"):
        ClipSampler(noisy, clip_length=9, batch_size=4, bone_scale=0.1, layout=input_layout("coco"))


def test_warped_slice_plays_a_window_faster_or_slower_about_its_centre():
    x = np.arange(40, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)     # frame i holds i
    np.testing.assert_array_equal(warped_slice(x, 10, 19, 1.0), padded_slice(x, 10, 19))
    np.testing.assert_array_equal(warped_slice(x, -3, 6, 1.0), padded_slice(x, -3, 6))    # edge padding too
    fast = warped_slice(x, 10, 19, 2.0)[:, 0, 0]
    np.testing.assert_allclose(fast, 14 + 2.0 * (np.arange(9) - 4))                        # centre 14, steps of 2
    slow = warped_slice(x, 10, 19, 0.5)[:, 0, 0]
    np.testing.assert_allclose(slow, 14 + 0.5 * (np.arange(9) - 4))                        # interpolated
    assert warped_slice(x, 30, 39, 2.0)[-1, 0, 0] == 39                                     # held at the last frame


def test_time_warp_gives_every_clip_a_speed_within_the_range_and_keeps_3d_2d_and_root_together(tmp_path):
    write_synthetic_h36m(tmp_path, name="warp", seed=1, frames_per_sequence=60, subjects=("S9",),
                         actions=("Greeting",))
    seqs = H36MDataset(tmp_path, "gt", "warp").sequences(["S9"])
    tagged = [dataclasses.replace(s, pose_3d=np.broadcast_to(np.arange(s.num_frames, dtype=np.float32)
                                                             [:, None, None], s.pose_3d.shape).copy())
              for s in seqs]                                     # 3D that holds the frame time
    (batch,) = list(ClipSampler(tagged, clip_length=9, batch_size=64, shuffle=False, seed=3, time_warp=0.5,
                                **SYM).next_epoch())
    times = batch["pose_3d"][:, :, 0, 0]                         # (B, F) the frame time each clip frame shows
    last = tagged[0].num_frames - 1
    inside = np.diff(times, axis=1)[(times > 0).all(axis=1) & (times < last).all(axis=1)]   # never at an edge
    speed = inside[:, 0]
    np.testing.assert_allclose(inside, np.broadcast_to(speed[:, None], inside.shape), atol=1e-4)
    assert speed.min() >= 1 / 1.5 - 1e-4 and speed.max() <= 1.5 + 1e-4 and speed.std() > 0.1
    (real,) = list(ClipSampler(seqs, clip_length=9, batch_size=64, shuffle=False, seed=3, time_warp=0.5,
                               **SYM).next_epoch())
    reprojected = project_to_2d(torch.from_numpy(real["pose_3d"] + real["traj"]),
                                torch.from_numpy(real["cam"])[:, None, None]).numpy()
    assert np.abs(real["pose_2d"] - reprojected).max() < 2e-3    # the 2D follows the warped 3D (gt 2D)
    plain = next(ClipSampler(seqs, clip_length=9, batch_size=64, shuffle=False, seed=3, **SYM).next_epoch())
    assert not np.allclose(plain["pose_3d"], real["pose_3d"])
