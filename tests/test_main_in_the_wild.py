"""main_in_the_wild.py and in_the_wild/lifting.py, inputs.py: training on COCO-17 2D, and lifting a detector's
keypoints without ground truth (windowing, flip TTA, root trajectory, JPMA)."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from common.cli import in_the_wild as wild_script
from common.geometry.camera import image_coordinates, normalize_screen_coordinates, project_to_2d, world_to_camera_np
from common.model.checkpoint import safe_load
from common.geometry.coco import coco_to_h36m, input_layout
from common.datasets.h36m import H36MDataset, h36m_cameras
from common.datasets.synthetic import (STYLES, animate, coco_points, subject_bones, write_synthetic_coco,
                                       write_synthetic_h36m)
from common.model.denoiser import DenoiserConfig
from common.model.diffusion import DDIMSampler, Diffusion
from common.inference.core import InferenceCore
from common.geometry.skeleton import H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT, flip_pose, h36m_skeleton_17
from common.in_the_wild import lifting
from common.in_the_wild.inputs import input_layout_of
from common.in_the_wild.keypoints import read_keypoints
from common.in_the_wild.root_depth import default_intrinsics
from conftest import evaluate, save_tiny_checkpoint

TINY = ["-f", "9", "-cs", "16", "-dep", "1", "--heads", "2", "-e", "1", "-b", "8", "-s", "1", "--nolog"]
W, H = 1280, 720
PARENTS = h36m_skeleton_17().parents


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
    """Synthetic Human3.6M-format files with COCO-17 detections under the authors' name."""
    d = tmp_path_factory.mktemp("wild_data")
    opts = dict(frames_per_sequence=24, subjects=("S1", "S9"), actions=("Walking",))
    write_synthetic_h36m(d, name="h36m", **opts)
    write_synthetic_coco(d, name="h36m", keypoints="detectron_pt_coco", noise=False, **opts)
    return d


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """An untrained tiny model saved as a COCO-input checkpoint of ours."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.bin", "coco")


def walking_clip(frames: int, focal: float | None = None):
    """A synthetic person seen by a pinhole camera of W x H pixels: COCO-17 pixels (N, 17, 2)
    and the COCO-17 points in camera space (N, 17, 3) metres."""
    world = animate(STYLES["Walking"], subject_bones(0, "S9"), frames, np.random.default_rng(3))
    camera = h36m_cameras("S9")[0]
    points = world_to_camera_np(coco_points(world), camera["orientation"], camera["translation"])
    cam = default_intrinsics(W, H, focal)
    pixels = image_coordinates(project_to_2d(torch.from_numpy(points), torch.from_numpy(cam)).numpy(), W, H)
    return pixels.astype(np.float32), points


class LookupModel(nn.Module):
    """A stand-in denoiser that knows the answer: for each frame it returns the 3D pose whose
    2D input row is nearest (mirrored rows give mirrored poses), plus a per-hypothesis offset."""

    def __init__(self, table_2d, table_3d, frames: int, kps_left, kps_right, offsets=None):
        super().__init__()
        t2 = torch.as_tensor(np.asarray(table_2d), dtype=torch.float32)
        t3 = torch.as_tensor(np.asarray(table_3d), dtype=torch.float32)
        self.table_2d = torch.cat([t2, flip_pose(t2, kps_left, kps_right)])
        self.table_3d = torch.cat([t3, flip_pose(t3, H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT)])
        self.offsets = None if offsets is None else torch.as_tensor(offsets, dtype=torch.float32)
        self.cfg = DenoiserConfig(frames=frames, channels=8, depth=1, heads=1)

    def forward(self, x2d, x3d, t, cond=None):
        b, f = x2d.shape[:2]
        dist = torch.cdist(x2d.reshape(b * f, -1), self.table_2d.reshape(len(self.table_2d), -1))
        pose = self.table_3d[dist.argmin(dim=1)].reshape(b, f, -1, 3)
        out = pose[:, None].expand(x3d.shape).clone()                  # (B, H, F, J, 3)
        if self.offsets is not None:
            out = out + self.offsets[None, :, None]
        return out


# ---------------------------------------------------------------------------- training

def test_training_on_coco_detections_records_the_input_layout(coco_dir, tmp_path):
    ck = tmp_path / "ck"
    rc = wild_script.main(["-k", "detectron_pt_coco", "--data-dir", str(coco_dir), "-c", str(ck),
                           "-str", "S1", "-ste", "S9"] + TINY)
    assert rc == 0
    ckpt = safe_load(ck / "best_epoch.bin")
    assert ckpt["args"]["input_layout"] == "coco" and ckpt["args"]["keypoints"] == "detectron_pt_coco"
    assert abs(ckpt["args"]["training_focal"] - 2.29) < 0.01          # the Human3.6M cameras' shared focal
    assert np.isfinite(ckpt["best_error"])


def test_coco_sequences_carry_2d_mapped_to_the_3d_layout(coco_dir):
    dataset = H36MDataset(coco_dir, "detectron_pt_coco")
    assert dataset.layout_name == "coco"
    assert (dataset.kps_left, dataset.kps_right) == ([1, 3, 5, 7, 9, 11, 13, 15], [2, 4, 6, 8, 10, 12, 14, 16])
    seq = dataset.sequences(["S9"])[0]
    np.testing.assert_allclose(seq.extra["reproj_2d"], coco_to_h36m(seq.pose_2d), atol=1e-6)
    assert "reproj_2d" not in H36MDataset(coco_dir, "gt").sequences(["S9"])[0].extra


def test_j_agg_with_coco_input_reprojects_to_the_mapped_2d(coco_dir):
    """Hypothesis 0 is the ground truth, the others are 30 cm off: J-Agg must find 0 for
    every joint, which only works when it compares with the mapped (Human3.6M-order) 2D."""
    seqs = H36MDataset(coco_dir, "detectron_pt_coco").sequences(["S9"])
    offsets = np.zeros((3, 17, 3), np.float32)
    offsets[1:, 1:, 0] = [[0.3], [0.5]]
    model = LookupModel(np.concatenate([s.pose_2d for s in seqs]), np.concatenate([s.pose_3d for s in seqs]),
                        9, [1, 3, 5, 7, 9, 11, 13, 15], [2, 4, 6, 8, 10, 12, 14, 16], offsets)
    results = evaluate(model, DDIMSampler(Diffusion(), 1), seqs, hypotheses=3, flip=False, progress=False)
    for r in results:
        assert r.error("p1", "J-Agg")[-1] < 1e-6
        assert r.error("p1", "P-Agg")[-1] > 0.1


# ---------------------------------------------------------------------------- inference pipeline

@pytest.mark.parametrize("layout", ["coco", "h36m"])
@pytest.mark.parametrize("frames", [5, 30])
def test_true_poses_give_the_true_root_depth(tmp_path, layout, frames):
    """With a model that returns the true root-relative poses, JPMA and the least-squares
    trajectory recover the root depth within 1 %, for clips shorter and longer than F."""
    pixels, points = walking_clip(frames)
    np.save(tmp_path / "kp.npy", np.concatenate([pixels, np.ones_like(pixels[..., :1])], axis=-1))
    keypoints = read_keypoints(tmp_path / "kp.npy")
    pose = coco_to_h36m(points)                                        # (N, 17, 3) camera space
    root = pose[:, :1].copy()
    model_2d = normalize_screen_coordinates(coco_to_h36m(pixels) if layout == "h36m" else pixels, W, H)
    flip = input_layout(layout)
    model = LookupModel(model_2d, pose - root, 9, flip.kps_left, flip.kps_right)
    sampler = DDIMSampler(Diffusion(), 2)
    core = InferenceCore.of_sampler(model, sampler, layout=flip, hypotheses=3, flip=True, group=2)
    result = lifting.lift_keypoints(core, keypoints, (W, H))
    assert result.hypotheses.shape == (frames, 2, 3, 17, 3)
    np.testing.assert_allclose(result.j_agg, pose - root, atol=1e-5)
    depth_error = np.abs(result.trajectory[:, 2] - root[:, 0, 2]) / root[:, 0, 2]
    assert depth_error.max() < 0.01
    np.testing.assert_allclose(result.trajectory[:, :2], root[:, 0, :2], atol=0.02 * root[:, 0, 2].max())


def test_input_layout_comes_from_the_flag_then_the_checkpoint():
    assert input_layout_of({}, "h36m")[0] == "h36m"
    assert input_layout_of({"args": {"input_layout": "coco"}})[0] == "coco"
    assert input_layout_of({"args": {"keypoints": "detectron_pt_coco"}})[0] == "coco"
    assert input_layout_of({"args": {"keypoints": "cpn_ft_h36m_dbb"}})[0] == "h36m"
    with pytest.raises(ValueError, match="--input-layout"):
        input_layout_of({"epoch": 80})


# ---------------------------------------------------------------------------- command line

def alphapose_json(path, pixels):
    """An AlphaPose results list: the person (track 1) and a lower-scoring bystander (track 2)."""
    detections = []
    for i, frame in enumerate(pixels):
        for idx, shift, score in ((1, 0, 2.9), (2, 300, 1.5)):
            kp = np.concatenate([frame + [shift, 0], np.full((17, 1), 0.9)], axis=1)
            detections.append({"image_id": f"{i}.jpg", "category_id": 1, "keypoints": kp.ravel().tolist(),
                               "score": score, "idx": idx})
    path.write_text(json.dumps(detections))
    return path


@pytest.mark.parametrize("frames, kind", [(5, "npy"), (20, "json")])
def test_command_line_lifts_a_keypoint_file(tmp_path, tiny_checkpoint, frames, kind, capsys):
    pixels, _ = walking_clip(frames)
    if kind == "npy":
        source = tmp_path / "clip.npy"
        np.save(source, np.concatenate([pixels, np.full_like(pixels[..., :1], 0.8)], axis=-1))
        extra = []
    else:
        source = alphapose_json(tmp_path / "alphapose-results.json", pixels)
        extra = ["--track-id", "1", "--render", "--viz-size", "1", "--viz-output", str(tmp_path / "anim.gif")]
    rc = wild_script.main(["--evaluate", str(tiny_checkpoint), "--keypoints-file", str(source), "--width", str(W),
                           "--height", str(H), "-num_proposals", "3", "-sampling_timesteps", "2"] + extra)
    assert rc == 0, capsys.readouterr().err
    out = np.load(tmp_path / f"{source.stem}_3d.npz")
    assert out["hypotheses"].shape == (frames, 2, 3, 17, 3)
    assert out["j_agg"].shape == out["p_agg"].shape == (frames, 17, 3)
    assert out["trajectory"].shape == (frames, 3)
    assert np.all(out["j_agg"][:, 0] == 0) and np.all(np.isfinite(out["trajectory"]))
    np.testing.assert_allclose(out["keypoints_2d"], pixels, atol=1e-3)     # track 1, not the bystander
    assert str(out["input_layout"]) == "coco" and tuple(out["image_size"]) == (W, H)
    if kind == "json":
        from PIL import Image
        with Image.open(tmp_path / "anim.gif") as gif:
            assert gif.n_frames == frames


def test_command_line_shows_t_agg_by_default_and_the_mode_and_filter_asked_for(tmp_path, tiny_checkpoint, capsys):
    pixels, _ = walking_clip(30)
    source = tmp_path / "clip.npy"
    np.save(source, np.concatenate([pixels, np.full_like(pixels[..., :1], 0.8)], axis=-1))
    base = ["--evaluate", str(tiny_checkpoint), "--keypoints-file", str(source), "--width", str(W), "--height", str(H),
            "-num_proposals", "3", "-sampling_timesteps", "2"]
    runs = {"default": [], "j_agg": ["--pose-mode", "j_agg"], "filtered": ["--filter", "savgol:window=7"]}
    shown = {}
    for name, extra in runs.items():
        out = tmp_path / name
        rc = wild_script.main(base + extra + ["--output", str(out) + ".json", "--output", str(out) + ".npz"])
        assert rc == 0, capsys.readouterr().err
        data = json.loads((tmp_path / f"{name}.json").read_text())
        shown[name] = np.array([f["joints_3d"] for f in data["people"][0]["frames"]])
        arrays = np.load(tmp_path / f"{name}.npz")
        mode = {"j_agg": "j_agg"}.get(name, "t_agg")
        np.testing.assert_allclose(shown[name], arrays[mode], atol=2e-6)
        assert data["pose"] == {"j_agg": "J-Agg"}.get(name, "T-Agg")
        assert data["filter"] == ("savgol(window=7) at 25 fps" if name == "filtered" else None)
    bones = lambda p: np.linalg.norm(p[:, 1:] - p[:, PARENTS[1:]], axis=-1)   # noqa: E731
    assert bones(shown["default"]).std(axis=0).max() < 1e-5 < bones(shown["j_agg"]).std(axis=0).max()
    assert not np.allclose(shown["filtered"], shown["default"])
    for flag, message in (("--pose-mode j_best", "unknown pose mode 'j_best': choose from J-Agg, P-Agg, T-Agg"),
                          ("--filter median", "unknown filter 'median'")):
        with pytest.raises(SystemExit) as stop:
            wild_script.main(base + flag.split())
        assert stop.value.code == 2 and message in capsys.readouterr().err


def test_command_line_asks_for_the_image_size(tmp_path, tiny_checkpoint, capsys):
    source = alphapose_json(tmp_path / "a.json", walking_clip(3)[0])
    rc = wild_script.main(["--evaluate", str(tiny_checkpoint), "--keypoints-file", str(source)])
    assert rc == 2 and "--width and --height" in capsys.readouterr().err
