"""The authors' flags with the authors' meaning: checkpoint names inside -c, -a by prefix,
--downsample at test time, the --by-subject layout, -b/-s, and the MPI-INF-3DHP export rules."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from common.cli import h36m as main_script
from common.cli import mpi_inf_3dhp as main_3dhp
from common.cli import draw as main_draw
from common.run.arguments import build_parser
from common.run.config import RunConfig
from common.model.checkpoint import atomic_save, make_checkpoint
from common.evaluation.collectors import Scores
from common.datasets.base import Sequence
from common.datasets.h36m import H36MDataset
from common.datasets import mpi_inf_3dhp as threedhp
from common.datasets.mpi_inf_3dhp import LAYOUT
from common.model.denoiser import Denoiser, DenoiserConfig
from common.evaluation.evaluate import SequenceResult
from common.run.experiment import eval_settings, resolve_checkpoint_path
from common.inference.core import Sampling
from common.evaluation.report import Report
from conftest import evaluate, make_sequences, synthetic_as_h36m

ACTIONS = ("Walking", "WalkDog 1", "WalkTogether", "Sitting 1", "SittingDown 2", "Directions")
ARCH = ["--heads", "2", "--nolog", "-str", "S1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A synthetic set under the authors' file names, and a tiny checkpoint in a -c folder."""
    d = synthetic_as_h36m(tmp_path_factory.mktemp("data"), frames_per_sequence=40, subjects=("S1", "S9", "S11"),
                          actions=ACTIONS)
    ck = tmp_path_factory.mktemp("checkpoint")
    torch.manual_seed(0)
    atomic_save(make_checkpoint(Denoiser(DenoiserConfig(frames=9, channels=16, depth=1, heads=2))),
                ck / "h36m_best_epoch.bin")
    return d, ck


def _evaluate(data, out, *flags):
    d, ck = data
    return main_script.main(["-k", "cpn_ft_h36m_dbb", "-c", str(out), "-gpu", "0", "--data-dir", str(d),
                             "-num_proposals", "2", "-sampling_timesteps", "2", *ARCH, *flags])


# ---------------------------------------------------------------- --evaluate / -r inside -c

def test_checkpoint_names_resolve_inside_the_folder_first_then_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "a.bin").write_bytes(b"x")
    (tmp_path / "a.bin").write_bytes(b"y")
    (tmp_path / "b.bin").write_bytes(b"z")
    assert resolve_checkpoint_path("a.bin", "ck").resolve() == (tmp_path / "ck" / "a.bin").resolve()  # -c first
    assert resolve_checkpoint_path("b.bin", "ck").resolve() == (tmp_path / "b.bin").resolve()
    assert resolve_checkpoint_path(str(tmp_path / "b.bin"), "ck").resolve() == (tmp_path / "b.bin").resolve()
    with pytest.raises(FileNotFoundError, match=r"ck/missing\.bin.*missing\.bin"):
        resolve_checkpoint_path("missing.bin", "ck")


def test_authors_evaluation_command_verbatim_opens_the_file_inside_c(data, capsys):
    d, ck = data
    rc = main_script.main(["-k", "cpn_ft_h36m_dbb", "-c", str(ck), "-gpu", "0", "--nolog", "--evaluate",
                           "h36m_best_epoch.bin", "-num_proposals", "5", "-sampling_timesteps", "5", "-b", "4",
                           "--data-dir", str(d), "--heads", "2", "-a", "Walking"])
    assert rc == 0, capsys.readouterr().err
    result = json.loads((ck / "eval_h36m_best_epoch.json").read_text())
    assert result["settings"]["group"] == 4 and result["checkpoint"] == str(ck / "h36m_best_epoch.bin")
    assert len(result["actions"]["p1"]["J-Agg"]["Average"]) == 5


def test_missing_checkpoint_names_both_paths_tried(data, tmp_path, capsys):
    assert _evaluate(data, tmp_path, "--evaluate", "nothing.bin") == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nothing.bin") in err and "nor at nothing.bin" in err


def test_resume_name_resolves_inside_c(data, tmp_path, capsys):
    d, _ = data
    train = ["-k", "cpn_ft_h36m_dbb", "-c", str(tmp_path), "--data-dir", str(d), "-f", "9", "-cs", "16", "-dep", "1",
             "-b", "4", "-s", "1", "-a", "Walking", "--no-eval", *ARCH]
    assert main_script.main(train + ["-e", "1"]) == 0
    assert main_script.main(train + ["-e", "2", "-r", "latest_epoch.bin"]) == 0
    assert f"resumed from {tmp_path / 'latest_epoch.bin'} after epoch 1" in capsys.readouterr().out
    assert torch.load(tmp_path / "latest_epoch.bin", weights_only=False)["epoch"] == 2


