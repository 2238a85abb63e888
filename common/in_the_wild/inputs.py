"""What lifting is given, checked before any sampling: the 2D joint layout a checkpoint's model
expects, the image size in pixels (flags, keypoint file, video) and the frames the pipeline
can use; after lifting, warnings about a clip whose numbers make no physical sense."""
from __future__ import annotations

import numpy as np

from ..geometry.coco import LAYOUTS
from ..storage.video import probe_video
from .keypoints import Keypoints2D
from .result import WildResult

# Frames the pipeline takes: the detector needs some pixels, and the model's input is
# normalised by the width, so very tall or very wide frames fall outside what it was trained on.
MIN_FRAME_SIDE = 32
MAX_ASPECT = 3.0


def input_layout_of(checkpoint: dict, requested: str = "auto") -> tuple[str, str]:
    """The 2D joint layout a checkpoint's model expects, and why: the flag when given,
    else what the training recorded ('input_layout', or a keypoints name containing 'coco')."""
    if requested != "auto":
        if requested not in LAYOUTS:
            raise ValueError(f"unknown input layout {requested!r}; expected one of {LAYOUTS}")
        return requested, "--input-layout"
    args = checkpoint.get("args") or {}
    if args.get("input_layout") in LAYOUTS:
        return args["input_layout"], "the checkpoint's training data"
    if "keypoints" in args:
        layout = "coco" if "coco" in str(args["keypoints"]) else "h36m"
        return layout, f"the checkpoint's training keypoints '-k {args['keypoints']}'"
    raise ValueError("the checkpoint does not say which 2D joint layout its model was trained on (the "
                     "authors' files do not); pass --input-layout coco for a model trained with "
                     "-k detectron_pt_coco, or --input-layout h36m for one trained on Human3.6M-layout 2D "
                     "(cpn_ft_h36m_dbb, gt)")


def image_size(keypoints: Keypoints2D, width: int | None = None, height: int | None = None,
               video=None) -> tuple[int, int]:
    """Image size in pixels: the flags, else the keypoint file's, else the video's."""
    if (width is None) != (height is None):
        raise ValueError("give both --width and --height (the image size in pixels)")
    if width is not None:
        return _positive_size(width, height, "--width/--height")
    if keypoints.res_w is not None and keypoints.res_h is not None:
        return _positive_size(keypoints.res_w, keypoints.res_h, "the keypoint file's image size")
    if video is not None:
        return _positive_size(*video_size(video), f"the size of {video}")
    raise ValueError("the keypoint file does not state the image size: give --width and --height "
                     "(pixels) or --video (the source video)")


def checked_image_size(size) -> tuple[int, int]:
    """An image size (width, height) in pixels given to the API, checked."""
    try:
        width, height = size
    except (TypeError, ValueError):
        raise ValueError(f"image_size={size!r}: give (width, height) in pixels, e.g. (1920, 1080)") from None
    return _positive_size(width, height, "image_size")


def _positive_size(width, height, source: str) -> tuple[int, int]:
    if width <= 0 or height <= 0:
        raise ValueError(f"{source} gives an image of {width}x{height} pixels; the image size must be positive: "
                         f"give the video's real size with --width and --height")
    return int(width), int(height)


def doubtful_input(result: "WildResult", keypoints: Keypoints2D) -> list[str]:
    """Warnings about a lifted clip whose numbers make no physical sense."""
    notes = []
    w, h = result.image_size
    depth = result.trajectory[:, 2]
    if (depth <= 0).any():
        notes.append(f"the estimated root depth is negative or zero in {(depth <= 0).sum()} of {len(depth)} frames "
                     f"(min {depth.min():.2f} m): check --width/--height/--focal and that the 2D is one person")
    elif depth.max() > 100:
        notes.append(f"the estimated root depth reaches {depth.max():.0f} m: check --width/--height/--focal")
    pixels = keypoints.keypoints
    outside = ((pixels < -0.5 * np.array([w, h])) | (pixels > 1.5 * np.array([w, h]))).any(axis=-1).mean()
    if outside > 0.1:
        notes.append(f"{outside:.0%} of the keypoints lie far outside the {w}x{h} image: is the image size right?")
    return notes


def video_size(path) -> tuple[int, int]:
    """(width, height) of a video's first stream (PyAV, else ffprobe)."""
    info = probe_video(path)
    return info.width, info.height


def check_frame_size(width: int, height: int, source) -> None:
    """Refuse frames the detector and the model cannot use (see MIN_FRAME_SIDE, MAX_ASPECT)."""
    if min(width, height) < MIN_FRAME_SIDE or max(width / height, height / width) > MAX_ASPECT:
        raise ValueError(f"{source}: frames of {width}x{height} pixels cannot be used: the pipeline needs at least "
                         f"{MIN_FRAME_SIDE} pixels a side and an aspect ratio within {MAX_ASPECT:g}:1 (the model's "
                         f"input is normalised by the image width); give a larger or less elongated video")
