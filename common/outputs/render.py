"""Figures of 2D input and 3D poses: an animation (MP4 or GIF) and still images.

Poses are camera-space metres (x right, y down, z forward). They are drawn as (x, z, -y)
so the person stands upright; azim=-90, elev=0 looks from the camera. Left joints and
bones are blue, right ones red, the rest dark grey; hypotheses are faint grey.
Figures are built on matplotlib's Agg canvas directly, so no display or pyplot state is
involved.
"""
from __future__ import annotations

import shutil
import sys
from itertools import chain, islice, repeat
from pathlib import Path

import numpy as np
from matplotlib.animation import FFMpegWriter, PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from mpl_toolkits.mplot3d.art3d import Line3DCollection
from tqdm import tqdm

from ..geometry.skeleton import Skeleton
from ..storage.video import FFMPEG_HINT, PYAV_HINT, MP4Writer, pyav_available, read_video_frames  # noqa: F401 (re-exported)

LEFT_COLOR, RIGHT_COLOR, CENTER_COLOR = "tab:blue", "tab:red", "0.25"
HYPOTHESIS_STYLE = dict(colors="0.55", linewidths=1.0, alpha=0.35)
GROUND_TRUTH_STYLE = dict(colors="k", linewidths=1.5, linestyles="--")
MP4_HINT = f"{PYAV_HINT}, or {FFMPEG_HINT}"


def mp4_available() -> bool:
    """Whether animations can be written as MP4 (PyAV, else ffmpeg on PATH)."""
    return pyav_available() or shutil.which("ffmpeg") is not None
UNCERTAINTY_CMAP = "plasma"


def render_animation(out_path, keypoints_2d: np.ndarray, poses: dict, skeleton: Skeleton,
                     fps: float = 25, size: float = 5.0, dpi: int = 100,
                     hypotheses: np.ndarray | None = None, bold: str | None = None,
                     ground_truth: np.ndarray | None = None, background=None,
                     resolution: tuple[int, int] | None = None, limit: int | None = None,
                     downsample: int = 1, azim: float = -70.0, elev: float = 15.0,
                     skeleton_2d: Skeleton | None = None, progress: bool | None = None,
                     uncertainty: np.ndarray | None = None, uncertainty_label: str = "uncertainty radius, mm") -> Path:
    """Animate the 2D input next to one 3D panel per pose; returns the written file.

    keypoints_2d (F, J2, 2) pixels; poses {label: (F, J, 3)} metres; hypotheses
    (F, H, J, 3) drawn faintly behind the `bold` pose (default: the first label);
    ground_truth (F, J, 3) gets its own panel. background: video frames (iterable of
    (h, w, 3) uint8) or a video path (read with PyAV or ffmpeg); otherwise a light grey image of
    `resolution` (w, h) pixels, or one just covering the keypoints. limit caps the input
    frames used, downsample keeps every n-th (played at fps / downsample). skeleton_2d
    draws the 2D input when its layout differs from the 3D one (e.g. COCO input).
    Each panel is size x size inches at dpi (the input panel over a landscape video frame is
    wider, up to 2 x size). Writes H.264 MP4 when the path ends in .mp4 and
    PyAV is installed (or ffmpeg is on PATH), otherwise a GIF (a .mp4 path then becomes .gif,
    with a message). Frames whose pose is NaN (not lifted) show the input alone.
    progress: a progress bar (default: only when stderr is a terminal, never into a log).
    uncertainty (F, J) mm: the bold pose's joints are drawn coloured by it, with a colour bar
    named uncertainty_label.
    """
    keypoints_2d = np.asarray(keypoints_2d, dtype=np.float32)
    panels = {label: np.asarray(p, dtype=np.float32) for label, p in poses.items()}
    hypotheses = None if hypotheses is None else np.asarray(hypotheses, dtype=np.float32)
    bold = next(iter(panels)) if bold is None else bold
    if bold not in panels:
        raise ValueError(f"bold pose {bold!r} is not among the poses {list(panels)}")
    if ground_truth is not None:
        panels["Ground truth"] = np.asarray(ground_truth, dtype=np.float32)
    num_frames = keypoints_2d.shape[0]
    for label, pose in panels.items():
        if pose.shape[0] != num_frames or pose.shape[-1] != 3 or pose.ndim != 3:
            raise ValueError(f"pose {label!r} has shape {pose.shape}; expected ({num_frames}, J, 3)")
    if hypotheses is not None and (hypotheses.ndim != 4 or hypotheses.shape[0] != num_frames):
        raise ValueError(f"hypotheses have shape {hypotheses.shape}; expected ({num_frames}, H, J, 3)")
    if uncertainty is not None:
        uncertainty = np.asarray(uncertainty, dtype=np.float32)
        if uncertainty.shape != panels[bold].shape[:2]:
            raise ValueError(f"uncertainty has shape {uncertainty.shape}; expected {panels[bold].shape[:2]} (frames, joints)")
    if limit is not None:
        num_frames = min(num_frames, limit)
    frame_indices = range(0, num_frames, downsample)
    path, writer = _choose_writer(Path(out_path), fps / downsample)

    images = _background_frames(background, keypoints_2d, resolution)
    first_image = next(images, None)
    if first_image is None:
        raise ValueError("the background video has no frames")
    images = islice(chain([first_image], images), 0, num_frames, downsample)

    # a landscape video frame gets a wider input panel (up to 2:1); blank backgrounds stay square
    wide = 1.0 if background is None else min(max(first_image.shape[1] / first_image.shape[0], 1.0), 2.0)
    fig = Figure(figsize=(size * (wide + len(panels)), size), dpi=dpi)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.9, wspace=0.05)
    grid = fig.add_gridspec(1, 1 + len(panels), width_ratios=[wide] + [1] * len(panels))
    input_panel = _InputPanel(fig.add_subplot(grid[0, 0]), keypoints_2d, skeleton_2d or skeleton, first_image)
    radius = 1.1 * max(np.nanmax(np.abs(p - p[:, :1]), initial=0.1) for p in panels.values())
    pose_panels = [
        _PosePanel(fig.add_subplot(grid[0, 1 + k], projection="3d", computed_zorder=False),
                   label, pose, skeleton, radius, azim, elev, bold=label == bold,
                   hypotheses=hypotheses if label == bold else None,
                   radii=uncertainty if label == bold else None)
        for k, (label, pose) in enumerate(panels.items())]
    for panel in pose_panels:
        if panel.radii is not None:
            fig.colorbar(panel.points, ax=panel.ax, shrink=0.5, pad=0.02, label=uncertainty_label)

    with writer.saving(fig, str(path), dpi=dpi):
        show = sys.stderr.isatty() if progress is None else progress
        for i in tqdm(frame_indices, desc=f"rendering {path.name}", unit="frame", disable=not show):
            image = next(images, None)
            if image is None:
                raise ValueError(f"the background video has fewer frames than the {num_frames} "
                                 "keypoint frames to render")
            input_panel.show(i, image)
            for panel in pose_panels:
                panel.show(i)
            writer.grab_frame()
    return path


