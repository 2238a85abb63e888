"""Training and evaluation runs: nothing the user had is lost, output folders are checked
before long work, resume takes the run's own settings, interrupts say how to continue."""
import shutil

import pytest
import torch

from common.cli import h36m as main_script
from common.run import experiment
from conftest import synthetic_as_h36m

TINY = ["-f", "9", "-cs", "16", "-dep", "1", "--heads", "2", "-b", "8", "-s", "1", "--nolog", "-a", "Walking",
        "-k", "cpn_ft_h36m_dbb"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_as_h36m(tmp_path_factory.mktemp("data"), frames_per_sequence=24)


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory):
    """A 1-epoch run with non-default -lrd and -b, its folder kept read-only for the tests."""
    ck = tmp_path_factory.mktemp("run") / "ck"
    assert main_script.main(["--data-dir", str(data), "-c", str(ck), "-e", "1", "-lrd", "0.5"] + TINY) == 0
    return ck


def run(data, *argv):
    return main_script.main(["--data-dir", str(data)] + list(argv))


def copy_run(src, dst):
    shutil.copytree(src, dst)
    return dst, {p.name: p.read_bytes() for p in dst.glob("*.bin")}


def test_new_run_into_a_finished_runs_folder_is_refused_and_keeps_its_files(data, finished_run, tmp_path, capsys):
    ck, before = copy_run(finished_run, tmp_path / "ck")
    assert run(data, "-c", str(ck), "-e", "1", *TINY) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert f"-r {ck / 'latest_epoch.bin'}" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in ck.glob("*.bin")} == before


def test_overwrite_moves_the_old_run_aside(data, finished_run, tmp_path):
    ck, before = copy_run(finished_run, tmp_path / "ck")
    assert run(data, "-c", str(ck), "-e", "1", "--overwrite", *TINY) == 0
    backups = list(ck.glob("previous-*"))
    assert len(backups) == 1
    assert {p.name: p.read_bytes() for p in backups[0].glob("*.bin")} == before
    assert (ck / "latest_epoch.bin").read_bytes() != before["latest_epoch.bin"]


def test_resume_takes_architecture_and_hyper_parameters_from_the_run(data, finished_run, tmp_path, capsys):
    ck, _ = copy_run(finished_run, tmp_path / "ck")
    # No -f/-cs/-dep/--heads, no -lrd/-b: all from the checkpoint.
    rc = run(data, "-c", str(ck), "-r", str(ck / "latest_epoch.bin"), "-e", "2", "--nolog", "-a", "Walking",
             "-k", "cpn_ft_h36m_dbb")
    assert rc == 0, capsys.readouterr().err
    ckpt = torch.load(ck / "latest_epoch.bin", weights_only=False)
    assert ckpt["epoch"] == 2
    assert ckpt["lr"] == pytest.approx(6e-5 * 0.5 ** 2)            # the run's -lrd 0.5, not the default
    assert ckpt["args"]["batch_size"] == 8 and ckpt["args"]["stride"] == 1 and ckpt["args"]["lr_decay"] == 0.5
    assert ckpt["model_config"]["channels"] == 16 and ckpt["model_config"]["heads"] == 2


def test_resume_reports_an_explicit_override_and_refuses_a_new_lr(data, finished_run, tmp_path, capsys):
    ck, _ = copy_run(finished_run, tmp_path / "ck")
    resume = ["-c", str(ck), "-r", str(ck / "latest_epoch.bin"), "--nolog", "-a", "Walking", "-k", "cpn_ft_h36m_dbb"]
    assert run(data, *resume, "-lr", "1e-3") == 2
    assert "drop -lr" in capsys.readouterr().err
    assert run(data, *resume, "-e", "2", "-lrd", "0.9") == 0
    assert "resuming with -lrd 0.9 from the command line (the run used 0.5)" in capsys.readouterr().out
    assert torch.load(ck / "latest_epoch.bin", weights_only=False)["lr"] == pytest.approx(6e-5 * 0.5 * 0.9)
    assert run(data, *resume, "-e", "3", "-cs", "32") == 2
    assert "-cs 16" in capsys.readouterr().err


