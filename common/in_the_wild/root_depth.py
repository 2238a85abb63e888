"""Camera and root trajectory for in-the-wild video, where neither is known.

JPMA (joint-wise reprojection aggregation) projects each hypothesis with the camera after
adding the root trajectory. In the wild we assume a distortion-free pinhole camera with a
guessed focal length and recover the root position per frame from the lifted pose and the
2D keypoints by linear least squares. The 2D can first be moved to a virtual camera with the
focal length of the training cameras (to_virtual_camera), so that a person filmed with another
lens appears at the sizes the model was trained on.
"""
from __future__ import annotations

import numpy as np

from ..geometry.camera import normalized_intrinsics


# The guessed focal length, in units of the larger image side: 0.9 is a field of view of
# 2 atan(1 / 1.8) = 58 degrees across the long side. A phone's main camera (26 mm equivalent,
# 4:3 sensor) has 0.75 in photos and more in video, where stabilisation crops the frame; lab
# cameras: MPI-INF-3DHP's 1920x1080 test cameras 0.88, Human3.6M's 1000x1000 ones 1.15. The
# image width alone is 0.56 of the long side on portrait video, which puts the person about
# 1.6 times too close.
FOCAL_PER_LONG_SIDE = 0.9


def default_focal(res_w: int, res_h: int) -> float:
    """The guessed focal length in pixels: FOCAL_PER_LONG_SIDE x the larger image side."""
    return FOCAL_PER_LONG_SIDE * max(res_w, res_h)


def default_intrinsics(res_w: int, res_h: int, focal_px: float | None = None) -> np.ndarray:
    """Normalised 9-vector intrinsics of a guessed pinhole camera: focal length focal_px, else
    default_focal (0.9 x the larger image side, in pixels), principal point = image centre,
    no distortion."""
    focal = float(default_focal(res_w, res_h) if focal_px is None else focal_px)
    return normalized_intrinsics(center_px=[res_w / 2, res_h / 2], focal_px=[focal, focal],
                                 radial=[0, 0, 0], tangential=[0, 0], res_w=res_w, res_h=res_h)


def estimate_root_trajectory(poses_3d: np.ndarray, keypoints_2d: np.ndarray, cam: np.ndarray,
                             confidence: np.ndarray | None = None) -> np.ndarray:
    """Root position T = (tx, ty, tz) per frame that best explains the 2D keypoints.

    poses_3d: (F, J, 3) root-relative metres (e.g. the mean over hypotheses);
    keypoints_2d: (F, J, 2) normalised screen units, same joint layout;
    cam: normalised intrinsics [fx, fy, cx, cy, ...] (distortion ignored);
    confidence: optional (F, J) joint weights. Returns traj (F, 1, 3) metres.

    The pinhole model u_j = fx (X_j + tx) / (Z_j + tz) + cx, multiplied out by the depth,
    is linear in T:  fx tx - (u_j - cx) tz = (u_j - cx) Z_j - fx X_j  (and likewise for y
    with fy, cy, Y_j). Stacking both rows of all joints gives A T = b (2J x 3) per frame,
    solved in the weighted least-squares sense: minimise sum_j w_j ||(X_j + T)_xy f -
    (u_j - c)(Z_j + tz)||^2 through the normal equations. Frames whose weights are all
    zero are solved with equal weights; frames whose keypoints all coincide (no depth can be
    told) get the smallest-norm least-squares solution.
    """
    poses_3d = np.asarray(poses_3d, dtype=np.float64)
    uv = np.asarray(keypoints_2d, dtype=np.float64)
    if poses_3d.shape[:2] != uv.shape[:2] or poses_3d.shape[-1] != 3 or uv.shape[-1] != 2:
        raise ValueError(f"expected poses (F, J, 3) and keypoints (F, J, 2) of the same F and J, "
                         f"got {poses_3d.shape} and {uv.shape}")
    f = np.asarray(cam[:2], dtype=np.float64)                        # (2,)
    d = uv - np.asarray(cam[2:4], dtype=np.float64)                  # (F, J, 2) u - c
    num_frames, num_joints = uv.shape[:2]

    A = np.zeros((num_frames, num_joints, 2, 3))                     # rows per joint and axis
    A[..., 0, 0] = f[0]
    A[..., 1, 1] = f[1]
    A[..., 2] = -d
    b = d * poses_3d[..., 2:3] - f * poses_3d[..., :2]               # (F, J, 2)

    w = np.ones((num_frames, num_joints)) if confidence is None else np.asarray(confidence, dtype=np.float64)
    w = np.where(w.sum(axis=1, keepdims=True) > 0, w, 1.0)           # (F, J)
    A = A.reshape(num_frames, 2 * num_joints, 3)
    b = b.reshape(num_frames, 2 * num_joints)
    w = np.repeat(w, 2, axis=1)                                      # (F, 2J)
    AtA = np.einsum("fri,fr,frk->fik", A, w, A)                      # (F, 3, 3)
    Atb = np.einsum("fri,fr,fr->fi", A, w, b)                        # (F, 3)
    # A frame whose keypoints all coincide (a collapsed detection) leaves the depth undetermined:
    # it gets the least-squares solution of smallest norm instead of a solver error.
    scale = np.abs(AtA).max(axis=(1, 2)) ** 3
    solvable = np.abs(np.linalg.det(AtA)) > 1e-12 * np.maximum(scale, 1e-300)
    traj = np.empty((num_frames, 3))
    traj[solvable] = np.linalg.solve(AtA[solvable], Atb[solvable][..., None])[..., 0]
    traj[~solvable] = (np.linalg.pinv(AtA[~solvable]) @ Atb[~solvable][..., None])[..., 0]
    return traj[:, None, :].astype(np.float32)


# The focal length of the cameras the models here are trained with (Human3.6M's, also the
# synthetic set's), in normalised screen units (focal px / half the image width).
TRAINING_FOCAL = 2.29


def training_focal(checkpoint: dict) -> float | None:
    """The normalised focal length of the cameras a checkpoint's model was trained with, where
    one focal fits them all: what our training recorded ('training_focal': None when the
    cameras' focal lengths differ or are unknown); for files without it (the authors', ours before),
    TRAINING_FOCAL, Human3.6M's."""
    args = checkpoint.get("args") or {}
    return args["training_focal"] if "training_focal" in args else TRAINING_FOCAL


def to_virtual_camera(x2d: np.ndarray, cam: np.ndarray, focal: float = TRAINING_FOCAL):
    """2D (..., J, 2) normalised, seen by the pinhole camera cam, as a camera at the same place
    with focal length `focal` and its principal point at the origin would see it: for a
    distortion-free camera this is exact (the same rays), and the root-relative 3D pose and the
    root position are unchanged. Returns (2D, that camera's 9-vector intrinsics)."""
    cam = np.asarray(cam, dtype=np.float32)
    virtual = np.zeros(9, np.float32)
    virtual[:2] = focal
    return ((np.asarray(x2d) - cam[2:4]) * (focal / cam[:2])).astype(np.float32), virtual
