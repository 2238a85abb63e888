"""A COCO-17 face on the synthetic skeleton: nose, eyes and ears placed in a head frame, and
the body joints COCO shares with the 32-joint Human3.6M skeleton."""
from __future__ import annotations

import numpy as np

from .motion import (HEAD, L_ANKLE, L_ELBOW, L_HIP, L_KNEE, L_SHOULDER, L_WRIST, NECK_NOSE, R_ANKLE, R_ELBOW,
                     R_HIP, R_KNEE, R_SHOULDER, R_WRIST, THORAX)

# Face points in the head frame (x forward, y left, z up), origin at the neck_nose joint,
# in units of the neck_nose -> head distance (about 11.5 cm): nose tip, eyes, ears.
FACE_POINTS = {"nose": (0.35, 0.0, 0.15), "left_eye": (0.25, 0.28, 0.45), "right_eye": (0.25, -0.28, 0.45),
               "left_ear": (-0.3, 0.65, 0.35), "right_ear": (-0.3, -0.65, 0.35)}
# COCO-17 body joints (5..16) taken from the 32-joint skeleton: shoulders, elbows, wrists,
# hips, knees, ankles, left before right.
COCO_BODY_FROM_32 = [L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST,
                     L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE]


def coco_points(world_32: np.ndarray) -> np.ndarray:
    """COCO-17 3D points (N, 17, 3) from 32-joint Human3.6M poses (N, 32, 3), z up (world):
    body joints are the skeleton's own; nose, eyes and ears sit in a head frame whose up
    axis is neck_nose -> head and whose forward axis is thorax -> neck_nose made
    perpendicular to it."""
    p = np.asarray(world_32, dtype=np.float64)
    up = p[:, HEAD] - p[:, NECK_NOSE]                                  # (N, 3)
    length = np.linalg.norm(up, axis=-1, keepdims=True)
    up = up / length
    forward = p[:, NECK_NOSE] - p[:, THORAX]
    forward = forward - (forward * up).sum(-1, keepdims=True) * up
    forward = forward / np.linalg.norm(forward, axis=-1, keepdims=True)
    left = np.cross(up, forward)                                       # z x x = y
    frame = np.stack([forward, left, up], axis=-1)                     # (N, 3, 3) columns: x, y, z
    face = np.asarray(list(FACE_POINTS.values()))                      # (5, 3) head units
    face = p[:, None, NECK_NOSE] + length[:, None] * np.einsum("nij,kj->nki", frame, face)
    return np.concatenate([face, p[:, COCO_BODY_FROM_32]], axis=1).astype(np.float32)
