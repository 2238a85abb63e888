"""Whole-sequence sampling: windows cover every frame once, groups seed their own noise, and
evaluation and in-the-wild lifting sample through the same loop."""
import numpy as np

from common.model.diffusion import DDIMSampler, Diffusion
from common.geometry.coco import input_layout
from common.inference.sampling import pack, sample_windows, window_groups
from conftest import evaluate, make_sequences, tiny_model
from common.inference.core import InferenceCore


def test_window_groups_mark_every_frame_new_exactly_once():
    lengths, frames, group = [5, 30, 27, 9], 9, 2
    groups = window_groups(lengths, frames, group)
    assert [g.group_id for g in groups] == list(range(len(groups)))
    for si, n in enumerate(lengths):
        mine = [g for g in groups if g.seq_index == si]
        assert all(1 <= len(g.windows) <= group for g in mine)
        covered = np.concatenate([g.windows[g.new] for g in mine])
        assert sorted(covered.tolist()) == list(range(n))           # each frame new in one window only
        assert all(g.windows.max() < n for g in mine)                # padding repeats edge frames


def test_pack_keeps_groups_whole_and_in_order():
    groups = window_groups([40, 40], 9, 3)                          # 5 windows per sequence -> 3 + 2
    batches = list(pack(groups, 5))
    assert [[g.group_id for g in b] for b in batches] == [[0, 1], [2, 3]]
    assert list(pack(groups, 1)) == [[g] for g in groups]           # a group larger than the call stays whole


def test_packing_groups_into_calls_changes_no_sample():
    model = tiny_model(frames=9)
    sampler = DDIMSampler(Diffusion(), 2)
    x = [np.random.default_rng(i).normal(size=(n, 17, 2)).astype(np.float32) * 0.3 for i, n in enumerate([20, 31])]
    flip = input_layout("h36m")
    one = [h for _, _, h in sample_windows(model, sampler, x, 3, 2, flip, 7, "cpu", compute_batch=2, progress=False)]
    many = [h for _, _, h in sample_windows(model, sampler, x, 3, 2, flip, 7, "cpu", compute_batch=8, progress=False)]
    assert len(one) == len(many) == 4                              # 3 + 4 windows in groups of 2
    assert max(float((a - b).abs().max()) for a, b in zip(one, many)) < 1e-5


def test_lifting_samples_the_same_hypotheses_as_the_evaluation():
    (seq,) = make_sequences(count=1, frames=20)                     # windows 0-8, 9-17 and the end-aligned 11-19
    model = tiny_model(frames=9)
    sampler = DDIMSampler(Diffusion(), 2)
    evaluated = evaluate(model, sampler, [seq], hypotheses=3, group=2, exact_frames=True, keep={"hypotheses"},
                         seed=5, progress=False)[0].hypotheses                        # (K, H, N, J, 3)
    lifted = InferenceCore.of_sampler(model, sampler, hypotheses=3, group=2, seed=5).sample_clip(seq.pose_2d)
    assert lifted.shape == (20, 2, 3, 17, 3)
    assert np.abs(lifted.transpose(1, 2, 0, 3, 4) - evaluated).max() < 1e-6
    assert np.all(lifted[:, :, :, 0] == 0) and np.abs(lifted).sum(axis=(1, 2, 3, 4)).min() > 0
