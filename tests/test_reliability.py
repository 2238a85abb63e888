"""Damaged or doubtful input files get a one-line error: checkpoints (and their permissions and
temporary files), the 3DHP scorer's predictions, conformance folders."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.model.checkpoint import (CheckpointError, atomic_save, load_denoiser, make_checkpoint,
                               remove_stale_temp_files, safe_load)
from common.model.denoiser import Denoiser, DenoiserConfig
from common.evaluation.mpi_inf_3dhp import export_3dhp_mat, read_3dhp_mat, score_predictions

REPO = Path(__file__).resolve().parents[1]

TINY = DenoiserConfig(frames=3, channels=16, depth=1, heads=2)


def one_line(text: str) -> bool:
    return "\n" not in str(text).strip()


def test_empty_file_is_named_as_empty(tmp_path):
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty") as e:
        safe_load(tmp_path / "empty.bin")
    assert one_line(e.value)


def test_text_file_is_named_as_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.bin").write_text("epoch 12, loss 40mm\n")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint") as e:
        safe_load(tmp_path / "notes.bin")
    assert one_line(e.value)


def test_truncated_checkpoint_is_one_line(tmp_path):
    atomic_save(make_checkpoint(Denoiser(TINY)), tmp_path / "a.bin")
    data = (tmp_path / "a.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="could not load") as e:
        safe_load(tmp_path / "cut.bin")
    assert one_line(e.value)


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c.update(colour="red"), "unknown fields \\['colour'\\]"),
    (lambda c: c.update(depth="two"), "depth = 'two'"),
    (lambda c: c.pop("frames"), "lacks \\['frames'\\]"),
    (lambda c: c.update(channels=15), "not a multiple of heads"),
    (lambda c: c.update(channels=32), "do not fit the stored architecture"),
])
def test_hand_edited_model_config_is_a_clear_error(tmp_path, edit, expected):
    ckpt = make_checkpoint(Denoiser(TINY))
    edit(ckpt["model_config"])
    torch.save(ckpt, tmp_path / "edited.bin")
    with pytest.raises(CheckpointError, match=expected) as e:
        load_denoiser(tmp_path / "edited.bin")
    assert one_line(e.value)


def test_checkpoints_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_save({"x": 1}, tmp_path / "a.bin")
        os.umask(0o077)
        atomic_save({"x": 1}, tmp_path / "b.bin")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o600


def test_stale_temp_files_of_ours_are_removed_and_nothing_else(tmp_path):
    stale = tmp_path / "latest_epoch.bin.ab12_xYz.tmp"      # what a SIGKILL mid-save leaves
    other = tmp_path / "best_epoch.bin.Q1w2E3r4.tmp"
    foreign = [tmp_path / "notes.tmp", tmp_path / "data.npz.ab12cd34.tmp", tmp_path / "latest_epoch.bin.tmp"]
    for f in [stale, other] + foreign:
        f.write_bytes(b"partial")
    atomic_save({"x": 1}, tmp_path / "latest_epoch.bin")
    assert not stale.exists() and other.exists()              # a save cleans its own name's leftovers
    assert remove_stale_temp_files(tmp_path) == [other]       # the start of a run cleans all of ours
    assert all(f.exists() for f in foreign)
    assert torch.load(tmp_path / "latest_epoch.bin") == {"x": 1}


# ---------------------------------------------------------------- scorer and conformance inputs

def _gt(frames=6):
    rng = np.random.default_rng(0)
    return {"TS1": (rng.normal(0, 300, (frames, 17, 3)), np.ones(frames, bool), None)}


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_3dhp_scorer_refuses_non_finite_predictions(bad):
    gt = _gt()
    pred = gt["TS1"][0].copy()
    pred[3, 5, 1] = bad
    with pytest.raises(ValueError, match="1 NaN/inf values \\(first at iteration 1, frame 3\\)") as e:
        score_predictions({"TS1": pred}, gt)
    assert one_line(e.value)
    assert np.isfinite(score_predictions({"TS1": gt["TS1"][0]}, gt)[0].activitywise.headline("All")["mpjpe"])


def test_3dhp_scorer_names_a_truncated_or_foreign_mat_file(tmp_path):
    path = export_3dhp_mat(tmp_path / "inference_data_J_Agg.mat", {"TS1": np.zeros((1, 6, 17, 3))})
    data = path.read_bytes()
    (tmp_path / "cut.mat").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.mat").write_text("TS1 = [1 2 3]\n")
    for name in ("cut.mat", "text.mat"):
        with pytest.raises(ValueError, match="cannot be read as a MATLAB .mat file") as e:
            read_3dhp_mat(tmp_path / name)
        assert one_line(e.value)
    result = subprocess.run([sys.executable, str(REPO / "3dhp_test" / "mpii_score.py"), "--pred",
                             str(tmp_path / "text.mat"), "--gt-dir", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:") and "text.mat cannot be read" in result.stderr


def test_conformance_on_a_missing_folder_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "common.run.conformance", str(tmp_path / "absent")],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:") and "not a conformance folder" in result.stderr
