"""In-the-wild inference: 3D poses for one person's detected 2D keypoints, with no 3D ground
truth and no known camera.

The steps (docs/method.md, with the parts that need ground truth replaced):
1. COCO-17 keypoints (pixels) -> the model's input layout ('coco': unchanged, 'h36m': mapped),
   normalised with the image size.
2. The clip is cut into the model's F-frame evaluation windows (the last aligned to the end,
   short clips padded) and H hypotheses are sampled over K DDIM iterations with flip
   test-time augmentation; windows are reassembled per frame.
3. JPMA without ground truth: a pinhole camera (focal = image width unless given), the root
   trajectory by least squares from the mean hypothesis and the 2D, then per frame and joint
   the hypothesis joint whose reprojection is nearest the 2D (mapped to Human3.6M joints,
   the layout of the 3D output).
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import aggregation as agg
from ..camera import normalize_screen_coordinates
from ..coco import COCO_JOINTS_LEFT, COCO_JOINTS_RIGHT, LAYOUTS, coco_to_h36m, keypoints_for_model
from ..diffusion import DDIMSampler
from ..sampling import FlipLayout, sample_windows
from ..skeleton import H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT
from .keypoints import Keypoints2D
from .root_depth import default_intrinsics, estimate_root_trajectory

# Left / right 2D joints of each input layout (for flipping the input).
INPUT_SYMMETRY = {"coco": (COCO_JOINTS_LEFT, COCO_JOINTS_RIGHT), "h36m": (H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT)}
ROOT = 0  # pelvis, Human3.6M-17


@dataclass
class WildResult:
    """3D output for one clip; 3D in metres, camera space, root-relative (pelvis = 0)."""

    hypotheses: np.ndarray    # (N, K, H, 17, 3) every iteration's hypotheses
    j_agg: np.ndarray         # (N, 17, 3) J-Agg pose of the last iteration
    p_agg: np.ndarray         # (N, 17, 3) mean of the last iteration's hypotheses
    trajectory: np.ndarray    # (N, 3) estimated root position, metres, camera space
    keypoints_2d: np.ndarray  # (N, 17, 2) the input, COCO-17 pixels
    confidence: np.ndarray    # (N, 17) detector confidence (0 where filled in)
    frame_ids: np.ndarray     # (N,) frame number of each row
    intrinsics: np.ndarray    # (9,) normalised [fx, fy, cx, cy, k1, k2, k3, p1, p2] used by JPMA
    image_size: tuple         # (width, height) pixels
    input_layout: str         # 'coco' or 'h36m'

    def save(self, path) -> Path:
        """Write everything to an .npz (plain arrays, no pickles)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, hypotheses=self.hypotheses, j_agg=self.j_agg, p_agg=self.p_agg,
                 trajectory=self.trajectory, keypoints_2d=self.keypoints_2d, confidence=self.confidence,
                 frame_ids=self.frame_ids, intrinsics=self.intrinsics,
                 image_size=np.asarray(self.image_size, dtype=np.int64), input_layout=np.str_(self.input_layout))
        return path


