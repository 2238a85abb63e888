"""Camera transforms: normalisation, quaternions, projection, flipping."""
import numpy as np
import torch

from common.geometry.camera import (camera_to_world, flip_intrinsics, image_coordinates, normalize_screen_coordinates,
                           normalized_intrinsics, project_to_2d, qrot, world_to_camera)
from common.geometry.skeleton import h36m_metadata


def test_screen_normalisation_round_trips_and_maps_width_to_unit_range():
    x = np.array([[0.0, 0.0], [1000.0, 1002.0], [500.0, 501.0]], dtype=np.float32)
    n = normalize_screen_coordinates(x, 1000, 1002)
    assert np.allclose(n[0], [-1, -1.002]) and np.allclose(n[1], [1, 1.002]) and np.allclose(n[2], [0, 0], atol=1e-6)
    assert np.allclose(image_coordinates(n, 1000, 1002), x, atol=1e-4)
    t = torch.from_numpy(x)
    assert torch.allclose(image_coordinates(normalize_screen_coordinates(t, 1000, 1002), 1000, 1002), t, atol=1e-4)


def test_world_camera_round_trip_with_real_h36m_extrinsics():
    ext = h36m_metadata()["extrinsics"]["S9"][1]
    R = torch.tensor(ext["orientation"])
    t = torch.tensor(ext["translation"]) / 1000
    x = torch.randn(10, 17, 3)
    cam = world_to_camera(x, R, t)
    assert torch.allclose(camera_to_world(cam, R, t), x, atol=1e-5)
    # Rotation preserves distances; the camera sits about 5 m from the capture centre.
    assert torch.allclose((cam[:, 1] - cam[:, 0]).norm(dim=-1), (x[:, 1] - x[:, 0]).norm(dim=-1), atol=1e-5)
    assert 3.0 < float(world_to_camera(torch.zeros(1, 3), R, t)[0, 2]) < 8.0


def test_qrot_matches_rotation_matrix():
    angle = 0.7
    q = torch.tensor([np.cos(angle / 2), 0.0, 0.0, np.sin(angle / 2)], dtype=torch.float32)  # about z
    v = torch.tensor([1.0, 0.0, 0.0])
    assert torch.allclose(qrot(q, v), torch.tensor([np.cos(angle), np.sin(angle), 0.0], dtype=torch.float32), atol=1e-6)


def test_projection_without_distortion_is_the_pinhole():
    cam = torch.tensor([2.0, 2.1, 0.1, -0.05, 0, 0, 0, 0, 0])
    x = torch.tensor([[0.3, -0.2, 4.0], [0.0, 0.0, 5.0]])
    expected = torch.stack([2.0 * x[:, 0] / x[:, 2] + 0.1, 2.1 * x[:, 1] / x[:, 2] - 0.05], dim=-1)
    assert torch.allclose(project_to_2d(x, cam), expected)


def test_distortion_model_matches_hand_computation():
    cam = torch.tensor([2.0, 2.0, 0.0, 0.0, -0.2, 0.1, 0.01, 0.003, -0.002])
    x = torch.tensor([0.4, 0.2, 2.0])
    u, v = 0.2, 0.1
    r2 = u * u + v * v
    radial = 1 - 0.2 * r2 + 0.1 * r2 ** 2 + 0.01 * r2 ** 3
    tan = 0.003 * u - 0.002 * v
    expected = [2 * (u * (radial + tan) + 0.003 * r2), 2 * (v * (radial + tan) - 0.002 * r2)]
    assert torch.allclose(project_to_2d(x, cam), torch.tensor(expected), atol=1e-7)


def test_normalised_intrinsics_of_a_real_camera():
    c = h36m_metadata()["intrinsics"][0]
    cam = normalized_intrinsics(c["center"], c["focal_length"], c["radial_distortion"], c["tangential_distortion"],
                                c["res_w"], c["res_h"])
    assert cam.shape == (9,) and cam.dtype == np.float32
    assert np.isclose(cam[0], c["focal_length"][0] / 1000 * 2)
    assert np.isclose(cam[2], c["center"][0] / 1000 * 2 - 1)


def test_flipped_intrinsics_project_the_mirrored_scene_to_the_mirrored_image():
    c = h36m_metadata()["intrinsics"][2]
    cam = torch.from_numpy(normalized_intrinsics(c["center"], c["focal_length"], c["radial_distortion"],
                                                 c["tangential_distortion"], c["res_w"], c["res_h"]))
    x = torch.randn(20, 3) * 0.5 + torch.tensor([0.0, 0.0, 5.0])
    mirrored = x * torch.tensor([-1.0, 1.0, 1.0])
    p = project_to_2d(x, cam)
    p_m = project_to_2d(mirrored, flip_intrinsics(cam))
    assert torch.allclose(p_m, p * torch.tensor([-1.0, 1.0]), atol=1e-6)
