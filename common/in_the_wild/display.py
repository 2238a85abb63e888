"""Showing a lifted clip: the animation of the 2D input and the 3D pose with its hypotheses
and uncertainty (render_result), and the seconds spent per step (timing_summary)."""
from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np

from ..geometry.coco import coco_skeleton
from ..geometry.skeleton import h36m_skeleton_17
from ..storage.video import VideoFrames
from .result import WildResult


def timing_summary(result: WildResult, timings: dict | None = None) -> str:
    """Seconds spent per step (the result's timings, or those given: e.g. every person's of a
    video), and per second of video (detection and lifting together faster than 1 s per second
    means faster than the video plays)."""
    t = result.timings if timings is None else timings
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in t.items())
    if not result.fps:
        return f"time: {parts}"
    seconds = (result.video.frames if result.video is not None else len(result.frame_ids)) / result.fps
    per = ", ".join(f"{k} {v / seconds:.3f}" for k, v in t.items())
    work = t.get("detect", 0.0) + t.get("lift", 0.0)
    return (f"time: {parts} for {seconds:.1f} s of video; seconds per second of video: {per} "
            f"(detection + lifting {work / seconds:.3f}: {'faster' if work < seconds else 'slower'} than the video plays)")


def render_result(result: WildResult, out_path, video=None, fps: float | None = None, size: float = 5.0,
                  limit: int | None = None, downsample: int = 1, azim: float = -70.0) -> Path:
    """Animation of the 2D input over the video frame (when given; otherwise a blank image) and
    the pose of result.pose_mode (T-Agg by default) over the last iteration's hypotheses. For a lifted video (result.video),
    every decoded frame is drawn, those without a lifted pose with the frame alone; for a
    keypoint file, the frames from its first frame number on. H.264 MP4 with PyAV (or ffmpeg),
    else GIF; fps: the video's unless given."""
    from ..outputs.render import render_animation      # heavy: matplotlib, loaded only when drawing

    keypoints, shown, hyps, radii = result.keypoints_2d, result.shown, result.hypotheses[:, -1], result.uncertainty
    background = None
    if video is not None:
        background = iter(VideoFrames(video))
        if result.video is not None:                         # every decoded frame, NaN where not lifted
            rows = result.frame_ids
            keypoints, shown, hyps = (_spread(x, rows, result.video.frames) for x in (keypoints, shown, hyps))
            radii = None if radii is None else _spread(radii, rows, result.video.frames)
        else:
            background = islice(background, int(result.frame_ids[0]), None)
    fps = fps or result.fps or 25.0
    return render_animation(out_path, keypoints, {result.pose_mode: shown}, h36m_skeleton_17(),
                            fps=fps, size=size, hypotheses=hyps, background=background,
                            resolution=result.image_size, limit=limit, downsample=downsample, azim=azim,
                            skeleton_2d=coco_skeleton() if result.keypoints_layout == "coco" else None,
                            uncertainty=radii, uncertainty_label=_radius_label(result))


def _radius_label(result: WildResult) -> str:
    return (f"{result.coverage:.0%} radius, mm" if result.uncertainty_calibrated
            else "spread of the hypotheses, mm (uncalibrated)")


def _spread(values: np.ndarray, rows: np.ndarray, frames: int) -> np.ndarray:
    """values for frames `rows` -> (frames, ...) with NaN elsewhere."""
    out = np.full((frames,) + values.shape[1:], np.nan, np.float32)
    out[rows] = values
    return out
