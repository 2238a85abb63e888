"""The one runner of the entry scripts (common/run/runner.py) and the data-set registry
(common/run/registry.py): a data set registered in a test is trained and evaluated by
main.py -d <name> with nothing else changed, its evaluation overrides and after-evaluation
hook take effect, and the uncertainty blocks take the joint names and label from the data set."""
import json

import pytest

from common.model.checkpoint import safe_load
from common.cli import draw as main_draw
from common.cli import h36m as main_script
from common.cli import in_the_wild as wild_script
from common.geometry.coco import input_layout
from common.run.config import RunConfig
from common.run import registry
from common.datasets.base import Dataset, Selection
from common.datasets.h36m import H36MDataset
from common.datasets.mpi_inf_3dhp import MPIINF3DHPDataset, mpi_inf_3dhp_metadata
from common.datasets.synthetic import write_synthetic_h36m
from common.run.runner import run_experiment, settle_resume
from common.geometry.skeleton import h36m_skeleton_17
from conftest import make_sequences, save_tiny_checkpoint

NAME = "tiny_registered"
JOINTS = [f"joint_{j}" for j in range(17)]
TINY = ["-d", NAME, "--nolog", "--no-progress", "--device", "cpu", "-num_proposals", "3", "-sampling_timesteps", "2",
        "-b", "2"]


class TinySet(Dataset):
    """Three test and three training sequences made in memory; named joints and its own label."""

    name = NAME
    layout = input_layout("h36m")
    joint_names = JOINTS

    def __init__(self, config):
        self.config = config

    def train_sequences(self, selection: Selection):
        return make_sequences(3, 24, seed=1, subject="S1")

    def test_sequences(self, selection: Selection):
        return make_sequences(3, 24, seed=2, subject="S9")

    def label(self, run, sequences) -> str:
        return f"tiny set of {len(sequences)} sequences"


@pytest.fixture
def tiny_set():
    """Register TinySet (evaluation keeps the poses; the hook records what it got); forget it after."""
    calls = []
    entry = registry.register(NAME, lambda config, args: TinySet(config), evaluation={"keep": {"poses"}},
                              after_evaluation=calls.append)
    yield entry, calls
    registry.unregister(NAME)


@pytest.mark.parametrize("script", [main_script, wild_script], ids=["main.py", "main_in_the_wild.py"])
def test_a_registered_data_set_is_evaluated_by_its_name_with_its_overrides_and_hook(tiny_set, script, tmp_path):
    _, calls = tiny_set
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.bin")
    out = tmp_path / "out"
    assert script.main([*TINY, "-c", str(out), "--evaluate", str(ckpt), "--calibrate"]) == 0

    tables = json.loads((out / "eval_tiny.json").read_text())
    assert set(tables["actions"]["p1"]["J-Agg"]) == {"Walking", "Eating", "Average"}
    assert list(tables["calibration"]["all"]["joints"]) == JOINTS[1:]          # the data set's names (root left out)
    assert "tiny set of 3 sequences" in tables["calibration"]["fitted_on"]       # the refit's label: Dataset.label
    refitted = safe_load(out / "tiny_calibrated.bin")["uncertainty"]["fitted_on"]
    assert refitted["data"] == "tiny set of 3 sequences"

    [done] = calls                                                              # the hook ran once, after the tables
    assert isinstance(done.dataset, TinySet) and done.out_dir == out and len(done.sequences) == 3
    assert done.report.calibration["all"]["joints"].keys() == set(JOINTS[1:])
    assert all(r.poses is not None for r in done.results)                      # evaluation={"keep": {"poses"}}
    assert done.config.evaluate == str(ckpt)


def test_a_registered_data_set_trains_and_labels_its_calibration(tiny_set, tmp_path):
    out = tmp_path / "run"
    assert main_script.main([*TINY, "-c", str(out), "-f", "9", "-cs", "16", "-dep", "1", "--heads", "2", "-e", "1",
                             "-s", "1", "--calibrate"]) == 0
    checkpoint = safe_load(out / "latest_epoch.bin")
    assert checkpoint["uncertainty"]["fitted_on"]["data"] == "tiny set of 3 sequences"
    assert checkpoint["args"]["dataset"] == NAME
    _, calls = tiny_set
    assert calls == []                                                          # no evaluation, no hook


