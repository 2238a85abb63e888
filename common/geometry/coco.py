"""COCO-17 keypoints (what 2D detectors give) -> the joint layout a lifting model expects.

Two kinds of model exist:
- 'h36m': trained on Human3.6M-layout 2D input (`-k cpn_ft_h36m_dbb` or `gt`). COCO
  keypoints are mapped to the 17 Human3.6M joints (COCO_TO_H36M below).
- 'coco': trained directly on COCO-17 2D input (`-k detectron_pt_coco`), as the paper's
  in-the-wild model is. The 2D input passes through unchanged, but the model's 3D output
  is still in Human3.6M layout, so anything comparing 3D output with the 2D input joint by
  joint (JPMA reprojection, root estimation) must use the mapped 'h36m' 2D.

Mapping choices (the common in-the-wild convention, e.g. MotionBERT's coco2h36m):
pelvis = mid-hips, thorax = mid-shoulders, spine = midpoint of pelvis and thorax,
neck_nose = nose, head = mid-eyes. COCO has no head-top joint; mid-eyes sits lower than
Human3.6M's head joint, so lifted heads come out slightly short.
"""
from __future__ import annotations

import numpy as np

from .skeleton import H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT, Layout, Skeleton

COCO_NAMES = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
              "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
              "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]
COCO_JOINTS_LEFT = [1, 3, 5, 7, 9, 11, 13, 15]
COCO_JOINTS_RIGHT = [2, 4, 6, 8, 10, 12, 14, 16]

# Human3.6M joint j = mean of these COCO joints (order of common.geometry.skeleton.h36m_skeleton_17).
COCO_TO_H36M = [
    (11, 12),         # 0 pelvis = mid-hips
    (12,),            # 1 right_hip
    (14,),            # 2 right_knee
    (16,),            # 3 right_ankle
    (11,),            # 4 left_hip
    (13,),            # 5 left_knee
    (15,),            # 6 left_ankle
    (5, 6, 11, 12),   # 7 spine = mid(pelvis, thorax)
    (5, 6),           # 8 thorax = mid-shoulders
    (0,),             # 9 neck_nose = nose
    (1, 2),           # 10 head = mid-eyes
    (5,),             # 11 left_shoulder
    (7,),             # 12 left_elbow
    (9,),             # 13 left_wrist
    (6,),             # 14 right_shoulder
    (8,),             # 15 right_elbow
    (10,),            # 16 right_wrist
]

LAYOUTS = ("coco", "h36m")


def coco_to_h36m_matrix() -> np.ndarray:
    """(17 H36M, 17 COCO) averaging weights: h36m = W @ coco."""
    weights = np.zeros((17, 17), dtype=np.float32)
    for j, sources in enumerate(COCO_TO_H36M):
        weights[j, list(sources)] = 1.0 / len(sources)
    return weights


def coco_to_h36m(keypoints: np.ndarray, confidence: np.ndarray | None = None):
    """Map COCO-17 keypoints (..., 17, C) to Human3.6M-17 (..., 17, C).

    Returns the mapped keypoints, and also the mapped confidence (..., 17) when one is
    given: a derived joint is as confident as its least confident source joint.
    """
    keypoints = np.asarray(keypoints)
    if keypoints.shape[-2] != 17:
        raise ValueError(f"expected COCO-17 keypoints (..., 17, C), got shape {keypoints.shape}")
    mapped = np.einsum("hc,...cd->...hd", coco_to_h36m_matrix(), keypoints).astype(keypoints.dtype)
    if confidence is None:
        return mapped
    confidence = np.asarray(confidence)
    mapped_conf = np.stack([confidence[..., list(s)].min(axis=-1) for s in COCO_TO_H36M], axis=-1)
    return mapped, mapped_conf


def keypoints_for_model(keypoints: np.ndarray, layout: str, confidence: np.ndarray | None = None):
    """COCO-17 keypoints (..., 17, C) in the layout a model expects: 'coco' (unchanged) or
    'h36m' (mapped). Returns keypoints, or (keypoints, confidence) when confidence is given."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown keypoint layout {layout!r}; expected one of {LAYOUTS}")
    if layout == "h36m":
        return coco_to_h36m(keypoints, confidence)
    return keypoints if confidence is None else (keypoints, confidence)


def coco_skeleton() -> Skeleton:
    """COCO-17 drawn as a tree rooted at the nose (for plotting 2D detections)."""
    parents = [-1, 0, 0, 1, 2, 0, 0, 5, 6, 7, 8, 5, 6, 11, 12, 13, 14]
    return Skeleton(parents, COCO_JOINTS_LEFT, COCO_JOINTS_RIGHT, COCO_NAMES)


def input_layout(name: str) -> Layout:
    """The joint layout of a model taking `name` 2D input ('coco' or 'h36m') and giving
    Human3.6M-17 3D output."""
    if name not in LAYOUTS:
        raise ValueError(f"unknown keypoint layout {name!r}; expected one of {LAYOUTS}")
    kps = (COCO_JOINTS_LEFT, COCO_JOINTS_RIGHT) if name == "coco" else (H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT)
    return Layout(H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT, *kps, input_name=name)
