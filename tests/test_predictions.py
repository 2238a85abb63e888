"""--save-predictions (common/outputs/predictions.py) and the uncertainty flags of main.py / main_3dhp.py:
files that read back without pickles and match the kept poses, factors fitted after training
and refitted with --calibrate, and tables and .mat files unchanged by all of it."""
import json
import shutil

import numpy as np
import pytest
import torch

from common.model.checkpoint import atomic_save, make_checkpoint, safe_load
from common.cli import h36m as main_script
from common.model.diffusion import DDIMSampler, Diffusion
from common.evaluation.mpi_inf_3dhp import export_evaluation, read_3dhp_mat
from common.outputs.predictions import load_predictions, save_predictions
from common.uncertainty.factors import Calibration
from conftest import evaluate, make_sequences, synthetic_as_h36m, tiny_model

TINY = ["-f", "9", "-cs", "16", "-dep", "1", "--heads", "2", "-b", "8", "-s", "1", "--nolog"]
EVAL = ["-num_proposals", "3", "-sampling_timesteps", "2", "-b", "4", "--nolog", "--heads", "2"]


def _evaluate(seqs, **kw):
    return evaluate(tiny_model(), DDIMSampler(Diffusion(), 2), seqs, hypotheses=3, group=2, progress=False, **kw)


def test_saved_predictions_read_back_without_pickles_and_match_the_kept_poses(tmp_path):
    seqs = make_sequences(3, frames=20, valid=True)                 # 20, 23, 26 frames: overlapping last windows
    results = _evaluate(seqs, keep={"poses", "hypotheses", "frames", "frame_poses"}, exact_frames=True)
    cal = Calibration(table=[[2.0] * 17] * 99, counts=[100] * 17)
    path = save_predictions(tmp_path / "p.npz", results, cal, 0.9, frame_step=2)
    with np.load(path, allow_pickle=False) as d:                    # plain arrays only
        assert d["sequences"].tolist() == ["S9/Walking 1/0", "S9/Eating/1", "S9/Walking/2"]
        assert d["calibrated"] and d["coverage"] == 0.9
    back = load_predictions(path)
    for r, seq in zip(results, seqs):
        p = back[f"{seq.subject}/{seq.action}/{seq.camera}"]
        np.testing.assert_allclose(p["j_agg"], 1000 * r.poses["J-Agg"][-1], atol=1e-4)
        np.testing.assert_allclose(p["p_agg"], 1000 * r.poses["P-Agg"][-1], atol=1e-3)
        np.testing.assert_allclose(p["ground_truth"], 1000 * seq.pose_3d, atol=1e-4)
        spread = np.median(np.linalg.norm(r.hypotheses[-1] - r.poses["J-Agg"][-1][None], axis=-1), axis=0)
        np.testing.assert_allclose(p["uncertainty"], 2000 * np.maximum(spread, 1e-4), rtol=1e-5)
        assert p["frames"].tolist() == list(range(0, 2 * seq.num_frames, 2))
        assert p["valid"].tolist() == seq.valid.tolist() and p["j_agg"].dtype == np.float32
        assert np.all(p["j_agg"][:, 0] == 0)                        # root-relative


def test_the_overlap_comes_from_the_first_window_as_exact_frames_counts():
    seq = make_sequences(2, frames=20)[1]                           # 23 frames, F = 9: windows 0-8, 9-17, 14-22
    authors = _evaluate([seq], keep={"poses", "frames", "frame_poses"})[0]
    exact = _evaluate([seq], keep={"poses"}, exact_frames=True)[0]
    np.testing.assert_array_equal(authors.frames.j_agg, exact.poses["J-Agg"][-1])
    overlap = np.arange(14, 18)                                     # the authors' export takes the last window here
    assert not np.allclose(authors.poses["J-Agg"][-1][overlap], exact.poses["J-Agg"][-1][overlap])
    rest = np.setdiff1d(np.arange(23), overlap)
    np.testing.assert_array_equal(authors.poses["J-Agg"][-1][rest], authors.frames.j_agg[rest])


