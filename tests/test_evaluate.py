"""Evaluation protocol: the authors' window weighting and P-Best grouping, exact-frames,
valid masks, compute batching that changes nothing, tables."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from common.model.diffusion import DDIMSampler, Diffusion
from common.evaluation.collectors import Scores
from common.evaluation.evaluate import SequenceResult
from common.inference.sampling import group_noise
from common.evaluation.report import average_over, format_table, results_json, summarize
from common.evaluation.metrics import AGGREGATION_MODES, aggregation_joint_errors
from conftest import evaluate, make_sequences

F = 5


class Lifter(torch.nn.Module):
    """A stand-in network: a fixed linear lift of the 2D input plus a little of the noisy
    poses, so hypotheses differ and errors are non-trivial."""

    def __init__(self):
        super().__init__()
        self.cfg = SimpleNamespace(frames=F)
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(2, 3, generator=g) * 0.1

    def forward(self, x2d, x3d, t, cond=None):
        lift = x2d @ self.w
        return (lift[:, None] if x3d.dim() == 5 else lift) + 0.2 * x3d


def _settings(**kw):
    """Sampling and scoring fields of these tests (K = 2 is the sampler's)."""
    return {"hypotheses": 3, "flip": False, "group": 2, "seed": 0, "progress": False, **kw}


def _sampler():
    return DDIMSampler(Diffusion(), 2)


def test_errors_follow_the_authors_loop():
    """Reimplements the authors' evaluation loop (eval_data_prepare windows, batches of -b
    clips, error x clips x frames) and compares the accumulated sums."""
    seq = make_sequences(1, 2 * F + 3)[0]                            # 13 frames: windows 0-4, 5-9, 8-12
    settings = _settings()
    result = evaluate(Lifter(), _sampler(), [seq], **settings)[0]

    x2d, x3d, traj = (torch.from_numpy(a) for a in (seq.pose_2d, seq.pose_3d, seq.traj))
    n = math.ceil(seq.num_frames / F)
    starts = [i * F for i in range(n - 1)] + [seq.num_frames - F]
    windows = lambda x: torch.stack([x[s:s + F] for s in starts])
    w2d, w3d, wtraj = windows(x2d), windows(x3d), windows(traj)
    sums, count = {m: 0.0 for m in AGGREGATION_MODES}, 0
    for gid, b0 in enumerate(range(0, n, settings["group"])):
        b = min(settings["group"], n - b0)
        noise = group_noise(gid, b, (3, F, 17, 3), 2, settings["seed"], "cpu")
        hyps = _sampler().sample(Lifter(), w2d[b0:b0 + b], 3, noise=noise)
        hyps[..., 0, :] = 0
        errs = aggregation_joint_errors(hyps, w3d[b0:b0 + b], w2d[b0:b0 + b], wtraj[b0:b0 + b],
                                        torch.from_numpy(seq.cam))
        for m in AGGREGATION_MODES:
            sums[m] = sums[m] + b * F * errs[m].mean(dim=(0, 2, 3)).double().numpy()
        count += b * F
    assert result.weight == count == 15                             # the overlap counts twice
    for m in AGGREGATION_MODES:
        assert np.allclose(result.error("p1", m), sums[m] / count, atol=1e-7), m


def test_compute_batching_changes_no_number():
    seqs = make_sequences(3, 2 * F + 1)
    small = evaluate(Lifter(), _sampler(), seqs, **_settings(protocol2=True))
    big = evaluate(Lifter(), _sampler(), seqs, **_settings(protocol2=True, compute_batch=64))
    for a, b in zip(small, big):
        for key in a.sums:
            assert np.allclose(a.sums[key], b.sums[key], atol=1e-9), key


def test_p_best_choice_depends_on_the_group_size():
    seqs = make_sequences(1, 6 * F)
    per_clip = evaluate(Lifter(), _sampler(), seqs, **_settings(group=1))[0]
    per_six = evaluate(Lifter(), _sampler(), seqs, **_settings(group=6))[0]
    # Larger groups choose one hypothesis for more clips: never better than per-clip choice.
    # (Draws differ between groupings, so compare each with its own J-Best lower bound.)
    for r in (per_clip, per_six):
        assert np.all(r.error("p1", "J-Best") <= r.error("p1", "P-Best") + 1e-9)
    assert not np.allclose(per_clip.error("p1", "P-Best"), per_six.error("p1", "P-Best"))


def test_exact_frames_counts_every_frame_once_and_valid_masks_apply():
    seq = make_sequences(1, 2 * F + 3)[0]
    assert evaluate(Lifter(), _sampler(), [seq], **_settings(exact_frames=True))[0].weight == 13
    short = make_sequences(1, 3)[0]                                  # shorter than F: padded, 3 real frames
    assert evaluate(Lifter(), _sampler(), [short], **_settings(exact_frames=True))[0].weight == 3
    masked = make_sequences(1, 2 * F + 3, valid=True)[0]
    r = evaluate(Lifter(), _sampler(), [masked], **_settings(exact_frames=True))[0]
    assert r.weight == int(masked.valid.sum())


def test_kept_poses_are_per_frame_and_consistent_with_hypotheses():
    seq = make_sequences(1, 2 * F + 2)[0]
    r = evaluate(Lifter(), _sampler(), [seq], **_settings(keep={"poses", "hypotheses"}))[0]
    assert r.hypotheses.shape == (2, 3, seq.num_frames, 17, 3)
    assert all(p.shape == (2, seq.num_frames, 17, 3) for p in r.poses.values())
    assert np.allclose(r.poses["P-Agg"], r.hypotheses.mean(axis=1), atol=1e-6)
    nearest = np.linalg.norm(r.hypotheses - seq.pose_3d[None, None], axis=-1).min(axis=1)
    assert np.allclose(np.linalg.norm(r.poses["J-Best"] - seq.pose_3d[None], axis=-1), nearest, atol=1e-6)


def test_action_average_is_the_plain_mean_over_action_groups():
    seqs = make_sequences(3, F)                                      # actions: Walking 1, Eating, Walking
    results = []
    for seq, (err, weight) in zip(seqs, [(1.0, 10), (4.0, 5), (3.0, 30)]):
        sums = {("p1", m): np.array([err * weight]) for m in AGGREGATION_MODES}
        results.append(SequenceResult(seq, {"scores": Scores(sums, weight)}))
    table = summarize(results)
    assert list(table) == ["Eating", "Walking"]
    assert table["Walking"][("p1", "J-Agg")][0] == pytest.approx((10 + 90) / 40)   # frame-weighted
    assert average_over(table)[("p1", "J-Agg")][0] == pytest.approx((4.0 + 2.5) / 2)  # plain mean
    text = format_table(table, "p1", 1, "title")
    assert "Average" in text and "3250.00" in text
    assert results_json(table)["p1"]["J-Agg"]["Average"] == [3250.0]


def test_a_group_is_scored_with_one_transfer_from_the_device(monkeypatch):
    """Every (protocol, mode) sum of a group reaches the host in one copy (each copy waits for a
    GPU), and its weight is counted on the host."""
    seqs = make_sequences(2, 12)
    settings = _settings(protocol2=True)
    groups = sum(-(-math.ceil(s.num_frames / F) // settings["group"]) for s in seqs)
    copies = []
    real_cpu = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k: copies.append(self.shape) or real_cpu(self))
    results = evaluate(Lifter(), _sampler(), seqs, **settings)
    assert len(copies) == groups
    assert all(r.weight == r.sequence.num_frames + (-r.sequence.num_frames) % F for r in results)
