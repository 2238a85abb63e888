"""How well a model lifts real people, measured without 3D ground truth on a real video and with
it on a real motion-capture test sequence.

    python -m benchmarks.real_clip --checkpoint checkpoint/demo/best_epoch.bin --video clip.mp4 \
        [--ts5 /path/to/mpi_inf_3dhp_test_set/TS5/annot_data.mat] [--cache clip_mediapipe.npz] [--no-virtual-camera]

Real video (no 3D truth): MediaPipe Pose (model_complexity=1) gives 33 landmarks per frame; the
COCO-17 ones are lifted by the model (common.in_the_wild.lifting.lift_keypoints, default camera, through the
virtual camera of the training focal as the command line does unless --no-virtual-camera)
and the poses of every lifting mode (J-Agg, P-Agg, T-Agg) are scored by what a real body must satisfy:
  bone CV    coefficient of variation of each Human3.6M bone's length over the frames, mean
             over the 16 bones, % (a rigid skeleton has 0);
  reproj px  mean distance, in pixels, between the pose (with its fitted root) projected
             through the camera and the 2D it was lifted from (mapped to Human3.6M joints);
  accel mm   jitter: mean norm of the root-relative 3D acceleration, mm per frame^2.
MediaPipe's own world landmarks (metric, hip-centred, mapped to the same joints) get the same
bone and jitter numbers, and a reprojection error after the same root fit: a reference for
consistency, not for accuracy (they are a model's output, not ground truth). The lift is timed
five times with T-Agg and five times without (alternated; the medians are printed).

Real motion capture (--ts5, MPI-INF-3DHP's outdoor test sequence TS5, 1920x1080, annotated 2D
and true 3D): its 2D, mapped to Human3.6M joints, is lifted with the camera guessed as in the
wild, and every lifting mode's MPJPE / P-MPJPE against the true 3D are printed on the valid
frames, with its Accel (the acceleration error against the true 3D, mm/frame^2, over the whole
sequence), bone CV and jitter, next to the best constant pose (the mean true pose,
Procrustes-aligned per frame). The two skeletons differ
slightly (3DHP's hips and head sit elsewhere), which adds a floor shared by every model.

Real motion held out of training (--motion DATA_DIR [--motion-set demo]: the real clips a set
written by prepare_motion.py keeps in its test subjects S9 and S11, action group "Mocap"): their
detector-like 2D through the 4 Human3.6M cameras is lifted as in evaluation (the true camera),
and every lifting mode's MPJPE / P-MPJPE, Accel (over each whole sequence, window boundaries
included) and bone CV (last iteration, every frame of every view once) are printed beside the
best constant pose's P-MPJPE (the mean true pose of those frames).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from common.geometry.camera import normalize_screen_coordinates, project_to_2d, image_coordinates
from common.model.checkpoint import load_denoiser
from common.geometry.coco import coco_to_h36m, input_layout
from common.model.diffusion import DDIMSampler, Diffusion
from common.in_the_wild import lifting
from common.in_the_wild.inputs import input_layout_of
from common.in_the_wild.keypoints import Keypoints2D
from common.in_the_wild.root_depth import (default_intrinsics, estimate_root_trajectory, to_virtual_camera,
                                           training_focal)
from common.inference import aggregation as agg
from common.inference.aggregation import lifting_modes
from common.inference.core import InferenceCore
from common.evaluation.metrics import bone_moments, bone_variation, mpjpe, p_mpjpe, window_motion_errors

# BlazePose landmark of each COCO-17 keypoint.
BLAZEPOSE_TO_COCO = [0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28]
# MPI-INF-3DHP joint of each Human3.6M-17 joint (pelvis, hips, knees, ankles, spine, thorax = neck,
# neck_nose = head, head = head_top, shoulders, elbows, wrists).
MPI_TO_H36M = [14, 8, 9, 10, 11, 12, 13, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4]


# ---------------------------------------------------------------------------- 2D from the video
def mediapipe_keypoints(video, cache=None):
    """Per frame of the video: COCO-17 pixels (N, 17, 2), visibility (N, 17), MediaPipe world
    landmarks mapped to COCO-17 (N, 17, 3) metres (x right, y down, z away from the camera),
    NaN where no pose was found; and the image size. Cached in an .npz when asked."""
    if cache is not None and Path(cache).is_file():
        z = np.load(cache)
        return z["pixels"], z["visibility"], z["world"], tuple(int(v) for v in z["size"])
    import av
    import mediapipe as mp

    pixels, visibility, world = [], [], []
    with av.open(str(video)) as container, mp.solutions.pose.Pose(model_complexity=1) as pose:
        for frame in container.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            h, w = rgb.shape[:2]
            found = pose.process(rgb)
            if found.pose_landmarks is None:
                pixels.append(np.full((17, 2), np.nan)), visibility.append(np.zeros(17))
                world.append(np.full((17, 3), np.nan))
                continue
            lm = [found.pose_landmarks.landmark[i] for i in BLAZEPOSE_TO_COCO]
            wl = [found.pose_world_landmarks.landmark[i] for i in BLAZEPOSE_TO_COCO]
            pixels.append([(p.x * w, p.y * h) for p in lm])
            visibility.append([p.visibility for p in lm])
            world.append([(p.x, p.y, p.z) for p in wl])
    out = (np.asarray(pixels, np.float32), np.asarray(visibility, np.float32), np.asarray(world, np.float32), (w, h))
    if cache is not None:
        np.savez(cache, pixels=out[0], visibility=out[1], world=out[2], size=np.asarray(out[3]))
    return out


def longest_run(found: np.ndarray) -> slice:
    """The longest run of consecutive True frames."""
    best, start = (0, 0), None
    for i, f in enumerate(np.append(found, False)):
        if f and start is None:
            start = i
        elif not f and start is not None:
            best = max(best, (i - start, start))
            start = None
    return slice(best[1], best[1] + best[0])


# ---------------------------------------------------------------------------- metrics
def bone_cv(poses: np.ndarray) -> float:
    """Mean over the Human3.6M-17 bones of std / mean of the bone length over frames, % (the
    reports' metrics.bone_variation of one sequence's poses (N, 17, 3))."""
    clip = torch.from_numpy(np.asarray(poses, np.float64))[None, None]            # (1, 1, N, 17, 3)
    moments = bone_moments(clip, torch.ones(1, len(poses), dtype=torch.float64))
    return float(100 * bone_variation(moments.numpy())[0])


def acceleration_mm(poses: np.ndarray) -> float:
    """Mean norm of the second difference of root-relative poses, mm / frame^2."""
    rel = poses - poses[:, :1]
    return float(1000 * np.linalg.norm(rel[2:] - 2 * rel[1:-1] + rel[:-2], axis=-1).mean())


def accel_error_mm(poses: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Accel of one whole sequence (the reports' metrics.window_motion_errors, the sequence as one
    window): root-relative poses (N, J, 3) against truth, mm / frame^2, a difference counting where
    its three frames are valid."""
    rel = lambda p: torch.from_numpy(np.asarray(p - p[:, :1], np.float64))   # noqa: E731
    weights = torch.ones(1, len(poses), dtype=torch.float64) if valid is None else \
        torch.from_numpy(np.asarray(valid, np.float64))[None]
    return float(1000 * window_motion_errors(rel(poses)[None, None], rel(truth)[None], weights, 2))


