"""main.py end to end on a tiny synthetic set in the Human3.6M file format: the authors'
command lines, our checkpoints and theirs, and the errors users meet first."""
import json
import shutil

import numpy as np
import torch
import pytest

from common.cli import h36m as main_script
from conftest import synthetic_as_h36m

TINY = ["-f", "9", "-cs", "16", "-dep", "1", "--heads", "2", "-e", "1", "-b", "8", "-s", "1", "--nolog"]


@pytest.fixture(scope="module")
def h36m_dir(tmp_path_factory):
    """The synthetic set renamed to the Human3.6M file names the authors' commands read."""
    return synthetic_as_h36m(tmp_path_factory.mktemp("data"), frames_per_sequence=30)


def test_authors_training_command_then_evaluation_of_our_checkpoint(h36m_dir, tmp_path, capsys):
    ck = tmp_path / "checkpoint"
    rc = main_script.main(["-k", "cpn_ft_h36m_dbb", "-c", str(ck), "-gpu", "0", "--data-dir", str(h36m_dir),
                           "-a", "Walking,Greeting"] + TINY)
    assert rc == 0
    assert {p.name for p in ck.iterdir()} >= {"best_epoch.bin", "latest_epoch.bin"}
    # Our checkpoint carries its architecture: no -f/-cs/-dep needed.
    rc = main_script.main(["-k", "cpn_ft_h36m_dbb", "-c", str(ck), "-gpu", "0", "--nolog", "--data-dir", str(h36m_dir),
                           "--evaluate", str(ck / "best_epoch.bin"), "-num_proposals", "3", "-sampling_timesteps", "2",
                           "-b", "4", "-a", "Walking,Greeting", "--p2", "--by-subject", "--heads", "2"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "Protocol #1" in out and "Protocol #2" in out and "Average" in out and "subject S11" in out
    result = json.loads((ck / "eval_best_epoch.json").read_text())
    assert set(result["actions"]["p1"]) == {"J-Agg", "P-Agg", "P-Best", "J-Best", "T-Agg"}
    assert set(result["actions"]) == {"p1", "p2", "mpjve", "accel", "bone_cv"}       # the motion rows too
    assert "Motion of the poses" in out and "Accel mm/frame^2" in out
    bone_cv = result["actions"]["bone_cv"]
    assert bone_cv["T-Agg"]["Average"][-1] < 0.01 < bone_cv["J-Agg"]["Average"][-1]   # % : steady bones
    assert set(result["actions"]["p1"]["J-Agg"]) == {"Greeting", "Walking", "Average"}
    assert len(result["actions"]["p1"]["J-Agg"]["Average"]) == 2          # one value per iteration
    subjects = result["subjects"]["p1"]["J-Best"]
    assert set(subjects) == {"S9/Greeting", "S9/Walking", "S11/Greeting", "S11/Walking", "S9", "S11"}
    np.testing.assert_allclose(subjects["S9"], np.mean([subjects["S9/Greeting"], subjects["S9/Walking"]], axis=0),
                               atol=1e-3)
    assert (ck / "eval_best_epoch.log").read_text().count("Protocol #1") >= 2


def test_authors_evaluation_command_on_their_checkpoint(h36m_dir, tmp_path, fixture_a):
    rc = main_script.main(["-k", "cpn_ft_h36m_dbb", "-c", str(tmp_path), "-gpu", "0", "--nolog",
                           "--data-dir", str(h36m_dir), "--evaluate", str(fixture_a[2] / "checkpoint.bin"),
                           "-num_proposals", "2", "-sampling_timesteps", "2", "-b", "4", "-f", "9", "-cs", "64",
                           "-dep", "2", "-a", "Walking"])
    assert rc == 0
    result = json.loads((tmp_path / "eval_checkpoint.json").read_text())
    errors = np.array(result["actions"]["p1"]["J-Best"]["Average"])
    assert errors.shape == (2,) and np.all(np.isfinite(errors))


def test_mismatched_checkpoint_names_the_fitting_flags(h36m_dir, tmp_path, fixture_a, capsys):
    rc = main_script.main(["--nolog", "--data-dir", str(h36m_dir), "-k", "cpn_ft_h36m_dbb", "-c", str(tmp_path),
                           "--evaluate", str(fixture_a[2] / "checkpoint.bin"), "-f", "243", "-cs", "512"])
    assert rc == 2
    assert "Run with `-f 9 -cs 64`" in capsys.readouterr().err


def test_missing_data_says_where_files_go_and_that_the_demo_needs_none(tmp_path, capsys):
    rc = main_script.main(["--data-dir", str(tmp_path), "--nolog", "-c", str(tmp_path / "ck")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "data_3d_h36m.npz" in err and "--demo" in err


def test_nan_keypoints_are_reported(h36m_dir, tmp_path, capsys):
    data = dict(np.load(h36m_dir / "data_2d_h36m_cpn_ft_h36m_dbb.npz", allow_pickle=True))
    positions = data["positions_2d"].item()
    positions["S9"]["Walking"][0][3, 5] = np.nan
    np.savez(tmp_path / "data_2d_h36m_cpn_ft_h36m_dbb.npz", positions_2d=positions, metadata=data["metadata"])
    shutil.copy(h36m_dir / "data_3d_h36m.npz", tmp_path / "data_3d_h36m.npz")
    rc = main_script.main(["--data-dir", str(tmp_path), "--nolog", "-c", str(tmp_path / "ck"), "-a", "Walking"] + TINY)
    err = capsys.readouterr().err
    assert rc == 2 and "NaN" in err and "S9" in err


def tiny_demo_training(h36m_dir, ck):
    """One epoch of a tiny model as the demo trains, into ck: the Outcome the demo's last step takes."""
    from common.run.arguments import build_parser
    from common.run.config import RunConfig
    from common.run.runner import run_experiment

    args = build_parser("demo").parse_args(["-k", "cpn_ft_h36m_dbb", "--data-dir", str(h36m_dir), "-c", str(ck),
                                            "-f", "9", "-cs", "16", "-dep", "1", "--heads", "2", "-e", "1",
                                            "-b", "8", "-s", "1", "--nolog", "-num_proposals", "3",
                                            "-sampling_timesteps", "1", "--no-progress"])
    return run_experiment(RunConfig.from_args(args), "cpu", args=args)


def test_the_demo_fits_its_uncertainty_factors_from_its_own_evaluation(h36m_dir, tmp_path, capsys):
    """The demo's last step: one evaluation of the final weights prints the tables and fits the
    factors on every other test recording; they go into latest_epoch.bin and best_epoch.bin (the
    same epoch here), and no calibrated copy is written."""
    from common.model.checkpoint import safe_load

    ck = tmp_path / "ck"
    outcome = tiny_demo_training(h36m_dir, ck)
    assert "uncertainty" not in safe_load(ck / "latest_epoch.bin")           # training alone fits nothing
    main_script.demo_comparison(outcome)
    out = capsys.readouterr().out
    latest, best = safe_load(ck / "latest_epoch.bin"), safe_load(ck / "best_epoch.bin")
    assert latest["uncertainty"] == best["uncertainty"] and latest["uncertainty"]["fitted_on"]["hypotheses"] == 3
    report = json.loads((ck / "demo_eval.json").read_text())
    assert report["calibration"] and "Demo result: J-Agg MPJPE" in out
    assert out.count("stored the uncertainty factors in") == 2
    assert not list(ck.glob("*_calibrated.bin"))


def test_the_demo_fits_an_earlier_best_epoch_on_its_own_weights(h36m_dir, tmp_path, capsys):
    """When best_epoch.bin holds another epoch than the final weights, the demo's evaluation fits
    the final weights' factors into latest_epoch.bin only, and best_epoch.bin gets factors fitted
    on its own weights (fit_best_epoch), marked with its epoch."""
    from common.model.checkpoint import atomic_save, safe_load

    ck = tmp_path / "ck"
    outcome = tiny_demo_training(h36m_dir, ck)
    earlier = safe_load(ck / "best_epoch.bin")
    earlier["epoch"] = 0                                               # an earlier epoch, other weights
    earlier["model_pos"] = {k: v * 0.5 if v.is_floating_point() else v for k, v in earlier["model_pos"].items()}
    atomic_save(earlier, ck / "best_epoch.bin")
    main_script.demo_comparison(outcome)
    out = capsys.readouterr().out
    latest, best = safe_load(ck / "latest_epoch.bin"), safe_load(ck / "best_epoch.bin")
    assert best["epoch"] == 0 and best["uncertainty"]["fitted_on"]["epoch"] == 0
    assert latest["uncertainty"]["fitted_on"]["hypotheses"] == best["uncertainty"]["fitted_on"]["hypotheses"] == 3
    assert latest["uncertainty"]["table"] != best["uncertainty"]["table"]                  # fitted apart
    assert "fitting the uncertainty factors for epoch 0" in out
    torch.testing.assert_close(best["model_pos"], earlier["model_pos"])          # the weights are untouched
