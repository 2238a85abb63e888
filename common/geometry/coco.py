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


def keypoints_for_model(keypoints: np.ndarray, layout: str, confidence: np.ndarray | None = None,
                        given: str = "coco"):
    """Keypoints (..., 17, C) in the `given` joint order ('coco', a detector's COCO-17, or
    'h36m', Human3.6M-17 as the paper's CPN 2D is) in the layout a model expects (`layout`):
    unchanged when they agree, COCO -> Human3.6M mapped. Human3.6M-17 cannot become COCO-17
    (it has no eyes or ears): refused. Returns keypoints, or (keypoints, confidence) when
    confidence is given."""
    for name in (layout, given):
        if name not in LAYOUTS:
            raise ValueError(f"unknown keypoint layout {name!r}; expected one of {LAYOUTS}")
    if given == "h36m" and layout == "coco":
        raise ValueError("the keypoints are in Human3.6M-17 order but the model takes COCO-17 2D (eyes and ears, "
                         "which Human3.6M-17 lacks): give COCO-17 keypoints, or use a model trained on Human3.6M-layout "
                         "2D (e.g. the demo's)")
    if layout == "h36m" and given == "coco":
        return coco_to_h36m(keypoints, confidence)
    return keypoints if confidence is None else (keypoints, confidence)


# How far the first joints lie from joint 0, as a share of the diagonal of the person's box:
# in COCO-17 joints 1-4 are the eyes and ears around the nose (a few %); in Human3.6M-17 they
# are a hip, a knee, an ankle and the other hip around the pelvis (an ankle lies about half the
# body's length away). Between the two bounds the order cannot be told.
COCO_HEAD_SHARE = 0.15
H36M_LEG_SHARE = 0.3


def guess_layout(keypoints: np.ndarray, confidence: np.ndarray | None = None) -> str | None:
    """'coco' or 'h36m' when the geometry of keypoints (F, 17, 2) tells which joint order they
    are in, else None (see COCO_HEAD_SHARE): the median over the frames of the farthest of
    joints 1-4 from joint 0, divided by the diagonal of the confident joints' box."""
    xy = np.asarray(keypoints, dtype=np.float64)[..., :2]
    ok = np.isfinite(xy).all(axis=-1)
    if confidence is not None:
        ok &= np.nan_to_num(np.asarray(confidence, dtype=np.float64)) > 0
    shares = []
    for frame, seen in zip(xy, ok):
        if seen[:5].all() and seen.sum() >= 10:
            diagonal = np.linalg.norm(np.ptp(frame[seen], axis=0))
            if diagonal > 0:
                shares.append(np.linalg.norm(frame[1:5] - frame[0], axis=-1).max() / diagonal)
    if not shares:
        return None
    share = float(np.median(shares))
    return "coco" if share < COCO_HEAD_SHARE else "h36m" if share > H36M_LEG_SHARE else None


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