def reprojection_px(poses: np.ndarray, traj: np.ndarray, target_px: np.ndarray, cam: np.ndarray, size) -> float:
    """Mean pixel distance between (poses + traj) projected with cam and target_px (N, J, 2)."""
    w, h = size
    uv = project_to_2d(torch.from_numpy((poses + traj).astype(np.float32)), torch.from_numpy(cam.astype(np.float32)))
    return float(np.linalg.norm(image_coordinates(uv.numpy(), w, h) - target_px, axis=-1).mean())


def sampler_for(steps: int) -> DDIMSampler:
    return DDIMSampler(Diffusion(), steps)


# ---------------------------------------------------------------------------- the two benchmarks
def real_video(model, layout, video, cache, hypotheses, steps, focal=None, virtual_focal=None) -> dict:
    pixels, visibility, world, size = mediapipe_keypoints(video, cache)
    total = len(pixels)
    run = longest_run(np.isfinite(pixels).all(axis=(1, 2)))
    pixels, visibility, world = pixels[run], visibility[run], world[run]
    kp = Keypoints2D(keypoints=pixels, confidence=visibility, frame_ids=np.arange(run.start, run.stop),
                     res_w=size[0], res_h=size[1])
    core = InferenceCore.of_sampler(model, sampler_for(steps), layout=input_layout(layout), hypotheses=hypotheses,
                                    group=8, seed=0)
    options = lifting.LiftOptions(focal=focal, virtual_focal=virtual_focal)
    lift_time = {}
    for with_t_agg in (True, False) * 5:                        # alternated; the lift with and without T-Agg
        start = time.perf_counter()
        if with_t_agg:
            result = lifting.lift_keypoints(core, kp, size, options)
        else:
            t_agg = agg.MODES.pop("T-Agg")
            try:
                lifting.lift_keypoints(core, kp, size, options)
            finally:
                agg.MODES["T-Agg"] = t_agg
        lift_time.setdefault(with_t_agg, []).append(time.perf_counter() - start)
    target_px = coco_to_h36m(pixels)
    ours = {mode: {"bone CV %": bone_cv(result.poses[mode]), "accel mm/f^2": acceleration_mm(result.poses[mode]),
                   "reproj px": reprojection_px(result.poses[mode], result.trajectory[:, None], target_px,
                                                result.intrinsics, size)}
            for mode in result.poses}
    ours["J-Agg"]["root depth m"] = f"{result.trajectory[:, 2].min():.2f}-{result.trajectory[:, 2].max():.2f}"
    mp_3d = coco_to_h36m(world)
    mp_3d = mp_3d - mp_3d[:, :1]
    cam = default_intrinsics(*size, focal)
    traj = estimate_root_trajectory(mp_3d, normalize_screen_coordinates(target_px, *size), cam)
    reference = {"bone CV %": bone_cv(mp_3d), "accel mm/f^2": acceleration_mm(mp_3d),
                 "reproj px": reprojection_px(mp_3d, traj, target_px, cam, size),
                 "root depth m": f"{traj[:, 0, 2].min():.2f}-{traj[:, 0, 2].max():.2f}"}
    agreement = float(1000 * p_mpjpe(torch.from_numpy(result.j_agg), torch.from_numpy(mp_3d)))
    return {"frames": f"{run.start}-{run.stop - 1} of {total}", "size": size, "ours": ours,
            "mediapipe": reference, "P-MPJPE ours vs MediaPipe mm": agreement,
            "lift s": {"with T-Agg": float(np.median(lift_time[True])), "without": float(np.median(lift_time[False]))}}


