"""main_3dhp.py on the real TS5 sequence: preparation, training that learns, and the full
--evaluate path with .mat export and the Python scorer's CSV tables."""
import json
import shutil

import numpy as np
import pytest
import torch

from common.cli import mpi_inf_3dhp as main_3dhp
from common.model.checkpoint import atomic_save, make_checkpoint
from common.datasets.mpi_inf_3dhp import read_test_entries
from common.model.denoiser import Denoiser, DenoiserConfig
from common.evaluation.mpi_inf_3dhp import read_3dhp_mat
from conftest import MPI_INF_3DHP_TEST_DIR as TS_DIR, require_3dhp_sequence

TINY = ["-f", "27", "-cs", "32", "-dep", "2", "--heads", "4", "--nolog", "-b", "4", "-s", "1", "--drop-path", "0"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Processed files prepared from the real TS5 test sequence; training uses TS5 too."""
    require_3dhp_sequence("TS5")
    raw = tmp_path_factory.mktemp("raw")
    shutil.copytree(TS_DIR / "TS5", raw / "TS5")
    d = tmp_path_factory.mktemp("data")
    assert main_3dhp.main(["--prepare", "--raw-dir", str(raw), "--data-dir", str(d)]) == 0
    e = read_test_entries(d)["TS5"]
    np.savez(d / "data_train_3dhp_ori.npz",
             data={"S1 Seq1": [{0: {"data_3d": e["data_3d"], "data_2d": e["data_2d"]}}]})
    return d


def _evaluate(data_dir, ckpt, out):
    rc = main_3dhp.main(["--data-dir", str(data_dir), "-c", str(out), "--nolog", "--evaluate", str(ckpt),
                         "-num_proposals", "3", "-sampling_timesteps", "2", "--raw-dir", str(TS_DIR), "--heads", "4"])
    assert rc == 0
    return json.loads((out / f"eval_{ckpt.stem}.json").read_text())["actions"]["p1"]["J-Agg"]["TS5"][-1]


def test_training_on_ts5_learns_and_evaluation_writes_mat_files_and_csvs(data_dir, tmp_path):
    torch.manual_seed(1)                                   # the seed main_3dhp uses: the same initial weights
    init = Denoiser(DenoiserConfig(frames=27, channels=32, depth=2, heads=4, drop_path=0.0))
    atomic_save(make_checkpoint(init), tmp_path / "init.bin")
    ck = tmp_path / "ck"
    assert main_3dhp.main(["--data-dir", str(data_dir), "-c", str(ck), "-e", "60", "-lr", "2e-3", "-lrd", "0.98", "--no-eval"]
                          + TINY) == 0
    before = _evaluate(data_dir, tmp_path / "init.bin", tmp_path / "ev0")
    after = _evaluate(data_dir, ck / "latest_epoch.bin", ck)
    assert after < 0.6 * before, (before, after)

    for mode in ("P_Agg", "P_Best", "J_Best", "J_Agg"):
        pred = read_3dhp_mat(ck / f"inference_data_{mode}.mat")["TS5"]
        assert pred.shape == (3, 17, 320, 2)                 # 3 x 17 x frames x K, mm
        assert np.all(pred[:, 14] == 0) and 50 < np.abs(pred).max() < 3000
        assert (ck / "3dhp_scores" / f"{mode}_k2_sequencewise.csv").is_file()
    summary = (ck / "3dhp_scores" / "summary.csv").read_text()
    assert summary.count("J_Agg") == 2


def test_prepare_without_raw_dir_is_a_clear_error(tmp_path, capsys):
    assert main_3dhp.main(["--prepare", "--data-dir", str(tmp_path)]) == 2
    assert "--raw-dir" in capsys.readouterr().err
