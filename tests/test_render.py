"""Rendering: animation files (GIF, MP4 fallback) and still figures."""
import shutil

import numpy as np
import pytest
from PIL import Image

from common.outputs import render
from common.geometry.skeleton import h36m_skeleton_17

STANDING = np.array([[0, 0, 0], [-.13, 0, 0], [-.14, .45, 0], [-.15, .9, .05], [.13, 0, 0],
                     [.14, .45, 0], [.15, .9, .05], [0, -.25, 0], [0, -.5, 0], [0, -.6, -.05],
                     [0, -.72, 0], [.18, -.45, 0], [.2, -.2, 0], [.22, .05, -.05], [-.18, -.45, 0],
                     [-.2, -.2, 0], [-.3, 0, -.15]], dtype=np.float32)  # (17, 3) metres, y down


def clip(frames: int, hypotheses: int = 2):
    """A moving standing pose (F, 17, 3), its hypotheses (F, H, 17, 3) and 2D pixels (F, 17, 2)."""
    rng = np.random.default_rng(0)
    wave = 0.05 * np.sin(np.arange(frames)[:, None, None] / 2 + np.arange(17)[None, :, None])
    pose = STANDING + wave
    pose -= pose[:, :1]
    hyps = pose[:, None] + rng.normal(0, 0.03, size=(frames, hypotheses, 17, 3))
    camera_space = pose + [0, 0, 4]
    pixels = 300 * camera_space[..., :2] / camera_space[..., 2:] + [160, 120]
    return pose, hyps, pixels


def test_gif_has_one_frame_per_input_frame_and_panel_size(tmp_path):
    pose, hyps, pixels = clip(6)
    out = render.render_animation(tmp_path / "a.gif", pixels, {"J-Agg": pose, "P-Agg": hyps.mean(1)},
                                  h36m_skeleton_17(), fps=10, size=1.5, dpi=60, hypotheses=hyps,
                                  ground_truth=pose, resolution=(320, 240))
    with Image.open(out) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == 6
        assert gif.size == (4 * 90, 90)                             # input + 3 pose panels


def test_progress_bar_only_when_asked_or_on_a_terminal(tmp_path, capsys):
    pose, hyps, pixels = clip(3)
    args = (pixels, {"J-Agg": pose}, h36m_skeleton_17())
    render.render_animation(tmp_path / "quiet.gif", *args, size=1.0, dpi=40)   # stderr captured: not a terminal
    assert "rendering" not in capsys.readouterr().err
    render.render_animation(tmp_path / "shown.gif", *args, size=1.0, dpi=40, progress=True)
    assert "rendering shown.gif" in capsys.readouterr().err


def test_limit_and_downsample_select_frames(tmp_path):
    pose, _, pixels = clip(10)
    out = render.render_animation(tmp_path / "b.gif", pixels, {"P-Agg": pose}, h36m_skeleton_17(),
                                  size=1, dpi=50, limit=7, downsample=2)
    with Image.open(out) as gif:
        assert gif.n_frames == 4                                    # frames 0, 2, 4, 6
        assert gif.size == (100, 50)


def test_background_frames_are_drawn_under_the_keypoints(tmp_path):
    pose, _, pixels = clip(3)
    green = [np.full((240, 320, 3), (0, 200, 0), dtype=np.uint8)] * 3
    out = render.render_animation(tmp_path / "c.gif", pixels, {"J-Agg": pose}, h36m_skeleton_17(),
                                  size=1.5, dpi=60, background=green)
    with Image.open(out) as gif:
        rgb = np.asarray(gif.convert("RGB"))
    assert ((rgb[..., 1] > 150) & (rgb[..., 0] < 60)).sum() > 1000


def test_mp4_without_pyav_or_ffmpeg_falls_back_to_gif_with_a_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(render, "pyav_available", lambda: False)
    pose, _, pixels = clip(2)
    out = render.render_animation(tmp_path / "d.mp4", pixels, {"J-Agg": pose}, h36m_skeleton_17(),
                                  size=1, dpi=40)
    assert out == tmp_path / "d.gif" and out.is_file()
    assert not (tmp_path / "d.mp4").exists()
    assert "apt-get install ffmpeg" in capsys.readouterr().out


def test_rejects_unknown_extension_and_mismatched_shapes(tmp_path):
    pose, hyps, pixels = clip(3)
    with pytest.raises(ValueError, match=r"\.mp4 or \.gif"):
        render.render_animation(tmp_path / "e.avi", pixels, {"J-Agg": pose}, h36m_skeleton_17())
    with pytest.raises(ValueError, match="expected \\(3, J, 3\\)"):
        render.render_animation(tmp_path / "e.gif", pixels, {"J-Agg": pose[:2]}, h36m_skeleton_17())
    with pytest.raises(ValueError, match="bold pose"):
        render.render_animation(tmp_path / "e.gif", pixels, {"J-Agg": pose}, h36m_skeleton_17(), bold="X")


def test_still_figures_are_valid_pngs(tmp_path):
    errors = {mode: list(np.linspace(50, 40, 5) - k) for k, mode in enumerate(["P-Agg", "J-Agg", "P-Best", "J-Best"])}
    curves = render.plot_iteration_errors(tmp_path / "iterations.png", errors)
    pose, hyps, _ = clip(1, hypotheses=5)
    frame = render.plot_hypotheses_frame(tmp_path / "frame.png", hyps[0], pose[0], pose[0] + 0.01,
                                         h36m_skeleton_17())
    no_gt = render.plot_hypotheses_frame(tmp_path / "frame_no_gt.png", hyps[0], pose[0], None,
                                         h36m_skeleton_17())
    for path in (curves, frame, no_gt):
        with Image.open(path) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100


def test_a_landscape_video_frame_gets_a_wider_input_panel(tmp_path):
    pose, _, pixels = clip(2)
    frames = [np.full((90, 160, 3), 40, dtype=np.uint8)] * 2                      # 16:9
    out = render.render_animation(tmp_path / "w.gif", pixels, {"J-Agg": pose}, h36m_skeleton_17(),
                                  size=1, dpi=50, background=frames)
    with Image.open(out) as gif:
        assert gif.size == (int(50 * (160 / 90 + 1)), 50)