def ts5(model, layout, path, hypotheses, steps, focal=None, virtual_focal=None) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        pose_3d = np.asarray(f["annot3"])[:, 0] / 1000                # (N, 17, 3) metres, camera space
        pose_2d = np.asarray(f["annot2"])[:, 0]                       # (N, 17, 2) pixels
        valid = np.asarray(f["valid_frame"]).reshape(-1) > 0
    if layout != "h36m":
        raise ValueError("the TS5 benchmark feeds Human3.6M-layout 2D (MPI-INF-3DHP has no face points): "
                         "give a model trained on Human3.6M-layout 2D")
    w, h = 1920, 1080
    gt = pose_3d[:, MPI_TO_H36M]
    gt = gt - gt[:, :1]
    px = pose_2d[:, MPI_TO_H36M].astype(np.float32)
    x2d = normalize_screen_coordinates(px, w, h)
    cam = default_intrinsics(w, h, focal)
    if virtual_focal is not None:
        x2d, cam = to_virtual_camera(x2d, cam, virtual_focal)
    core = InferenceCore.of_sampler(model, sampler_for(steps), hypotheses=hypotheses, group=8, seed=0)
    hyps = core.sample_clip(x2d)
    poses, traj = lifting.aggregate_without_ground_truth(hyps, x2d, cam)
    truth = torch.from_numpy(gt[valid].astype(np.float32))
    constant = torch.from_numpy(gt[valid].mean(axis=0, keepdims=True).astype(np.float32)).expand(truth.shape)
    out = {"frames (valid)": int(valid.sum()), "constant pose P-MPJPE mm": float(1000 * p_mpjpe(constant, truth)),
           "true bone CV %": bone_cv(gt[valid]), "true accel mm/f^2": acceleration_mm(gt),
           "root depth m (true)": f"{traj[valid, 0, 2].mean():.2f} ({pose_3d[valid, 14, 2].mean():.2f})"}
    for mode, p in poses.items():
        pred = torch.from_numpy(p[valid, -1])
        out[mode] = {"MPJPE mm": float(1000 * mpjpe(pred, truth)), "P-MPJPE mm": float(1000 * p_mpjpe(pred, truth)),
                     "Accel mm/f^2": accel_error_mm(p[:, -1], gt, valid), "bone CV %": bone_cv(p[valid, -1]),
                     "accel mm/f^2": acceleration_mm(p[:, -1])}
    return out


