"""main_draw.py end to end on a tiny synthetic set: the animation, the still figures, the
export, and the errors a user meets when naming the sequence."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.cli import draw as main_draw
from common.model.checkpoint import atomic_save, make_checkpoint
from common.datasets.synthetic import write_synthetic_h36m
from common.model.denoiser import Denoiser, DenoiserConfig
from common.outputs.render import mp4_available
from common.storage.video import VideoFrames, pyav_available

FRAMES = 30


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(data dir, checkpoint) of a synthetic set and an untrained tiny model."""
    d = tmp_path_factory.mktemp("draw")
    write_synthetic_h36m(d, name="synthetic", frames_per_sequence=FRAMES, subjects=("S9", "S11"),
                         actions=("Walking", "SittingDown 2"))
    torch.manual_seed(0)
    ckpt = d / "tiny.bin"
    atomic_save(make_checkpoint(Denoiser(DenoiserConfig(frames=9, channels=16, depth=1, heads=2))), ckpt)
    return d, ckpt


def draw(setup, *flags):
    data_dir, ckpt = setup
    return main_draw.main(["-d", "synthetic", "-k", "det", "--data-dir", str(data_dir), "--evaluate", str(ckpt),
                           "-num_proposals", "3", "-sampling_timesteps", "2", "-b", "2", *flags])


def test_render_writes_a_gif_of_the_chosen_frames_and_the_still_figures(setup, tmp_path):
    out = tmp_path / "s11.gif"
    rc = draw(setup, "--render", "--viz-subject", "S11", "--viz-action", "SittingDown", "--viz-camera", "1",
              "--viz-limit", "12", "--viz-downsample", "2", "--viz-size", "1", "--viz-output", str(out))
    assert rc == 0
    with Image.open(out) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == 6                                      # 12 frames, every 2nd
        assert gif.size == (3 * 100, 100)                             # input, J-Agg, ground truth
    for still in ("s11_errors.png", "s11_hypotheses.png"):
        with Image.open(tmp_path / still) as png:
            assert png.format == "PNG" and min(png.size) > 100


def test_default_output_path_and_no_ground_truth_panel(setup, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = draw(setup, "--render", "--viz-subject", "S9", "--viz-action", "Walking", "--viz-camera", "0",
              "--viz-limit", "4", "--viz-size", "1", "--viz-no-ground-truth")
    assert rc == 0
    suffix = ".mp4" if mp4_available() else ".gif"
    animation = tmp_path / "plot" / "synthetic" / f"S9_Walking_cam0{suffix}"
    assert animation.is_file() and (tmp_path / "plot" / "synthetic" / "S9_Walking_cam0_errors.png").is_file()
    if suffix == ".gif":
        with Image.open(animation) as gif:
            assert gif.size == (2 * 100, 100) and gif.n_frames == 4
    elif pyav_available():
        frames = list(VideoFrames(animation))
        assert len(frames) == 4 and frames[0].shape == (100, 2 * 100, 3)


def test_export_holds_hypotheses_poses_ground_truth_and_2d(setup, tmp_path):
    out = tmp_path / "seq.npz"
    rc = draw(setup, "--viz-subject", "S11", "--viz-action", "Walking", "--viz-camera", "3", "--viz-export", str(out),
              "--viz-output", str(tmp_path / "seq.gif"))
    assert rc == 0
    d = np.load(out)
    assert d["hypotheses"].shape == (FRAMES, 2, 3, 17, 3)            # (frames, K, H, joints, 3)
    assert d["j_agg"].shape == d["p_agg"].shape == d["ground_truth"].shape == (FRAMES, 17, 3)
    assert d["keypoints_2d"].shape == (FRAMES, 17, 2) and d["trajectory"].shape == (FRAMES, 3)
    assert d["errors_mm"].shape == (5, 2) and list(d["modes"]) == ["J-Agg", "P-Agg", "P-Best", "J-Best", "T-Agg"]
    np.testing.assert_allclose(d["p_agg"], d["hypotheses"][:, -1].mean(axis=1), atol=1e-6)
    assert 0 < d["keypoints_2d"].min() and d["keypoints_2d"].max() < 1000   # pixels
    assert not (tmp_path / "seq.gif").exists()                        # no --render, no animation


def test_unknown_action_lists_the_available_ones(setup, capsys):
    rc = draw(setup, "--viz-subject", "S11", "--viz-action", "Dancing")
    err = capsys.readouterr().err
    assert rc == 2
    assert "Dancing" in err and "Walking" in err and "SittingDown 2" in err


def test_unknown_camera_is_an_error(setup, capsys):
    rc = draw(setup, "--viz-subject", "S11", "--viz-action", "Walking", "--viz-camera", "4")
    assert rc == 2 and "camera indices" in capsys.readouterr().err


def test_make_figures_writes_the_readme_figures(setup, tmp_path):
    spec = importlib.util.spec_from_file_location("make_figures", Path(__file__).parents[1] / "fig" / "make_figures.py")
    make_figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_figures)
    out = tmp_path / "fig"
    out.mkdir()
    rc = make_figures.main(["--checkpoint", str(setup[1]), "--data-dir", str(tmp_path / "data"), "--out", str(out)])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"demo.gif", "frame.png", "errors.png", "method.png"}
    assert (out / "demo.gif").stat().st_size < 2_000_000
