"""BlazePose for several people: MediaPipe's two pose models run directly through LiteRT.

MediaPipe's Pose solution follows one person. Its models do not limit that: the person
detector (pose_detection.tflite, SSD-style, 224x224) finds every person in a frame, and the
landmark model (pose_landmark_full.tflite, 256x256) finds the 33 landmarks of the person in
one rotated square crop. This module reproduces MediaPipe's decoding of both (its graphs
pose_detection_cpu, pose_detection_to_roi, pose_landmark_by_roi and pose_landmarks_to_roi)
and follows each person on their own:

- person detector: a square region of the frame scaled to 224x224 (zero border), values in
  [-1, 1]; 2254 SSD anchors; scores sigmoid >= 0.5; weighted non-maximum suppression (IoU
  0.3). MediaPipe letterboxes the whole frame; here a wide frame is searched in overlapping
  squares of its height instead (detection_regions), where people look 1.8x larger on 16:9
  and are found far more often. Each detection carries 4 keypoints; keypoint 0 (mid-hip)
  and 1 (a point whose distance and direction from the hip give the body's size and tilt)
  make the person's region (ROI): a square centred on the hip, side 2.5 x that distance,
  turned to make the body upright;
- landmark model: the ROI cropped to 256x256 (edge pixels repeated), values in [0, 1];
  39 landmarks (x, y, z, visibility, presence), x and y refined by the heatmap as MediaPipe
  does; landmarks 33 and 34 (hip centre and size point) give the next frame's ROI; a pose
  presence below 0.5 means nobody is there;
- tracking (blazepose_tracking.MultiPoseTracker): each person's ROI comes from their own landmarks of the
  previous frame; the person detector runs on the first frame, every `redetect_every`
  frames, while nobody is followed and in a frame where someone is lost, and only people
  not already found start new tracks. No smoothing (MediaPipe's filters are not applied).

Positions are in image pixels, with MediaPipe's convention (pixel x = normalised x * width).
Only numpy is needed to import this module; LiteRT and the model files (inside the
mediapipe wheel) are loaded by blazepose_tracking.BlazePoseModels.
"""
from __future__ import annotations

import functools
import importlib.util
import math
from typing import NamedTuple

import numpy as np

DETECTOR_MODEL = "modules/pose_detection/pose_detection.tflite"
LANDMARK_MODEL = "modules/pose_landmark/pose_landmark_full.tflite"

DETECTOR_SIZE = 224            # the person detector's input (pixels, square)
LANDMARK_SIZE = 256            # the landmark model's input (pixels, square)
NUM_LANDMARKS = 33             # BlazePose's landmarks; the model gives 39 (33, then 6 auxiliary)
ROI_SCALE = 1.25               # the ROI's side = ROI_SCALE x 2 x |alignment point - centre|

# SSD anchors of the person detector (MediaPipe's SsdAnchorsCalculator options for it): layers
# with the same stride share one feature map; 2 anchors per cell and layer; fixed size 1.
ANCHOR_STRIDES = (8, 16, 32, 32, 32)
NUM_ANCHORS = 2254


class Roi(NamedTuple):
    """A rotated square region of the image: centre and side in pixels, angle in radians
    (positive turns the crop's x axis towards the image's +y, i.e. clockwise on screen)."""

    cx: float
    cy: float
    size: float
    angle: float


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


def ssd_anchors(input_size: int = DETECTOR_SIZE, strides=ANCHOR_STRIDES) -> np.ndarray:
    """Anchor centres (A, 2) x, y in [0, 1] of the person detector's outputs, in its order:
    per feature map (consecutive layers of equal stride merged), rows, columns, anchors."""
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        per_cell = 0
        while layer < len(strides) and strides[layer] == stride:
            per_cell += 2                               # aspect ratio 1.0 plus its interpolated scale
            layer += 1
        side = math.ceil(input_size / stride)
        grid = (np.arange(side, dtype=np.float32) + 0.5) / side
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)                  # (side*side, 2)
        centres.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(centres)