def real_motion(model, data_dir, name, hypotheses, steps) -> dict:
    from common.datasets.h36m import H36MDataset
    from common.evaluation.evaluate import EvalSettings, evaluate_sequences

    dataset = H36MDataset(data_dir, "det", name)
    seqs = dataset.sequences(["S9", "S11"], actions=["Mocap"])
    core = InferenceCore.of_sampler(model, sampler_for(steps), layout=dataset.layout, hypotheses=hypotheses,
                                    group=8, seed=0)
    results = evaluate_sequences(core, seqs, EvalSettings(exact_frames=True, keep={"poses"}, progress=False))
    truth = torch.from_numpy(np.concatenate([s.pose_3d - s.pose_3d[:, :1] for s in seqs]).astype(np.float32))
    out = {"clips": len({s.action.split(" ")[1] for s in seqs}), "frames x views": len(truth)}
    for mode in lifting_modes():
        pred = torch.from_numpy(np.concatenate([r.poses[mode][-1] for r in results]))
        out[mode] = {"MPJPE mm": float(1000 * mpjpe(pred, truth)), "P-MPJPE mm": float(1000 * p_mpjpe(pred, truth)),
                     "Accel mm/f^2": float(np.mean([accel_error_mm(r.poses[mode][-1], s.pose_3d)
                                                    for r, s in zip(results, seqs)])),
                     "bone CV %": float(np.mean([bone_cv(r.poses[mode][-1]) for r in results]))}
    constant = truth.mean(dim=0, keepdim=True).expand(truth.shape)
    out["constant pose P-MPJPE mm"] = float(1000 * p_mpjpe(constant, truth))
    return out


def line(numbers: dict) -> str:
    return "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in numbers.items())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a model of ours (or the authors', with --input-layout)")
    p.add_argument("--input-layout", choices=("auto", "coco", "h36m"), default="auto")
    p.add_argument("--video", default=None, help="a real video with one person")
    p.add_argument("--cache", default=None, help=".npz where MediaPipe's output for the video is kept")
    p.add_argument("--ts5", default=None, help="MPI-INF-3DHP's TS5/annot_data.mat")
    p.add_argument("--motion", default=None, metavar="DATA_DIR",
                   help="the folder of a set written by prepare_motion.py (or the demo): its held-out real clips")
    p.add_argument("--motion-set", default="demo", help="that set's name (default demo)")
    p.add_argument("--focal", type=float, default=None, help="focal length, pixels; None: the in-the-wild default")
    p.add_argument("--no-virtual-camera", action="store_true",
                   help="lift the 2D as it is, not as the training cameras would see it (root_depth.to_virtual_camera, "
                        "the default of main_in_the_wild.py and d3dp.Lifter)")
    p.add_argument("-H", "--hypotheses", type=int, default=5)
    p.add_argument("-K", "--steps", type=int, default=5)
    args = p.parse_args(argv)
    model, ckpt = load_denoiser(args.checkpoint)
    model.eval()
    layout, _ = input_layout_of(ckpt, args.input_layout)
    print(f"{args.checkpoint}: {layout} input, F={model.cfg.frames} C={model.cfg.channels} D={model.cfg.depth}, "
          f"H={args.hypotheses} K={args.steps}{'' if args.no_virtual_camera else ', virtual camera'}")
    virtual = None if args.no_virtual_camera else training_focal(ckpt)
    with torch.no_grad():
        if args.video:
            r = real_video(model, layout, args.video, args.cache, args.hypotheses, args.steps, args.focal,
                           virtual)
            print(f"real video {Path(args.video).name} ({r['size'][0]}x{r['size'][1]}), frames {r['frames']}:")
            for who, numbers in [*r["ours"].items(), ("MediaPipe", r["mediapipe"])]:
                print(f"  {who:10s} {line(numbers)}")
            print(f"  lifting time, s (median of 5): {line(r['lift s'])}")
            print(f"  P-MPJPE ours vs MediaPipe world landmarks: {r['P-MPJPE ours vs MediaPipe mm']:.1f} mm")
        if args.ts5:
            r = ts5(model, layout, args.ts5, args.hypotheses, args.steps, args.focal, virtual)
            print("MPI-INF-3DHP TS5 (real 3D): " + line({k: v for k, v in r.items() if not isinstance(v, dict)}))
            for mode in lifting_modes():
                print(f"  {mode:10s} {line(r[mode])}")
        if args.motion:
            r = real_motion(model, args.motion, args.motion_set, args.hypotheses, args.steps)
            print("held-out real motion: " + line({k: v for k, v in r.items() if not isinstance(v, dict)}))
            for mode in lifting_modes():
                print(f"  {mode:10s} {line(r[mode])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