def plot_iteration_errors(out_png, errors: dict, dpi: int = 120) -> Path:
    """Error (mm) against sampling iteration k = 1..K, one curve per aggregation mode
    (e.g. {'J-Agg': [...], 'P-Agg': [...], 'P-Best': [...], 'J-Best': [...]})."""
    fig = Figure(figsize=(6, 4), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for mode, values in errors.items():
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=mode)
    ax.set_xlabel("sampling iteration k")
    ax.set_ylabel("MPJPE (mm)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(out_png, bbox_inches="tight")
    return Path(out_png)


def plot_hypotheses_frame(out_png, hypotheses: np.ndarray, agg: np.ndarray, gt: np.ndarray | None,
                          skeleton: Skeleton, label: str = "J-Agg", azim: float = -70.0,
                          elev: float = 15.0, size: float = 5.0, dpi: int = 120,
                          uncertainty: np.ndarray | None = None,
                          uncertainty_label: str = "uncertainty radius, mm") -> Path:
    """One frame: all hypotheses (H, J, 3) faint, the aggregated pose (J, 3) bold and the
    ground truth (J, 3, dashed) when given; metres, camera space. uncertainty (J,) mm colours
    the aggregated pose's joints."""
    fig = Figure(figsize=(size, size), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(projection="3d", computed_zorder=False)
    poses = [hypotheses.reshape(-1, 3), agg] + ([] if gt is None else [gt])
    radius = 1.1 * max(np.abs(p - agg[:1]).max() for p in poses)
    panel = _PosePanel(ax, label, agg[None], skeleton, radius, azim, elev, bold=True,
                       hypotheses=hypotheses[None], radii=None if uncertainty is None else np.asarray(uncertainty)[None])
    if panel.radii is not None:
        fig.colorbar(panel.points, ax=ax, shrink=0.5, pad=0.02, label=uncertainty_label)
    handles = [Line2D([], [], color=HYPOTHESIS_STYLE["colors"], label=f"{len(hypotheses)} hypotheses"),
               Line2D([], [], color=CENTER_COLOR, lw=3, label=label)]
    if gt is not None:
        panel.ax.add_collection3d(Line3DCollection(_segments(_to_plot(gt), skeleton.bones()),
                                                   **GROUND_TRUTH_STYLE))
        handles.append(Line2D([], [], color="k", ls="--", label="ground truth"))
    panel.show(0)
    ax.legend(handles=handles, loc="upper left", fontsize="small")
    fig.savefig(out_png)
    return Path(out_png)


class _InputPanel:
    """The 2D keypoints over the video frame (or a blank image)."""

    def __init__(self, ax, keypoints_2d: np.ndarray, skeleton: Skeleton, first_image: np.ndarray):
        self.keypoints = keypoints_2d                                 # (F, J, 2) pixels
        self.bones = skeleton.bones()
        colors = _joint_colors(skeleton)
        ax.set_axis_off()
        ax.set_title("Input")
        self.image = ax.imshow(first_image)
        self.lines = LineCollection(_segments(keypoints_2d[0], self.bones), linewidths=2,
                                    colors=[colors[c] for c, _ in self.bones])
        ax.add_collection(self.lines, autolim=False)
        self.points = ax.scatter(*keypoints_2d[0].T, s=12, c=colors, zorder=3)

    def show(self, i: int, image: np.ndarray):
        self.image.set_data(image)
        self.lines.set_segments(_segments(self.keypoints[i], self.bones))
        self.points.set_offsets(self.keypoints[i])


class _PosePanel:
    """One 3D axis showing a pose over time, optionally over faint hypotheses."""

    def __init__(self, ax, title: str, pose: np.ndarray, skeleton: Skeleton, radius: float,
                 azim: float, elev: float, bold: bool = False, hypotheses: np.ndarray | None = None,
                 radii: np.ndarray | None = None):
        self.ax, self.radius = ax, radius
        self.radii = radii                                            # (F, J) mm, colours the joints
        self.bones = skeleton.bones()
        self.pose = _to_plot(pose)                                    # (F, J, 3) plot axes
        self.hypotheses = None if hypotheses is None else _to_plot(hypotheses)  # (F, H, J, 3)
        ax.view_init(elev=elev, azim=azim)
        ax.set_box_aspect((1, 1, 1), zoom=1.1)
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            axis.set_ticklabels([])
        ax.set_title(title, fontweight="bold" if bold else "normal")
        if self.hypotheses is not None:
            self.hypothesis_lines = Line3DCollection(self._hypothesis_segments(0), **HYPOTHESIS_STYLE)
            ax.add_collection3d(self.hypothesis_lines)
        colors = _joint_colors(skeleton)
        self.lines = Line3DCollection(_segments(self.pose[0], self.bones), linewidths=3 if bold else 2,
                                      colors=[colors[c] for c, _ in self.bones])
        ax.add_collection3d(self.lines)
        if radii is not None:
            top = float(np.nanpercentile(radii, 99)) if np.isfinite(radii).any() else 1.0
            self.points = ax.scatter(*self.pose[0].T, c=radii[0], cmap=UNCERTAINTY_CMAP, vmin=0,
                                     vmax=max(top, 1e-6), s=36, depthshade=False, edgecolors="k", linewidths=0.4)

    def _hypothesis_segments(self, i: int) -> np.ndarray:
        return _segments(self.hypotheses[i], self.bones).reshape(-1, 2, 3)  # (H * bones, 2, 3)

    def show(self, i: int):
        self.lines.set_segments(_segments(self.pose[i], self.bones))
        if self.hypotheses is not None:
            self.hypothesis_lines.set_segments(self._hypothesis_segments(i))
        if self.radii is not None:
            self.points._offsets3d = tuple(self.pose[i].T)
            self.points.set_array(self.radii[i])
        root = self.pose[i, 0]
        if not np.isfinite(root).all():                               # a frame without a pose
            return
        self.ax.set_xlim3d(root[0] - self.radius, root[0] + self.radius)
        self.ax.set_ylim3d(root[1] - self.radius, root[1] + self.radius)
        self.ax.set_zlim3d(root[2] - self.radius, root[2] + self.radius)


def _choose_writer(path: Path, fps: float):
    """MP4 via PyAV (else ffmpeg) when possible, else GIF via Pillow; returns (path written, writer)."""
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ValueError(f"cannot write {path}: use a .mp4 or .gif file name")
    if suffix == ".mp4":
        if pyav_available():
            return path, MP4Writer(fps)
        if shutil.which("ffmpeg") is not None:
            return path, FFMpegWriter(fps=fps)
        path = path.with_suffix(".gif")
        print(f"neither PyAV nor ffmpeg is installed, so the animation is written as {path}; for MP4, {MP4_HINT}.")
    return path, PillowWriter(fps=fps)


def _background_frames(background, keypoints_2d: np.ndarray, resolution):
    """Iterator over the frames to draw under the keypoints (h, w, 3) uint8."""
    if isinstance(background, (str, Path)):
        return read_video_frames(background)
    if background is not None:
        return iter(background)
    if resolution is None:
        resolution = np.ceil(np.nanmax(keypoints_2d.reshape(-1, 2), axis=0)).astype(int) + 1
    w, h = (int(v) for v in resolution)
    blank = np.full((h, w, 3), 245, dtype=np.uint8)
    return repeat(blank)


def _to_plot(x: np.ndarray) -> np.ndarray:
    """Camera space (..., 3) -> plot axes (x, z, -y): depth away from the viewer, up is up."""
    return np.stack([x[..., 0], x[..., 2], -x[..., 1]], axis=-1)


def _segments(pose: np.ndarray, bones) -> np.ndarray:
    """Joints (..., J, D) -> bone segments (..., bones, 2, D)."""
    return pose[..., np.asarray(bones), :]


def _joint_colors(skeleton: Skeleton) -> list:
    """Colour of each joint by body side (bones take their child joint's colour)."""
    left, right = set(skeleton.joints_left), set(skeleton.joints_right)
    return [LEFT_COLOR if j in left else RIGHT_COLOR if j in right else CENTER_COLOR
            for j in range(skeleton.num_joints())]