def decode_detections(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray,
                      min_score: float = 0.5, input_size: int = DETECTOR_SIZE):
    """The detector's raw outputs (A, 12) and (A,) logits -> boxes (K, 4) xmin, ymin, xmax, ymax,
    keypoints (K, 4, 2) and scores (K,) of the anchors scoring at least min_score; positions
    normalised to the detector's (letterboxed) input."""
    scores = sigmoid(np.clip(raw_scores.reshape(-1), -100.0, 100.0))
    keep = scores >= min_score
    raw = raw_boxes[keep].reshape(-1, 12) / input_size
    centre = raw[:, 0:2] + anchors[keep]
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = raw[:, 4:12].reshape(-1, 4, 2) + anchors[keep][:, None, :]
    return boxes, keypoints, scores[keep]


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) with boxes (K, 4), both xmin, ymin, xmax, ymax."""
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2]) + np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / np.maximum(area - inter, 1e-12)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3):
    """MediaPipe's weighted non-maximum suppression: the best remaining detection absorbs all
    that overlap it by more than iou_threshold, its box and keypoints becoming their
    score-weighted mean, its score staying its own. Returns (boxes, keypoints, scores) kept."""
    order = np.argsort(-scores, kind="stable")
    out_boxes, out_keypoints, out_scores = [], [], []
    while len(order):
        overlap = box_iou(boxes[order[0]], boxes[order]) > iou_threshold
        group = order[overlap]
        weights = scores[group] / scores[group].sum()
        out_boxes.append(weights @ boxes[group])
        out_keypoints.append(np.tensordot(weights, keypoints[group], axes=1))
        out_scores.append(scores[order[0]])
        order = order[~overlap]
    return (np.array(out_boxes).reshape(-1, 4), np.array(out_keypoints).reshape(-1, *keypoints.shape[1:]),
            np.array(out_scores))


def roi_from_alignment(centre, scale_point, scale: float = ROI_SCALE) -> Roi:
    """The square ROI around a person (MediaPipe's AlignmentPointsRects then RectTransformation):
    centred on `centre`, side scale x 2 x |scale_point - centre|, turned so that the direction
    centre -> scale_point points up in the crop (both points in pixels)."""
    dx, dy = scale_point[0] - centre[0], scale_point[1] - centre[1]
    angle = math.pi / 2 - math.atan2(-dy, dx)
    angle -= 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))          # into [-pi, pi)
    return Roi(float(centre[0]), float(centre[1]), 2.0 * scale * math.hypot(dx, dy), angle)


def frame_roi(width: int, height: int) -> Roi:
    """The whole frame letterboxed into a square (the person detector's input in MediaPipe)."""
    return Roi(width / 2, height / 2, float(max(width, height)), 0.0)


def detection_regions(width: int, height: int) -> list[Roi]:
    """The squares the person detector looks at: the whole frame when it is nearly square, else
    squares of its short side along the long one, each overlapping the next by half or more.
    The detector then sees people 224 / short side large instead of 224 / long side (1.8x for
    16:9, where it misses many people of a letterboxed frame), and anyone narrower than half
    the short side lies whole in one square."""
    long, short = max(width, height), min(width, height)
    if long <= 1.2 * short:
        return [frame_roi(width, height)]
    count = math.ceil((long - short) / (short / 2)) + 1
    centres = np.linspace(short / 2, long - short / 2, count)
    if width >= height:
        return [Roi(float(c), height / 2, float(short), 0.0) for c in centres]
    return [Roi(width / 2, float(c), float(short), 0.0) for c in centres]


def roi_matrix(roi: Roi, out_size: float) -> np.ndarray:
    """(2, 3) affine map from a crop of the ROI, out_size pixels square, to image pixels:
    crop (u, v) -> image (x, y) = centre + R(angle) ((u, v) / out_size - 1/2) side."""
    c, s = math.cos(roi.angle), math.sin(roi.angle)
    k = roi.size / out_size
    linear = np.array([[c, -s], [s, c]]) * k
    offset = np.array([roi.cx, roi.cy]) - linear @ np.array([out_size / 2, out_size / 2])
    return np.concatenate([linear, offset[:, None]], axis=1)


def to_image(roi: Roi, points: np.ndarray, out_size: float = 1.0) -> np.ndarray:
    """Points (..., 2) in crop coordinates (0..out_size across the ROI) -> image pixels."""
    m = roi_matrix(roi, out_size)
    return points @ m[:, :2].T + m[:, 2]


def warp_affine(image: np.ndarray, matrix: np.ndarray, out_size: int, border: str = "replicate") -> np.ndarray:
    """Crop (out_size, out_size, C) float32 of an image (h, w, C) uint8: output pixel (u, v) takes
    the bilinear sample at matrix @ (u, v, 1) (pixel i sits at coordinate i); outside the image
    the edge repeats (border="replicate") or is 0 (border="zero"). OpenCV does it when installed
    (mediapipe brings it; several times faster), else numpy (sample_affine)."""
    cv2 = _opencv()
    if cv2 is None:
        return sample_affine(image, matrix, out_size, border)
    mode = cv2.BORDER_CONSTANT if border == "zero" else cv2.BORDER_REPLICATE
    crop = cv2.warpAffine(np.ascontiguousarray(image), matrix, (out_size, out_size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=mode, borderValue=0)
    return crop.reshape(out_size, out_size, -1).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _opencv():
    """The cv2 module, or None when OpenCV is not installed."""
    if importlib.util.find_spec("cv2") is None:
        return None
    import cv2   # optional: opencv, which mediapipe depends on

    return cv2


def sample_affine(image: np.ndarray, matrix: np.ndarray, out_size: int, border: str = "replicate") -> np.ndarray:
    """warp_affine in numpy: the same crop, bilinear, without OpenCV."""
    if border not in ("zero", "replicate"):
        raise ValueError(f"border={border!r}: choose 'zero' or 'replicate'")
    h, w = image.shape[:2]
    grid = np.arange(out_size, dtype=np.float32)
    m = matrix.astype(np.float32)
    xs = (m[0, 0] * grid[None, :] + m[0, 1] * grid[:, None] + m[0, 2]).ravel()      # (N,) N = out_size^2
    ys = (m[1, 0] * grid[None, :] + m[1, 1] * grid[:, None] + m[1, 2]).ravel()
    x0, y0 = np.floor(xs), np.floor(ys)
    fx, fy = xs - x0, ys - y0
    x0, y0 = x0.astype(np.intp), y0.astype(np.intp)
    flat = image.reshape(h * w, -1)

    def corner(dx, dy):                                  # (C, N): channels first, so that the
        x, y = x0 + dx, y0 + dy                          # per-pixel weights broadcast cheaply
        values = np.take(flat, np.clip(y, 0, h - 1) * w + np.clip(x, 0, w - 1), axis=0).T
        values = values.astype(np.float32, order="C")
        if border == "zero":
            values *= (x >= 0) & (x < w) & (y >= 0) & (y < h)
        return values

    top = corner(0, 0)
    top += (corner(1, 0) - top) * fx
    bottom = corner(0, 1)
    bottom += (corner(1, 1) - bottom) * fx
    top += (bottom - top) * fy
    return top.T.reshape(out_size, out_size, -1)


def refine_with_heatmap(xy: np.ndarray, heatmap: np.ndarray, kernel: int = 7, min_confidence: float = 0.5):
    """MediaPipe's heatmap refinement: each landmark (L, 2), normalised to the crop, moves to the
    sigmoid-weighted mean cell of its kernel x kernel window in its heatmap channel (H, W, L)
    when the window's highest confidence reaches min_confidence (cells count from their
    corner, as MediaPipe does)."""
    hm_h, hm_w, n = heatmap.shape
    col = np.trunc(xy[:, 0] * hm_w).astype(np.int64)                    # C++ float -> int
    row = np.trunc(xy[:, 1] * hm_h).astype(np.int64)
    inside = (col >= 0) & (col < hm_w) & (row >= 0)
    offsets = np.arange(kernel) - (kernel - 1) // 2
    rows = row[:, None, None] + offsets[None, :, None]                   # (L, k, 1)
    cols = col[:, None, None] + offsets[None, None, :]                   # (L, 1, k)
    valid = (rows >= 0) & (rows < hm_h) & (cols >= 0) & (cols < hm_w)    # (L, k, k)
    channel = np.arange(n)[:, None, None]
    conf = sigmoid(heatmap[np.clip(rows, 0, hm_h - 1), np.clip(cols, 0, hm_w - 1), channel]) * valid
    total = conf.sum(axis=(1, 2))
    refine = inside & (conf.max(axis=(1, 2)) >= min_confidence) & (total > 0)
    out = xy.astype(np.float32, copy=True)
    safe = np.where(total > 0, total, 1.0)
    out[refine, 0] = ((conf * cols).sum(axis=(1, 2)) / safe / hm_w)[refine]
    out[refine, 1] = ((conf * rows).sum(axis=(1, 2)) / safe / hm_h)[refine]
    return out