def test_unwritable_checkpoint_folder_is_refused_before_training(data, tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setattr(experiment.Trainer, "fit", lambda *a, **k: pytest.fail("training started"))
    assert run(data, "-c", str(tmp_path / "file" / "ck"), "-e", "1", *TINY) == 2
    assert "cannot write to" in capsys.readouterr().err


def test_unwritable_folder_is_refused_before_evaluation(data, finished_run, tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setattr(experiment, "evaluate_sequences", lambda *a, **k: pytest.fail("evaluation started"))
    assert run(data, "-c", str(tmp_path / "file" / "out"), "--evaluate", str(finished_run / "best_epoch.bin"),
               "--nolog", "-a", "Walking", "-k", "cpn_ft_h36m_dbb") == 2
    assert "cannot write to" in capsys.readouterr().err


def test_evaluation_tables_are_printed_before_a_failing_write(data, finished_run, tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setattr(experiment, "check_writable", lambda *a, **k: None)   # the disk fails only at the end
    assert run(data, "-c", str(tmp_path / "file" / "out"), "--evaluate", str(finished_run / "best_epoch.bin"),
               "--nolog", "-a", "Walking", "-k", "cpn_ft_h36m_dbb") == 2
    captured = capsys.readouterr()
    assert "Protocol #1" in captured.out and "Average" in captured.out
    assert "the tables above could not be written" in captured.err


def test_interrupt_prints_how_to_resume_and_exits_130(data, finished_run, tmp_path, monkeypatch, capsys):
    ck, _ = copy_run(finished_run, tmp_path / "ck")
    train_epoch = experiment.Trainer.train_epoch

    def interrupted_second_epoch(self):
        if self.epoch >= 2:
            raise KeyboardInterrupt
        return train_epoch(self)

    monkeypatch.setattr(experiment.Trainer, "train_epoch", interrupted_second_epoch)
    rc = run(data, "-c", str(ck), "-r", str(ck / "latest_epoch.bin"), "-e", "5", "--nolog", "-a", "Walking",
             "-k", "cpn_ft_h36m_dbb")
    err = capsys.readouterr().err
    assert rc == 130 and "Traceback" not in err
    assert f"continue from the end of epoch 2 with: -r {ck / 'latest_epoch.bin'}" in err


def test_no_progress_bar_updates_in_a_redirected_log(data, tmp_path, capsys):
    assert run(data, "-c", str(tmp_path / "ck"), "-e", "1", *TINY) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "\r" not in captured.out
    assert "[1] lr" in captured.out


def test_resume_takes_the_data_flags_from_the_run(data, finished_run, tmp_path, capsys):
    ck, _ = copy_run(finished_run, tmp_path / "ck")
    # The run trained on -a Walking; resumed without -a (whose default is every action).
    assert run(data, "-c", str(ck), "-r", str(ck / "latest_epoch.bin"), "-e", "2", "--nolog") == 0
    assert "resuming on the run's data: -a Walking" in capsys.readouterr().out
    args = torch.load(ck / "latest_epoch.bin", weights_only=False)["args"]
    assert args["actions"] == "Walking" and args["subjects_train"] == "S1,S5,S6,S7,S8"
    assert args["keypoints"] == "cpn_ft_h36m_dbb" and args["subset"] == 1.0 and args["downsample"] == 1


@pytest.mark.parametrize("flag, value", [("-str", "S11"), ("-a", "Eating"), ("--subset", "0.5"),
                                         ("--downsample", "2"), ("-k", "gt")])
def test_resume_refuses_a_typed_data_flag_that_differs_and_keeps_the_files(data, finished_run, tmp_path, capsys,
                                                                           flag, value):
    ck, before = copy_run(finished_run, tmp_path / "ck")
    assert run(data, "-c", str(ck), "-r", str(ck / "latest_epoch.bin"), "-e", "2", "--nolog", flag, value) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert f"{flag} {value} differs from the resumed run's {flag} " in err and f"drop {flag}" in err
    assert {p.name: p.read_bytes() for p in ck.glob("*.bin")} == before


def test_resume_accepts_the_run_s_own_data_flags_typed_again(data, finished_run, tmp_path):
    ck, _ = copy_run(finished_run, tmp_path / "ck")
    assert run(data, "-c", str(ck), "-r", str(ck / "latest_epoch.bin"), "-e", "2", "--nolog", "-a", "Walking",
               "-str", "S1, S5,S6,S7,S8", "--subset", "1") == 0


def test_resume_on_other_training_data_is_refused(data, finished_run, tmp_path, capsys):
    ck, before = copy_run(finished_run, tmp_path / "ck")
    other = synthetic_as_h36m(tmp_path / "other", frames_per_sequence=30)
    assert run(other, "-c", str(ck), "-r", str(ck / "latest_epoch.bin"), "-e", "2", "--nolog") == 2
    assert "the training data differs from the run's" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in ck.glob("*.bin")} == before


def test_merge_resumed_flags_on_plain_dicts():
    stored = {"actions": "Walking", "subset": 0.5, "epochs": 10, "learning_rate": 1e-3}
    table = {"actions": "-a", "subset": "--subset", "epochs": "-e", "learning_rate": "-lr", "seed": "--seed"}
    values, messages, errors = experiment.merge_resumed_flags(stored, {"epochs": 20, "subset": 0.5, "seed": 3}, table,
                                                              refused={"learning_rate", "actions"})
    assert values == {"actions": "Walking", "subset": 0.5, "epochs": 20, "learning_rate": 1e-3}   # no seed stored
    assert messages == ["resuming with -e 20 from the command line (the run used 10)"] and errors == []
    _, _, errors = experiment.merge_resumed_flags(stored, {"actions": "Eating"}, table, refused={"actions"})
    assert errors == ["-a Eating differs from the resumed run's -a Walking"]
