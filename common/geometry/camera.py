"""Camera geometry: screen normalisation, world <-> camera transforms, projection.

All functions are batched torch (any leading dimensions, any device) unless their name
says numpy. Units: 3D in metres; 2D either pixels or normalised screen units, where
[0, w] maps to [-1, 1] and y keeps the aspect ratio.

Intrinsics are the 9-vector used throughout the field (VideoPose3D layout), in
normalised units: [fx, fy, cx, cy, k1, k2, k3, p1, p2].
"""
from __future__ import annotations

import numpy as np
import torch


def normalize_screen_coordinates(x, w: float, h: float):
    """Pixels -> normalised screen units: x / w * 2 - [1, h / w]. numpy or torch."""
    assert x.shape[-1] == 2, f"expected (..., 2) keypoints, got {tuple(x.shape)}"
    offset = x.new_tensor([1.0, h / w]) if isinstance(x, torch.Tensor) else np.asarray([1.0, h / w], x.dtype)
    return x / w * 2 - offset


def image_coordinates(x, w: float, h: float):
    """Normalised screen units -> pixels (inverse of normalize_screen_coordinates)."""
    assert x.shape[-1] == 2, f"expected (..., 2) keypoints, got {tuple(x.shape)}"
    offset = x.new_tensor([1.0, h / w]) if isinstance(x, torch.Tensor) else np.asarray([1.0, h / w], x.dtype)
    return (x + offset) * w / 2


def qrot(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors v (..., 3) by unit quaternions q (..., 4), (w, x, y, z) order."""
    assert q.shape[-1] == 4 and v.shape[-1] == 3 and q.shape[:-1] == v.shape[:-1]
    qvec = q[..., 1:]
    uv = torch.cross(qvec, v, dim=-1)
    uuv = torch.cross(qvec, uv, dim=-1)
    return v + 2 * (q[..., :1] * uv + uuv)


def qinverse(q: torch.Tensor) -> torch.Tensor:
    """Inverse of a unit quaternion (w, x, y, z)."""
    return torch.cat([q[..., :1], -q[..., 1:]], dim=-1)


def _broadcast_q(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return q.to(x).expand(*x.shape[:-1], 4)


def world_to_camera(x: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """World points (..., 3) -> camera space; R is the camera-to-world quaternion, t the
    camera position in world units: x_cam = R^-1 (x - t)."""
    return qrot(_broadcast_q(qinverse(R), x), x - t.to(x))


def camera_to_world(x: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Camera-space points (..., 3) -> world: R x + t."""
    return qrot(_broadcast_q(R, x), x) + t.to(x)


def world_to_camera_np(x: np.ndarray, R, t) -> np.ndarray:
    """numpy wrapper of world_to_camera (float32 in, float32 out)."""
    out = world_to_camera(torch.from_numpy(np.asarray(x, dtype=np.float32)),
                          torch.as_tensor(R, dtype=torch.float32), torch.as_tensor(t, dtype=torch.float32))
    return out.numpy()


def _expand_intrinsics(cam: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Insert singleton dims so cam (..., 9) broadcasts against points x (..., J, 3).

    cam may be (9,), or carry any prefix of x's leading dims (e.g. (B, 9) for x (B, F, J, 3)).
    """
    cam = cam.to(x)
    while cam.dim() < x.dim():
        cam = cam.unsqueeze(-2)
    return cam


def project_to_2d(x: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """Project camera-space points (..., 3) with the Human3.6M distortion model
    (3 radial, 2 tangential). The normalised x/z, y/z are clamped to [-1, 1] before
    distortion, as VideoPose3D does. Returns (..., 2) in the units of cam."""
    assert x.shape[-1] == 3 and cam.shape[-1] == 9, (tuple(x.shape), tuple(cam.shape))
    cam = _expand_intrinsics(cam, x)
    f, c, k, p = cam[..., :2], cam[..., 2:4], cam[..., 4:7], cam[..., 7:9]
    xx = torch.clamp(x[..., :2] / x[..., 2:], min=-1, max=1)
    r2 = torch.sum(xx ** 2, dim=-1, keepdim=True)
    radial = 1 + torch.sum(k * torch.cat((r2, r2 ** 2, r2 ** 3), dim=-1), dim=-1, keepdim=True)
    tan = torch.sum(p * xx, dim=-1, keepdim=True)
    xxx = xx * (radial + tan) + p * r2
    return f * xxx + c


def normalized_intrinsics(center_px, focal_px, radial, tangential, res_w: int, res_h: int) -> np.ndarray:
    """Pixel intrinsics -> the normalised 9-vector [fx, fy, cx, cy, k1, k2, k3, p1, p2]."""
    center = normalize_screen_coordinates(np.asarray(center_px, dtype=np.float32), w=res_w, h=res_h)
    focal = np.asarray(focal_px, dtype=np.float32) / res_w * 2
    return np.concatenate([focal, center, np.asarray(radial, dtype=np.float32),
                           np.asarray(tangential, dtype=np.float32)]).astype(np.float32)


def flip_intrinsics(cam):
    """Intrinsics of the horizontally mirrored image: cx and the first tangential
    coefficient change sign (used with flip augmentation)."""
    cam = cam.copy() if isinstance(cam, np.ndarray) else cam.clone()
    cam[..., 2] *= -1
    cam[..., 7] *= -1
    return cam


def shared_focal(cams, tolerance: float = 0.05) -> float | None:
    """The normalised focal length (the mean of fx and fy) that every one of these intrinsics
    9-vectors has within `tolerance` (relative) of their mean, else None (None entries: None)."""
    cams = list(cams)
    if not cams or any(c is None for c in cams):
        return None
    focal = np.array([np.mean(np.asarray(c)[:2]) for c in cams], dtype=np.float64)
    mean = float(focal.mean())
    return round(mean, 4) if np.all(np.abs(focal - mean) <= tolerance * mean) else None
