"""common.in_the_wild.root_depth.to_virtual_camera: the 2D a camera with another focal length sees."""
import numpy as np
import torch

from common.geometry.camera import project_to_2d
from common.in_the_wild.root_depth import (TRAINING_FOCAL, default_intrinsics, estimate_root_trajectory,
                                           to_virtual_camera, training_focal)


def test_the_virtual_camera_sees_the_same_rays_and_gives_the_same_root():
    rng = np.random.default_rng(0)
    pose = rng.normal(0, 0.3, (5, 17, 3)).astype(np.float32)
    pose -= pose[:, :1]
    traj = np.array([[0.4, -0.2, 3.3]], np.float32)[None].repeat(5, axis=0)       # (5, 1, 3)
    phone = default_intrinsics(1080, 1920, 1670.0)                               # portrait phone
    seen = project_to_2d(torch.from_numpy(pose + traj), torch.from_numpy(phone.astype(np.float32))).numpy()
    virtual_2d, virtual_cam = to_virtual_camera(seen, phone)
    expected = project_to_2d(torch.from_numpy(pose + traj), torch.from_numpy(virtual_cam)).numpy()
    np.testing.assert_allclose(virtual_2d, expected, atol=1e-5)
    assert virtual_cam[0] == virtual_cam[1] == np.float32(TRAINING_FOCAL) and not virtual_cam[2:].any()
    # the person looks 1670 / 540 / 2.29 = 1.35 times smaller to the model, at the same place
    ratio = np.ptp(seen[..., 1], axis=1) / np.ptp(virtual_2d[..., 1], axis=1)
    np.testing.assert_allclose(ratio, 1670 / 540 / TRAINING_FOCAL, rtol=1e-5)
    np.testing.assert_allclose(estimate_root_trajectory(pose, virtual_2d, virtual_cam), traj, atol=1e-4)


def test_lifting_uses_the_virtual_camera_by_default_and_no_virtual_camera_turns_it_off(tmp_path):
    """The command line and the Lifter lift the 2D as the training cameras would see it (the
    same as lift_keypoints with virtual_focal=TRAINING_FOCAL); --no-virtual-camera and
    virtual_camera=False lift it as it is; a 3DHP model is never rescaled."""
    import common as d3dp
    from common.model.checkpoint import load_denoiser
    from common.cli import in_the_wild as wild_script
    from common.geometry.coco import input_layout
    from common.model.diffusion import DDIMSampler, Diffusion
    from common.in_the_wild import lifting
    from common.in_the_wild.keypoints import keypoints_from_array
    from common.inference.core import InferenceCore
    from conftest import save_tiny_checkpoint

    ckpt = save_tiny_checkpoint(tmp_path / "tiny.bin", "coco")
    rng = np.random.default_rng(0)
    kp = np.concatenate([np.array([[320, 100], [310, 90], [330, 90], [300, 95], [340, 95], [280, 150], [360, 150],
                                   [260, 210], [380, 210], [250, 260], [390, 260], [295, 270], [345, 270],
                                   [290, 350], [350, 350], [285, 430], [355, 430]], np.float32)[None]
                         + rng.normal(0, 3, (12, 17, 2)), np.ones((12, 17, 1))], -1).astype(np.float32)
    np.save(tmp_path / "kp.npy", kp)
    results = {}
    for name, extra in (("on", []), ("off", ["--no-virtual-camera"])):
        out = tmp_path / f"{name}.npz"
        assert wild_script.main(["--evaluate", str(ckpt), "--keypoints-file", str(tmp_path / "kp.npy"), "--width",
                                 "640", "--height", "480", "-num_proposals", "2", "-sampling_timesteps", "2",
                                 "--output", str(out), "--no-progress", *extra]) == 0
        results[name] = d3dp.read_result(out)["j_agg"]
    model, _ = load_denoiser(ckpt)
    track = keypoints_from_array(kp, source="kp")
    for name, focal in (("on", TRAINING_FOCAL), ("off", None)):
        core = InferenceCore.of_sampler(model.eval(), DDIMSampler(Diffusion(), 2), layout=input_layout("coco"),
                                        hypotheses=2, seed=1, group=4)
        direct = lifting.lift_keypoints(core, track, (640, 480), lifting.LiftOptions(virtual_focal=focal))
        np.testing.assert_allclose(results[name], direct.j_agg, atol=1e-6)
    assert np.abs(results["on"] - results["off"]).max() > 1e-3
    assert d3dp.Lifter.from_checkpoint(ckpt).virtual_focal == TRAINING_FOCAL
    assert d3dp.Lifter.from_checkpoint(ckpt, virtual_camera=False).virtual_focal is None
    assert training_focal({"args": {"training_focal": None}}) is None       # cameras that differ
    assert training_focal({"args": {"training_focal": 1.5}}) == 1.5
    assert training_focal({"args": {"keypoints": "cpn_ft_h36m_dbb"}}) == TRAINING_FOCAL  # authors'


def test_training_records_the_focal_its_cameras_share():
    from common.geometry.camera import shared_focal
    from common.datasets.h36m import h36m_cameras

    assert abs(shared_focal(c["intrinsics"] for c in h36m_cameras("S1")) - TRAINING_FOCAL) < 0.01
    assert shared_focal([np.array([1.4, 1.4, 0, 0, 0, 0, 0, 0, 0]), np.array([1.8, 1.8, 0, 0, 0, 0, 0, 0, 0])]) is None
    assert shared_focal([None]) is None
