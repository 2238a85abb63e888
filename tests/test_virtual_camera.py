"""common.in_the_wild.lifting.to_virtual_camera: the 2D a camera with another focal length sees."""
import numpy as np
import torch

from common.camera import project_to_2d
from common.in_the_wild.lifting import TRAINING_FOCAL, to_virtual_camera
from common.in_the_wild.root_depth import default_intrinsics, estimate_root_trajectory


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