def test_the_runner_returns_what_it_ran(tiny_set, tmp_path):
    config = RunConfig(dataset=NAME, checkpoint=str(tmp_path / "run"), nolog=True, no_progress=True,
                       number_of_frames=9, cs=16, dep=1, heads=2, epochs=1, batch_size=2, stride=1,
                       no_eval=True)
    outcome = run_experiment(config, "cpu")
    assert isinstance(outcome.dataset, TinySet) and outcome.dataset.config is config
    assert len(outcome.train) == 3 and len(outcome.test) == 3
    assert outcome.trainer.epoch == 1 and outcome.report is None
    assert outcome.out_dir == tmp_path / "run"


def test_unregistered_names_are_human36m_format_files_and_the_built_ins_are_registered():
    assert {"h36m", "mpi_inf_3dhp"} <= set(registry.registered())
    assert registry.lookup("synthetic") is registry.lookup("h36m")             # -d synthetic: Human3.6M's format
    assert registry.lookup("anything").build is registry.h36m_format
    threedhp = registry.lookup("mpi_inf_3dhp")
    assert threedhp.evaluation == {"keep": {"poses"}} and threedhp.after_evaluation is registry.score_mpi_inf_3dhp
    assert not threedhp.data_flags


def test_the_3dhp_registration_reads_its_own_flags(tmp_path):
    class Flags:
        raw_dir, calibrated_camera, test_sequences = str(tmp_path / "raw"), True, "TS1,TS5"

    config = RunConfig(data_dir=str(tmp_path))
    dataset = registry.build_dataset(config, Flags(), "mpi_inf_3dhp")
    assert isinstance(dataset, MPIINF3DHPDataset) and dataset.calibrated_camera
    assert dataset.test_source == tmp_path / "raw"                               # no processed test file there
    assert registry.mpi_inf_3dhp_selection(config, Flags()).subjects_test == ["TS1", "TS5"]
    assert registry.mpi_inf_3dhp_selection(config, None).subjects_test is None   # the default: all present


def test_resume_takes_the_data_flags_only_where_they_choose_the_data(tiny_set, tmp_path):
    config = RunConfig(dataset=NAME, resume="missing.bin", checkpoint=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="-r missing.bin"):
        settle_resume(config)                                                   # load_resume: before the data
    assert settle_resume(config, "mpi_inf_3dhp") == (config, None)              # run_training loads it later
    assert settle_resume(config.replace(evaluate="x.bin")) == (config.replace(evaluate="x.bin"), None)


def test_calibration_names_and_labels_come_from_the_data_set():
    run = RunConfig(dataset="synthetic", keypoints="det")
    seqs = make_sequences(2, 12, subject="TS5")
    assert Dataset.label(TinySet(run), run, seqs) == "synthetic (-k det)"      # the default: the data flags
    assert Dataset.joint_names is None                                          # the default: joints by index
    threedhp = MPIINF3DHPDataset()
    assert threedhp.joint_names == mpi_inf_3dhp_metadata()["joint_names"]
    assert threedhp.label(run, seqs) == "MPI-INF-3DHP TS5"


def test_an_h36m_dataset_names_the_human36m_joints(tmp_path):
    write_synthetic_h36m(tmp_path, name="names", frames_per_sequence=40)
    assert H36MDataset(tmp_path, "gt", "names").joint_names == h36m_skeleton_17().names


def test_drawing_refuses_a_data_set_without_human36m_sequences(tiny_set, tmp_path, capsys):
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.bin")
    assert main_draw.main(["-d", NAME, "--evaluate", str(ckpt), "--device", "cpu", "--viz-output",
                           str(tmp_path / "x.png")]) == 2
    assert f"-d {NAME}: drawing reads sequences by subject, action and camera" in capsys.readouterr().err