def test_main_draw_resolves_evaluate_inside_c(data, tmp_path):
    d, ck = data
    rc = main_draw.main(["-k", "cpn_ft_h36m_dbb", "-b", "2", "-c", str(ck), "-gpu", "0", "--nolog", "--evaluate",
                         "h36m_best_epoch.bin", "-num_proposals", "2", "-sampling_timesteps", "2", "--viz-subject",
                         "S11", "--viz-action", "SittingDown", "--viz-camera", "1", "--data-dir", str(d),
                         "--heads", "2", "--viz-output", str(tmp_path / "draw.gif")])
    assert rc == 0
    assert (tmp_path / "draw_errors.png").is_file() and (tmp_path / "draw_hypotheses.png").is_file()


# ---------------------------------------------------------------- -a by prefix; empty selections

def test_actions_select_by_prefix_as_the_authors(data):
    dataset = H36MDataset(data[0], "cpn_ft_h36m_dbb", "h36m")
    actions = lambda a: sorted({s.action for s in dataset.sequences(["S9"], a)})  # noqa: E731
    assert actions(["Walk"]) == ["WalkDog 1", "WalkTogether", "Walking"]
    assert actions(["Sitting"]) == ["Sitting 1", "SittingDown 2"]
    assert actions(["Walking"]) == ["Walking"]
    assert actions(["SittingDown 2", "Dir"]) == ["Directions", "SittingDown 2"]


@pytest.mark.parametrize("mode", ["train", "evaluate"])
def test_empty_action_selection_is_a_one_line_error_naming_the_actions(data, tmp_path, capsys, mode):
    d, ck = data
    flags = ["--evaluate", str(ck / "h36m_best_epoch.bin")] if mode == "evaluate" else ["-f", "9", "-cs", "16",
                                                                                        "-dep", "1", "-e", "1"]
    assert _evaluate(data, tmp_path / "out", "-a", "Jumping", *flags) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Jumping" in err and "SittingDown" in err and "WalkDog" in err
    assert not (tmp_path / "out" / "latest_epoch.bin").exists()


def test_empty_subject_selection_is_an_error(data):
    dataset = H36MDataset(data[0], "cpn_ft_h36m_dbb", "h36m")
    with pytest.raises(Exception, match="no subject selected.*S1, S9, S11"):
        dataset.sequences([])


# ---------------------------------------------------------------- --downsample at test time

def test_downsample_thins_the_test_sequences_before_windowing(data, tmp_path):
    """Evaluating with --downsample 2 equals evaluating files that hold every 2nd frame."""
    d, ck = data
    thin = tmp_path / "thin"
    thin.mkdir()
    d3 = np.load(d / "data_3d_h36m.npz", allow_pickle=True)["positions_3d"].item()
    d2 = dict(np.load(d / "data_2d_h36m_cpn_ft_h36m_dbb.npz", allow_pickle=True))
    p2 = d2["positions_2d"].item()
    np.savez(thin / "data_3d_h36m.npz", positions_3d={s: {a: v[::2] for a, v in acts.items()} for s, acts in d3.items()})
    np.savez(thin / "data_2d_h36m_cpn_ft_h36m_dbb.npz", metadata=d2["metadata"],
             positions_2d={s: {a: [c[::2] for c in v] for a, v in acts.items()} for s, acts in p2.items()})
    common = ["--evaluate", str(ck / "h36m_best_epoch.bin"), "-b", "2", "-a", "Walking,Sitting"]
    assert _evaluate(data, tmp_path / "a", "--downsample", "2", *common) == 0
    assert main_script.main(["-k", "cpn_ft_h36m_dbb", "-c", str(tmp_path / "b"), "--data-dir", str(thin),
                             "-num_proposals", "2", "-sampling_timesteps", "2", *ARCH, *common]) == 0
    assert _evaluate(data, tmp_path / "c", *common) == 0
    read = lambda f: json.loads((tmp_path / f / "eval_h36m_best_epoch.json").read_text())["actions"]  # noqa: E731
    assert read("a") == read("b")
    assert read("a") != read("c")


# ---------------------------------------------------------------- --by-subject