# ---------------------------------------------------------------------------- model and inputs

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
                     "(pixels) or --video (the source video, read with ffprobe)")


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
    """(width, height) of a video's first stream, read with ffprobe."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"video not found: {path}")
    if shutil.which("ffprobe") is None:
        raise ValueError(f"reading the size of {path} needs ffprobe (part of ffmpeg); install ffmpeg or "
                         "give --width and --height")
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=width,height", "-of", "csv=p=0", str(path)], capture_output=True, text=True)
    if probe.returncode != 0 or "," not in probe.stdout:
        raise ValueError(f"ffprobe could not read the size of {path}: {probe.stderr.strip()}")
    w, h = (int(v) for v in probe.stdout.strip().split(",")[:2])
    return w, h


# ---------------------------------------------------------------------------- sampling

def sample_clip(model, sampler: DDIMSampler, x2d: np.ndarray, hypotheses: int, kps_left, kps_right,
                flip: bool = True, batch: int = 4, seed: int = 0, device="cpu") -> np.ndarray:
    """H hypotheses per frame for a whole clip of any length.

    x2d (N, J, 2) normalised input keypoints -> (N, K, H, 17, 3) metres, root-relative. The
    clip is cut into F-frame evaluation windows and sampled `batch` windows per denoiser call
    (common.sampling); every frame is taken from the first window that covers it. Flip TTA
    mirrors the input with kps_left/right and the 3D with Human3.6M's joints.
    """
    out = np.zeros((len(x2d), sampler.steps, hypotheses, model.cfg.joints, 3), np.float32)
    tta = FlipLayout(tuple(kps_left), tuple(kps_right), tuple(H36M_JOINTS_LEFT), tuple(H36M_JOINTS_RIGHT)) \
        if flip else None
    for g, _, hyps in sample_windows(model, sampler, [x2d], hypotheses, batch, tta, seed, device, progress=False):
        hyps[..., ROOT, :] = 0
        hyps = hyps.permute(0, 3, 1, 2, 4, 5).cpu().numpy()           # (n, F, K, H, J, 3)
        for frames, new, window in zip(g.windows, g.new, hyps):        # window by window: no copy of the group
            out[frames[new]] = window[new]
        del hyps, window                                               # freed before the next group is sampled
    return out


def aggregate_without_ground_truth(hypotheses: np.ndarray, target_2d: np.ndarray, cam: np.ndarray,
                                   confidence: np.ndarray | None = None, chunk: int = 1024):
    """JPMA where neither the root trajectory nor the 3D pose is known.

    hypotheses (N, K, H, J, 3) root-relative metres; target_2d (N, J, 2) normalised, in the
    3D output's joint layout; cam (9,) normalised intrinsics; confidence (N, J) optional
    weights of the trajectory fit. The trajectory (N, 1, 3) is fitted once, to the mean of the
    last iteration's hypotheses, and used for every iteration. Returns (J-Agg poses
    (N, K, J, 3), trajectory (N, 1, 3)).
    """
    cam_t = torch.from_numpy(np.asarray(cam, dtype=np.float32))
    poses = np.empty(hypotheses.shape[:2] + hypotheses.shape[3:], np.float32)
    traj = np.empty((len(hypotheses), 1, 3), np.float32)
    for start in range(0, len(hypotheses), chunk):                     # bounded memory on long videos
        part = slice(start, start + chunk)                             # (the fit is per frame)
        traj[part] = estimate_root_trajectory(hypotheses[part, -1].mean(axis=1), target_2d[part], cam,
                                              None if confidence is None else confidence[part])
        hyps = torch.from_numpy(hypotheses[part]).permute(1, 2, 0, 3, 4)[None]       # (1, K, H, n, J, 3)
        x2d = torch.from_numpy(np.asarray(target_2d[part], dtype=np.float32))[None]  # (1, n, J, 2)
        chosen, _ = agg.j_agg(hyps, x2d, torch.from_numpy(traj[part])[None], cam_t)  # (1, K, n, J, 3)
        poses[part] = chosen[0].permute(1, 0, 2, 3).numpy()
    return poses, traj


def lift_keypoints(model, sampler: DDIMSampler, keypoints: Keypoints2D, size: tuple[int, int], layout: str,
                   hypotheses: int, focal: float | None = None, flip: bool = True, batch: int = 4,
                   seed: int = 0, device="cpu") -> WildResult:
    """The whole pipeline for one person's COCO-17 keypoints in an image of size (w, h)."""
    w, h = size
    pixels = keypoints.keypoints                                       # (N, 17, 2) COCO pixels
    x2d = normalize_screen_coordinates(keypoints_for_model(pixels, layout), w, h)
    target_px, target_conf = coco_to_h36m(pixels, keypoints.confidence)
    target = normalize_screen_coordinates(target_px, w, h)             # (N, 17, 2) Human3.6M layout
    cam = default_intrinsics(w, h, focal)
    hyps = sample_clip(model, sampler, x2d, hypotheses, *INPUT_SYMMETRY[layout], flip=flip, batch=batch,
                       seed=seed, device=device)
    poses, traj = aggregate_without_ground_truth(hyps, target, cam, target_conf)
    return WildResult(hypotheses=hyps, j_agg=poses[:, -1], p_agg=hyps[:, -1].mean(axis=1),
                      trajectory=traj[:, 0], keypoints_2d=pixels, confidence=keypoints.confidence,
                      frame_ids=keypoints.frame_ids, intrinsics=cam, image_size=(w, h), input_layout=layout)


def render_result(result: WildResult, out_path, video=None, fps: float = 25, size: float = 5.0,
                  limit: int | None = None, downsample: int = 1, azim: float = -70.0) -> Path:
    """Animation of the 2D input (over the video when given, from the first frame with
    keypoints on) and the J-Agg pose over the last iteration's hypotheses; MP4 when ffmpeg is
    present, else GIF."""
    from itertools import islice

    from ..coco import coco_skeleton
    from ..render import read_video_frames, render_animation
    from ..skeleton import h36m_skeleton_17

    if video is not None and shutil.which("ffmpeg") is None:
        raise ValueError(f"drawing on the video {video} needs ffmpeg; install it, or render without --video "
                         "(giving --width and --height)")
    background = None if video is None else islice(read_video_frames(video), int(result.frame_ids[0]), None)
    return render_animation(out_path, result.keypoints_2d, {"J-Agg": result.j_agg}, h36m_skeleton_17(),
                            fps=fps, size=size, hypotheses=result.hypotheses[:, -1], background=background,
                            resolution=result.image_size, limit=limit, downsample=downsample, azim=azim,
                            skeleton_2d=coco_skeleton())