def test_mat_export_is_the_same_with_and_without_the_per_frame_records(tmp_path):
    seqs = make_sequences(2, frames=20, valid=True)
    for s, name in zip(seqs, ("TS1", "TS2")):
        s.subject = name
    plain = export_evaluation(_evaluate(seqs, keep={"poses"}), tmp_path / "a")
    more = export_evaluation(_evaluate(seqs, keep={"poses", "frames", "frame_poses"}),
                             tmp_path / "b")
    for a, b in zip(plain, more):
        ma, mb = read_3dhp_mat(a), read_3dhp_mat(b)
        assert ma.keys() == mb.keys()
        for k in ma:
            np.testing.assert_array_equal(ma[k], mb[k])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained 1 epoch with --calibrate on a small synthetic set."""
    root = tmp_path_factory.mktemp("pred")
    data = synthetic_as_h36m(root / "data", frames_per_sequence=30)
    ck = root / "ck"
    rc = main_script.main(["-c", str(ck), "--data-dir", str(data), "-a", "Greeting", "-e", "1",
                           "--calibrate", "-num_proposals", "3", "-sampling_timesteps", "2"] + TINY)
    assert rc == 0
    return data, ck


def _json(path):
    return json.loads(path.read_text())


def test_training_with_calibrate_stores_factors_fitted_on_half_the_validation_recordings(trained):
    data, ck = trained
    for name in ("best_epoch.bin", "latest_epoch.bin"):
        cal = Calibration.from_checkpoint(safe_load(ck / name))
        assert cal is not None and cal.fitted_on["hypotheses"] == 3 and cal.fitted_on["epoch"] == 1
        names = {key.split(":")[0] for key, _, _ in cal.fitted_on["frames"]}
        recordings = {n.rsplit("/", 1)[0] for n in names}
        assert len(names) == 4 and recordings == {"S11/Greeting"}    # the first of the 2 recordings, 4 cameras
        assert np.all(cal.factors(0.9)[1:] > 0) and cal.factors(0.9)[0] == 0      # the root never moves


def test_evaluation_reports_coverage_on_the_held_out_recordings_and_saves_predictions(trained, tmp_path, capsys):
    data, ck = trained
    base = ["-c", str(ck), "--data-dir", str(data), "-a", "Greeting", "--evaluate", "best_epoch.bin"] + EVAL
    assert main_script.main(base) == 0
    plain = _json(ck / "eval_best_epoch.json")
    pred = tmp_path / "pred.npz"
    assert main_script.main(base + ["--save-predictions", str(pred), "--coverage", "0.8"]) == 0
    out = capsys.readouterr().out
    assert "Uncertainty: radius for 80% coverage" in out and "not fitted on (120 frames)" in out
    result = _json(ck / "eval_best_epoch.json")
    block = result.pop("calibration")
    assert plain.pop("calibration")["coverage_stated"] == 0.9
    assert result == plain                                           # tables unchanged by the flags
    assert block["held_out"]["frames"] == 120 and block["all"]["frames"] == 240     # S9's 4 views x 30 frames
    assert 0 <= block["held_out"]["coverage"] <= 1 and len(block["all"]["joints"]) == 16
    saved = load_predictions(pred)
    assert len(saved) == 8 and all(p["j_agg"].shape == (30, 17, 3) for p in saved.values())


def test_evaluate_calibrate_writes_a_calibrated_copy_and_never_replaces_one(trained, tmp_path, capsys):
    data, ck = trained
    out = tmp_path / "out"
    args = ["-c", str(out), "--data-dir", str(data), "-a", "Walking", "-ste", "S1", "--evaluate",
            str(ck / "best_epoch.bin"), "--calibrate"] + EVAL
    assert main_script.main(args) == 0
    copy = safe_load(out / "best_epoch_calibrated.bin")
    original = safe_load(ck / "best_epoch.bin")
    assert copy["model_pos"].keys() == original["model_pos"].keys()
    assert all(torch.equal(copy["model_pos"][k], original["model_pos"][k]) for k in copy["model_pos"])
    assert copy["uncertainty"]["fitted_on"] != original["uncertainty"]["fitted_on"]
    assert "S1" in copy["uncertainty"]["fitted_on"]["frames"][0][0]
    before = (out / "best_epoch_calibrated.bin").read_bytes()
    capsys.readouterr()
    assert main_script.main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "best_epoch_calibrated.bin").read_bytes() == before
    assert main_script.main(args + ["--overwrite"]) == 0
    assert len(list(out.glob("best_epoch_calibrated.bin.previous-*"))) == 1


def test_flags_that_cannot_work_are_refused_before_sampling(trained, tmp_path, capsys):
    data, ck = trained
    base = ["-c", str(tmp_path), "--data-dir", str(data), "-a", "Walking", "--evaluate", str(ck / "best_epoch.bin"),
            "--nolog", "--heads", "2"]
    assert main_script.main(base + ["--calibrate", "-num_proposals", "1"]) == 2
    assert "-num_proposals 2 or more" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:                   # refused where the flag is parsed
        main_script.main(base + ["--coverage", "90", "-num_proposals", "2"])
    assert refused.value.code == 2 and "coverage must be a number > 0 and < 1" in capsys.readouterr().err
    assert main_script.main(base + ["--save-predictions", str(tmp_path / "p.txt"), "-num_proposals", "2"]) == 2
    assert ".npz" in capsys.readouterr().err
    assert not list(tmp_path.glob("eval_*"))


def test_main_3dhp_saves_predictions_and_calibrates_on_the_real_ts5(tmp_path, capsys):
    """The real TS5 annotations: one recording, so --calibrate fits on the first half of its frames
    (0-159) and the report's held-out numbers count the valid frames of the second half."""
    from common.cli import mpi_inf_3dhp as main_3dhp
    from common.datasets.mpi_inf_3dhp import read_test_entries
    from common.model.denoiser import Denoiser, DenoiserConfig
    from conftest import MPI_INF_3DHP_TEST_DIR, require_3dhp_sequence

    require_3dhp_sequence("TS5")
    raw = tmp_path / "raw"
    shutil.copytree(MPI_INF_3DHP_TEST_DIR / "TS5", raw / "TS5")
    data = tmp_path / "data"
    assert main_3dhp.main(["--prepare", "--raw-dir", str(raw), "--data-dir", str(data)]) == 0
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.bin"
    atomic_save(make_checkpoint(Denoiser(DenoiserConfig(frames=27, channels=16, depth=1, heads=2, drop_path=0.0))),
                ckpt)
    out, pred = tmp_path / "out", tmp_path / "ts5.npz"
    assert main_3dhp.main(["--data-dir", str(data), "-c", str(out), "--evaluate", str(ckpt), "--calibrate",
                           "--save-predictions", str(pred)] + EVAL) == 0
    assert "fitted on 116 frames of 1 sequence of MPI-INF-3DHP TS5" in capsys.readouterr().out   # valid of 0-159
    entry = read_test_entries(data)["TS5"]
    saved = load_predictions(pred)["TS5/TS5/0"]
    assert saved["valid"].tolist() == entry["valid"].astype(bool).tolist() and saved["j_agg"].shape == (320, 17, 3)
    gt = entry["data_3d"] - entry["data_3d"][:, 14:15]
    np.testing.assert_allclose(saved["ground_truth"], gt, atol=1e-3)
    mat = read_3dhp_mat(out / "inference_data_J_Agg.mat")["TS5"][..., -1].transpose(2, 1, 0)   # (320, 17, 3) mm
    first = np.arange(293)                                 # before the end-aligned last window (frames 293-319)
    np.testing.assert_allclose(mat[first], saved["j_agg"][first], atol=1e-3)
    block = _json(out / "eval_tiny.json")["calibration"]
    assert block["held_out"]["frames"] == 160 and block["all"]["frames"] == 276    # valid frames 160-319 / all
    assert "head_top" in block["all"]["joints"] and "pelvis" not in block["all"]["joints"]
    assert (out / "tiny_calibrated.bin").is_file()