def _result(subject, action, frames, error_mm):
    seq = Sequence(subject, action, 0, pose_2d=np.zeros((frames, 17, 2), np.float32))
    return SequenceResult(seq, {"scores": Scores({("p1", "J-Agg"): np.array([error_mm / 1000 * frames])},
                                                 float(frames))})


def test_by_subject_prints_each_subjects_actions_and_its_plain_mean():
    results = [_result("S9", "Walking 1", 100, 10.0), _result("S9", "Walking", 300, 30.0),
               _result("S9", "Eating", 50, 40.0), _result("S11", "Walking", 10, 50.0),
               _result("S11", "Eating", 10, 70.0)]
    report = Report(results, by_subject=True, modes=("J-Agg",))
    subjects = report.to_json()["subjects"]["p1"]["J-Agg"]
    # S9/Walking is frame-weighted over its two sequences; S9 the plain mean over S9's actions.
    assert subjects == {"S9/Eating": [40.0], "S9/Walking": [25.0], "S9": [32.5],
                        "S11/Eating": [70.0], "S11/Walking": [50.0], "S11": [60.0]}
    assert report.to_json()["actions"]["p1"]["J-Agg"]["Average"] == [pytest.approx((45.0 + 10500 / 410) / 2, abs=1e-4)]
    text = report.text()
    s9 = text[text.index("subject S9"):text.index("subject S11")]
    assert [line.split() for line in s9.splitlines()[2:5]] == [["Eating", "40.00"], ["Walking", "25.00"],
                                                              ["Average", "32.50"]]
    assert text.index("subject S9") < text.index("subject S11")          # the order -ste gave
    assert report.headline() == pytest.approx((45.0 + 10500 / 410) / 2 / 1000)


def test_empty_report_is_a_clear_error():
    with pytest.raises(ValueError, match="holds no sequence"):
        Report([])


# ---------------------------------------------------------------- -b and -s

def test_b_counts_frames_in_training_and_clips_per_pbest_group_in_evaluation():
    args = build_parser().parse_args([])
    assert (args.batch_size, args.stride) == (1024, 243)
    assert RunConfig.from_args(args).training_clips() == 4 and RunConfig.from_args(args).pbest_clips() == 1024
    args = build_parser().parse_args(["-b", "2048", "-s", "81"])
    assert RunConfig.from_args(args).training_clips() == 25 and RunConfig.from_args(args).pbest_clips() == 2048
    args = build_parser().parse_args(["-b", "4"])
    assert RunConfig.from_args(args).pbest_clips() == 4
    with pytest.raises(ValueError, match="0 clips per training batch"):
        RunConfig.from_args(args).training_clips()
    assert RunConfig.from_args(build_parser().parse_args(["-b", "4", "--pbest-group", "7"])).pbest_clips() == 7
    assert main_3dhp.parser().parse_args(["-b", "4"]).pbest_group == 2     # the authors' 3DHP script: 2 clips


def test_demo_trains_and_evaluates_with_8_clips_as_before():
    args = build_parser().parse_args(["--demo"])
    defaults = build_parser().parse_args([])
    for key, value in main_script.DEMO_FLAGS.items():
        if getattr(args, key) == getattr(defaults, key):
            setattr(args, key, value)
    assert RunConfig.from_args(args).training_clips() == 8 and RunConfig.from_args(args).pbest_clips() == 8


def test_training_batch_holds_b_over_s_clips(data, tmp_path, capsys):
    d, _ = data
    rc = main_script.main(["-k", "cpn_ft_h36m_dbb", "-c", str(tmp_path), "--data-dir", str(d), "-f", "9", "-cs", "16",
                           "-dep", "1", "-e", "1", "-b", "27", "-s", "9", "-a", "Walking", "--no-eval", *ARCH])
    assert rc == 0
    assert "batches of 3 clips" in capsys.readouterr().out
    assert _evaluate(data, tmp_path, "-a", "Walking", "-e", "1", "-b", "8") == 2
    assert "0 clips per training batch" in capsys.readouterr().err


# ---------------------------------------------------------------- MPI-INF-3DHP export rules

class _Slots:
    """A stand-in sampler: every hypothesis of every window is its frame slot (0..F-1) x 1 cm
    plus h x 1 m, so kept poses tell which window (and hypothesis) they came from."""

    iterations = 1                                              # K = 1

    def __init__(self, values=None):
        self.values = values

    def sample(self, model, x2d, h, flip=None, noise=None):
        b, f, j, _ = x2d.shape
        slot = torch.arange(f, dtype=torch.float32)[None, None, None, :, None, None] * 0.01
        hyp = torch.arange(h, dtype=torch.float32)[None, None, :, None, None, None]
        out = (slot + hyp).expand(b, 1, h, f, j, 3).clone()
        return out if self.values is None else self.values.expand(b, 1, h, f, j, 3).clone()


