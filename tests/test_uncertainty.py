"""Per-joint uncertainty (common/uncertainty/factors.py, common/run/calibration.py): the spread, the
split-conformal factors and their coverage where the truth is known, the rank correlation,
the calibration split, the factors in checkpoints, and the report's calibration block."""
import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from common.uncertainty import factors as unc
from common.uncertainty import frames as unc_frames
from common.uncertainty import report as unc_report
from common.model.checkpoint import atomic_save, make_checkpoint, safe_load
from common.model.diffusion import DDIMSampler, Diffusion
from common.evaluation.report import Report
from conftest import evaluate, make_sequences, tiny_model


def test_median_is_the_middle_value_and_the_mean_of_the_two_middle_ones():
    x = torch.tensor([[3.0, 1.0, 2.0], [4.0, 1.0, 10.0]])
    assert unc.median(x, 1).tolist() == [2.0, 4.0]
    assert unc.median(torch.tensor([[4.0, 1.0, 2.0, 10.0]]), 1).tolist() == [3.0]


def test_spread_is_the_median_distance_of_the_hypotheses_to_the_centre():
    centre = torch.zeros(1, 1, 3)                                   # (F, J, 3)
    hyps = torch.zeros(5, 1, 1, 3)                                  # (H, F, J, 3)
    hyps[:, 0, 0, 0] = torch.tensor([0.0, 1.0, 2.0, 3.0, 40.0])      # distances 0, 1, 2, 3, 40
    assert unc.hypothesis_spread(hyps, centre).item() == 2.0


def test_conformal_quantile_is_the_finite_sample_order_statistic():
    s = np.arange(1, 10, dtype=float)[::-1]                         # 9 scores, unsorted
    assert unc.conformal_quantile(s, 0.9) == 9                      # ceil(10 * 0.9) = 9th smallest
    assert unc.conformal_quantile(s, 0.5) == 5                      # ceil(5) = 5th
    assert unc.conformal_quantile(s, 0.55) == 6                     # ceil(5.5) = 6th
    assert math.isinf(unc.conformal_quantile(s, 0.95))              # ceil(9.5) = 10 > 9: no finite bound


def _simulated(frames, joints=4, h=5, seed=0):
    """Hypotheses scattered around the truth with a per-frame, per-joint scale (known model),
    J-Agg = the first hypothesis (a choice that does not look at the truth)."""
    g = torch.Generator().manual_seed(seed)
    scale = 0.01 + 0.2 * torch.rand(frames, joints, 1, generator=g) * torch.arange(1, joints + 1)[:, None]
    truth = torch.randn(frames, joints, 3, generator=g)
    hyps = truth + scale * torch.randn(h, frames, joints, 3, generator=g)
    j_agg = hyps[0]
    spread = unc.hypothesis_spread(hyps, j_agg).numpy()
    error = torch.linalg.vector_norm(j_agg - truth, dim=-1).numpy()
    return error, spread


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_factors_fitted_on_one_half_give_the_stated_coverage_on_the_other(coverage):
    error, spread = _simulated(40000)
    cal = unc.fit_calibration(error[:20000], spread[:20000])
    rad = unc.radius(spread[20000:], cal, coverage)
    observed = (error[20000:] <= rad).mean(axis=0)
    np.testing.assert_allclose(observed, coverage, atol=0.012)      # 20000 draws: 3 standard errors
    # the factors differ per joint; the raw spread is no such radius (here it covers 76%)
    assert np.ptp(cal.factors(coverage)) > 0
    assert abs((error[20000:] <= spread[20000:]).mean() - 0.95) > 0.15


def test_radius_grows_with_the_spread_so_it_ranks_the_errors():
    error, spread = _simulated(5000)
    rho = unc_report.rank_correlation(unc.radius(spread, unc.fit_calibration(error, spread)), error)
    assert rho > 0.4
    assert abs(unc_report.rank_correlation(np.random.default_rng(0).random(error.shape), error)) < 0.05