def _sequence(frames, valid=None):
    cam = make_sequences(1)[0].cam
    traj = np.zeros((frames, 1, 3), np.float32)
    traj[..., 2] = 5
    return Sequence("TS1", "TS1", 0, pose_2d=np.zeros((frames, 17, 2), np.float32),
                    pose_3d=np.zeros((frames, 17, 3), np.float32), traj=traj, cam=cam, valid=valid,
                    root_index=14)


def _kept(seq, sampler, **settings):
    model = SimpleNamespace(cfg=SimpleNamespace(frames=9), eval=lambda: None)
    return evaluate(model, sampler, [seq], layout=LAYOUT, hypotheses=2, flip=False, group=1, keep={"poses"},
                    progress=False, **settings)[0]


def test_last_window_overwrites_the_overlap_unless_exact_frames():
    seq = _sequence(12)                       # windows: frames 0-8, then the end-aligned 3-11
    slot = lambda r: np.round(r.poses["P-Agg"][0, :, 0, 0] - 0.5, 4) * 100  # noqa: E731  (mean of h=0,1)
    np.testing.assert_allclose(slot(_kept(seq, _Slots())), [0, 1, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8], atol=1e-3)
    np.testing.assert_allclose(slot(_kept(seq, _Slots(), exact_frames=True)),
                               [0, 1, 2, 3, 4, 5, 6, 7, 8, 6, 7, 8], atol=1e-3)


def test_kept_pbest_chooses_over_all_frames_printed_pbest_over_valid_frames():
    valid = np.arange(9) < 6
    # hypothesis 0: 1 cm off on valid frames, 1 m off on invalid ones; hypothesis 1: 10 cm off everywhere
    values = torch.zeros(1, 1, 2, 9, 1, 1)
    values[0, 0, 0, :6], values[0, 0, 0, 6:], values[0, 0, 1] = 0.01, 1.0, 0.1
    seq = _sequence(9, valid)
    default = _kept(seq, _Slots(values))
    assert np.allclose(default.poses["P-Best"][0, :, 0], 0.1)                      # all frames: hypothesis 1
    chosen = _kept(seq, _Slots(values), kept_pbest_valid_only=True)
    assert np.allclose(chosen.poses["P-Best"][0, :6, 0], 0.01)                      # valid frames: hypothesis 0
    for r in (default, chosen):                                                      # scored: valid frames only
        assert r.error("p1", "P-Best")[0] == pytest.approx(0.01 * np.sqrt(3) * 16 / 17, rel=1e-5)


def test_authors_test_cameras_have_fx_equal_fy_and_the_calibrated_one_the_pixel_aspect():
    ts5 = threedhp.camera_pixels_of_test_sequence("TS5")
    assert ts5["fx"] == pytest.approx(1683.98, abs=0.01) and ts5["fy"] == pytest.approx(ts5["fx"])
    assert threedhp.camera_pixels_of_test_sequence("TS5", calibrated=True)["fy"] == pytest.approx(1672.59, abs=0.01)
    ts1 = threedhp.camera_pixels_of_test_sequence("TS1")
    assert ts1["fy"] == pytest.approx(ts1["fx"])
    assert threedhp.camera_pixels_of_test_sequence("TS1", calibrated=True)["fy"] == pytest.approx(ts1["fx"] * 1.00044)
    default, calibrated = threedhp.intrinsics_of_test_sequence("TS6"), threedhp.intrinsics_of_test_sequence("TS6", calibrated=True)
    assert default[0] == pytest.approx(default[1]) and calibrated[1] < default[1]


def test_3dhp_eval_settings_default_to_the_authors_rules():
    args = main_3dhp.parser().parse_args(["--evaluate", "x.bin"])
    run = RunConfig.from_args(args)
    assert (Sampling.of_run(run).group, eval_settings(run).kept_pbest_valid_only, args.calibrated_camera) == \
        (2, False, False)
    args = main_3dhp.parser().parse_args(["--pbest-valid-frames", "--calibrated-camera", "--pbest-group", "4"])
    run = RunConfig.from_args(args)
    assert (Sampling.of_run(run).group, eval_settings(run).kept_pbest_valid_only, args.calibrated_camera) == \
        (4, True, True)