def test_rank_correlation_matches_scipy_with_ties():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, 200).astype(float)
    y = x + rng.integers(0, 3, 200)
    assert unc_report.rank_correlation(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert math.isnan(unc_report.rank_correlation(np.ones(5), np.arange(5.0)))


def test_interpolated_coverage_lies_between_its_neighbours_and_bad_coverage_is_refused():
    error, spread = _simulated(2000)
    cal = unc.fit_calibration(error, spread)
    lo, mid, hi = cal.factors(0.90), cal.factors(0.905), cal.factors(0.91)
    assert np.all(lo <= mid) and np.all(mid <= hi)
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(unc.UncertaintyError, match="between 0 and 1"):
            cal.factors(bad)
    few = unc.fit_calibration(error[:50], spread[:50])
    assert np.isfinite(few.factors(0.9)).all()                      # rank ceil(51 * 0.9) = 46 <= 50
    with pytest.raises(unc.UncertaintyError, match="too few"):
        few.factors(0.99)                                           # rank 51 > 50: no finite bound


def test_factors_round_trip_through_a_checkpoint_loaded_weights_only(tmp_path):
    error, spread = _simulated(3000, joints=17)
    cal = unc.fit_calibration(error, spread, {"data": "synthetic/det", "hypotheses": 5,
                                              "frames": [["S9/Walking/cam0:80:0a0b0c0d", 0, 40]]})
    path = tmp_path / "c.bin"
    atomic_save(make_checkpoint(tiny_model(), uncertainty=cal.to_checkpoint()), path)
    back = unc.Calibration.from_checkpoint(safe_load(path), path)
    np.testing.assert_array_equal(back.factors(0.9), cal.factors(0.9))
    np.testing.assert_array_equal(back.factors(0.63), cal.factors(0.63))
    assert back.fitted_on == cal.fitted_on and back.counts == [3000] * 17
    assert unc.Calibration.from_checkpoint(safe_load(path) | {"uncertainty": None}) is None
    damaged = cal.to_checkpoint()
    damaged["table"][3] = damaged["table"][3][:5]
    with pytest.raises(unc.UncertaintyError, match="damaged"):
        unc.Calibration.from_checkpoint({"uncertainty": damaged}, "x.bin")


def test_split_keeps_all_cameras_of_a_recording_together_and_alternates_recordings():
    seqs = make_sequences(6, frames=12)                             # actions cycle over 3 names
    seqs += [dataclasses.replace(s, subject="S11") for s in seqs]
    masks, how = unc_frames.calibration_split(seqs)
    fit = {unc_frames.recording_of(s) for s, m in zip(seqs, masks) if m.all()}
    held = {unc_frames.recording_of(s) for s, m in zip(seqs, masks) if not m.any()}
    assert len(fit) == 3 and len(held) == 3 and not fit & held and "every other recording" in how
    one = make_sequences(1, frames=20)
    masks, how = unc_frames.calibration_split(one)
    assert masks[0].tolist() == [True] * 10 + [False] * 10 and "first half" in how


def test_fitted_frames_are_recognised_by_content_not_by_name():
    seq = make_sequences(1, frames=20)[0]
    cal = unc.Calibration(table=[[1.0]] * len(unc.LEVELS), counts=[10],
                          fitted_on={"frames": [[unc_frames.fingerprint(seq), 2, 7]]})
    assert np.flatnonzero(unc_frames.fitted_mask(cal, seq)).tolist() == [2, 3, 4, 5, 6]
    other = dataclasses.replace(seq, pose_2d=seq.pose_2d + 1e-3)     # same name, other content
    assert not unc_frames.fitted_mask(cal, other).any()


def _evaluate(seqs, **kw):
    return evaluate(tiny_model(), DDIMSampler(Diffusion(), 2), seqs, hypotheses=3, group=2, progress=False, **kw)


def test_frame_records_are_the_kept_last_iteration_poses_and_their_spread():
    seqs = make_sequences(2, frames=20)                             # 20 and 23 frames: end-aligned overlap
    results = _evaluate(seqs, keep={"poses", "hypotheses", "frames", "frame_poses"}, exact_frames=True)
    for r, seq in zip(results, seqs):
        rec = r.frames
        assert rec.seen.all()
        np.testing.assert_array_equal(rec.j_agg, r.poses["J-Agg"][-1])
        np.testing.assert_allclose(rec.p_agg, r.poses["P-Agg"][-1], atol=1e-7)
        hyps = torch.from_numpy(r.hypotheses[-1])                   # (H, N, J, 3)
        np.testing.assert_allclose(rec.spread, unc.hypothesis_spread(hyps, torch.from_numpy(rec.j_agg)).numpy(),
                                   atol=1e-7)
        np.testing.assert_allclose(rec.error, np.linalg.norm(rec.j_agg - seq.pose_3d, axis=-1), atol=1e-6)
        assert np.all(rec.spread[:, 0] == 0) and np.all(rec.spread[:, 1:] > 0)


def test_report_tables_are_the_same_with_and_without_the_frame_records():
    seqs = make_sequences(3, frames=20, valid=True)
    plain = Report(_evaluate(seqs, protocol2=True)).to_json()
    results = _evaluate(seqs, protocol2=True, keep={"frames"})
    report = Report(results)
    masks, _ = unc_frames.calibration_split(seqs)
    cal = unc_frames.fit_from_results(results, [np.ones_like(m) for m in masks], {"data": "test"})
    report.calibration = unc_report.evaluate_calibration(results, cal, 0.9)
    with_block = report.to_json()
    assert with_block.pop("calibration")["calibrated"] is True
    assert with_block == plain
    assert "Uncertainty: radius for 90% coverage" in report.text()


def test_calibration_block_counts_valid_frames_leaves_out_the_root_and_splits_held_out():
    seqs = make_sequences(3, frames=20, valid=True)
    results = _evaluate(seqs, keep={"frames"})
    fit_only = [np.full(s.num_frames, i == 0) for i, s in enumerate(seqs)]
    cal = unc_frames.fit_from_results(results, fit_only, {"data": "test"})
    block = unc_report.evaluate_calibration(results, cal, 0.9, [f"j{j}" for j in range(17)])
    valid = [int(s.valid.sum()) for s in seqs]
    assert block["all"]["frames"] == sum(valid) and block["held_out"]["frames"] == sum(valid[1:])
    assert "j0" not in block["all"]["joints"] and len(block["all"]["joints"]) == 16
    e = np.concatenate([r.frames.error[r.sequence.valid] for r in results[1:]])[:, 1:]
    rad = np.concatenate([unc.radius(r.frames.spread[r.sequence.valid], cal, 0.9) for r in results[1:]])[:, 1:]
    assert block["held_out"]["coverage"] == pytest.approx((e <= rad).mean())
    assert block["held_out"]["rank_correlation"] == pytest.approx(spearmanr(rad.ravel(), e.ravel()).statistic)
    un = unc_report.evaluate_calibration(results, None, 0.9)
    assert un["calibrated"] is False and un["all"]["mean_radius_mm"] < block["all"]["mean_radius_mm"]
    assert "uncalibrated" in unc_report.format_calibration(un)


def test_a_single_hypothesis_has_no_spread():
    r = evaluate(tiny_model(), DDIMSampler(Diffusion(), 1), make_sequences(1), hypotheses=1, group=2, progress=False,
                 keep={"frames"})[0]
    assert np.isnan(r.frames.spread).all()
    from common.run.calibration import check_hypotheses
    with pytest.raises(unc.UncertaintyError, match="-num_proposals 2 or more"):
        check_hypotheses(1)


def test_in_the_wild_result_carries_the_calibrated_radius_and_draws_it(tmp_path):
    from common.cli import in_the_wild as wild_script
    from common.model.denoiser import Denoiser, DenoiserConfig
    from test_main_in_the_wild import H, W, walking_clip

    torch.manual_seed(0)
    cal = unc.Calibration(table=[[0.0] + [2.0] * 16] * len(unc.LEVELS), counts=[500] * 17,
                          fitted_on={"hypotheses": 3})
    ckpt = tmp_path / "wild.bin"
    atomic_save(make_checkpoint(Denoiser(DenoiserConfig(frames=9, channels=16, depth=1, heads=2)),
                                args={"input_layout": "coco"}, uncertainty=cal.to_checkpoint()), ckpt)
    source = tmp_path / "clip.npy"
    np.save(source, walking_clip(6)[0])
    rc = wild_script.main(["--evaluate", str(ckpt), "--keypoints-file", str(source), "--width", str(W), "--height",
                           str(H), "-num_proposals", "3", "-sampling_timesteps", "2", "--render", "--viz-size", "1",
                           "--viz-output", str(tmp_path / "a.gif")])
    assert rc == 0
    out = np.load(tmp_path / "clip_3d.npz", allow_pickle=False)
    spread = np.median(np.linalg.norm(out["hypotheses"][:, -1] - out["j_agg"][:, None], axis=-1), axis=1)
    np.testing.assert_allclose(out["uncertainty"], 2000 * np.maximum(spread, 1e-4) * (np.arange(17) > 0), rtol=1e-5)
    assert out["uncertainty"].shape == (6, 17) and out["uncertainty_calibrated"] and out["coverage"] == 0.9
    assert (tmp_path / "a.gif").stat().st_size > 0


def test_drawings_colour_the_joints_by_their_radius_and_check_its_shape(tmp_path):
    from common.outputs.render import plot_hypotheses_frame, render_animation
    from common.geometry.skeleton import h36m_skeleton_17

    rng = np.random.default_rng(0)
    hyps = rng.normal(scale=0.2, size=(4, 5, 17, 3)).astype(np.float32)
    radii = rng.uniform(5, 80, size=(4, 17)).astype(np.float32)
    png = plot_hypotheses_frame(tmp_path / "f.png", hyps[0], hyps[0, 0], None, h36m_skeleton_17(),
                                uncertainty=radii[0])
    assert png.stat().st_size > 0
    with pytest.raises(ValueError, match="uncertainty has shape"):
        render_animation(tmp_path / "a.gif", rng.uniform(0, 100, (4, 17, 2)), {"J-Agg": hyps[:, 0]},
                         h36m_skeleton_17(), uncertainty=radii[:3])


def test_reliability_figure_from_held_out_frames(tmp_path):
    error, spread = _simulated(4000, joints=3)
    cal = unc.fit_calibration(error[:2000], spread[:2000])
    stated, observed = unc_report.reliability_curve(error[2000:], spread[2000:], cal)
    np.testing.assert_allclose(observed, stated, atol=0.03)
    assert unc_report.plot_reliability(tmp_path / "r.png", error[2000:], spread[2000:], cal).stat().st_size > 0
