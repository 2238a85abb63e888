"""Human3.6M in VideoPose3D's file layout -> camera-space Sequences.

Files (see data/README.md):
  data_3d_<dataset>.npz             positions_3d {subject: {action: (N, 32, 3) world metres}}
  data_2d_<dataset>_<keypoints>.npz positions_2d {subject: {action: 4 x (N_c, 17, 2) pixels}},
                                    metadata {'layout_name', 'num_joints', 'keypoints_symmetry'}
With COCO-layout 2D ('layout_name': 'coco', e.g. `detectron_pt_coco`) the model input stays
COCO while the 3D output is Human3.6M-17, so each Sequence also carries the 2D mapped to
Human3.6M joints in extra['reproj_2d'], the target of J-Agg's reprojection.
<dataset> is 'h36m' for the real data; the synthetic set (common.datasets.synthetic) uses
its own name in the same format.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..geometry.camera import normalize_screen_coordinates, normalized_intrinsics, world_to_camera_np
from ..geometry.coco import coco_to_h36m
from .base import Dataset, DatasetError, Layout, Selection, Sequence
from ..storage.safe_pickle import UnsafePickleError, item, load_npz
from ..geometry.skeleton import Skeleton, h36m_metadata, h36m_skeleton_17, h36m_skeleton_32

NUM_CAMERAS = 4
HOW_TO_GET = ("Human3.6M files go in data/ (see data/README.md): obtain Human3.6M from its authors and "
              "convert it with VideoPose3D's prepare_data_h36m.py. `python main.py --demo` needs no data "
              "(it generates a synthetic set).")


def _error(path, problem: str) -> DatasetError:
    return DatasetError(f"{path}: {problem}\n{HOW_TO_GET}")


def deterministic_random(min_value: int, max_value: int, data: str) -> int:
    """VideoPose3D's sha256-based integer in [min_value, max_value], so subsets match theirs."""
    digest = hashlib.sha256(data.encode()).digest()
    raw_value = int.from_bytes(digest[:4], byteorder="little", signed=False)
    return int(raw_value / (2 ** 32 - 1) * (max_value - min_value)) + min_value


def h36m_cameras(subject: str) -> list[dict]:
    """The 4 cameras of one subject: orientation (4,) camera-to-world quaternion (w, x, y, z),
    translation (3,) metres, intrinsics (9,) normalised, res_w, res_h (pixels)."""
    meta = h36m_metadata()
    cameras = []
    for intr, extr in zip(meta["intrinsics"], meta["extrinsics"][subject]):
        cameras.append({
            "orientation": np.asarray(extr["orientation"], dtype=np.float32),
            "translation": np.asarray(extr["translation"], dtype=np.float32) / 1000,  # mm -> m
            "intrinsics": normalized_intrinsics(intr["center"], intr["focal_length"], intr["radial_distortion"],
                                                intr["tangential_distortion"], intr["res_w"], intr["res_h"]),
            "res_w": intr["res_w"],
            "res_h": intr["res_h"],
        })
    return cameras


def skeleton_32_to_17() -> tuple[Skeleton, list[int]]:
    """The 17-joint skeleton made from the 32-joint one as VideoPose3D does (remove the
    static joints, hang both shoulders on the thorax), and the kept joint indices."""
    skeleton = h36m_skeleton_32()
    kept = skeleton.remove_joints(h36m_metadata()["reduction_to_17"]["removed_joints"])
    skeleton.parents[11] = 8  # left shoulder -> thorax
    skeleton.parents[14] = 8  # right shoulder -> thorax
    return skeleton, kept


def _load_npz(path: Path, keys: tuple[str, ...]) -> dict:
    """The pickled dicts stored under keys in one npz file."""
    if not path.is_file():
        raise _error(path, "file not found.")
    try:
        npz = load_npz(path)
    except UnsafePickleError as e:
        raise DatasetError(str(e)) from None
    except ValueError as e:  # a truncated or foreign file
        raise _error(path, f"cannot be read as a VideoPose3D-format npz ({e}).") from e
    found = list(npz)
    loaded = {k: item(npz[k]) for k in keys if k in found}
    missing = [k for k in keys if k not in loaded]
    if missing:
        raise _error(path, f"no key {missing[0]!r} (found {found}); not a VideoPose3D-format file.")
    return loaded


class H36MDataset(Dataset):
    """Loads the 3D and 2D files of Human3.6M (or a data set in its format) once; sequences()
    turns subjects / actions into camera-space Sequences."""

    def __init__(self, data_dir, keypoints: str = "gt", dataset: str = "h36m"):
        data_dir = Path(data_dir)
        self.name = dataset
        self.path_3d = data_dir / f"data_3d_{dataset}.npz"
        self.path_2d = data_dir / f"data_2d_{dataset}_{keypoints}.npz"
        self.positions_3d = _load_npz(self.path_3d, ("positions_3d",))["positions_3d"]
        loaded = _load_npz(self.path_2d, ("positions_2d", "metadata"))
        self.positions_2d, self.metadata = loaded["positions_2d"], loaded["metadata"]
        self.keypoints_symmetry = self.metadata["keypoints_symmetry"]  # [left 2D indices, right 2D indices]
        self.kps_left, self.kps_right = (list(k) for k in self.keypoints_symmetry)
        self.layout_name = self.metadata.get("layout_name", "h36m")  # 2D joint order: 'h36m' or 'coco'
        self.skeleton = h36m_skeleton_17()
        self.joint_names = self.skeleton.names                       # the 3D output: Human3.6M-17
        self.joints_left, self.joints_right = self.skeleton.joints_left, self.skeleton.joints_right
        self._kept_joints = skeleton_32_to_17()[1]
        # left/right joints of the 3D output (Human3.6M-17) and of this file's 2D input
        self.layout = Layout(self.joints_left, self.joints_right, self.kps_left, self.kps_right, self.layout_name)

    def subjects(self) -> list[str]:
        return list(self.positions_3d)

    def train_sequences(self, selection: Selection) -> list[Sequence]:
        return self.sequences(selection.subjects_train, selection.actions, selection.subset, selection.downsample)

    def test_sequences(self, selection: Selection) -> list[Sequence]:
        return self.sequences(selection.subjects_test, selection.actions, downsample=selection.downsample)

    def actions(self, subject: str) -> list[str]:
        """Action names of a subject, in the order of the 2D file (as VideoPose3D iterates)."""
        self._check_subject(subject)
        return [a for a in self.positions_2d[subject] if a in self.positions_3d[subject]]

    def sequences(self, subjects, actions=None, subset: float = 1.0, downsample: int = 1) -> list[Sequence]:
        """One Sequence per subject, action and camera. subjects: None for all. actions: keep
        the actions whose name starts with one of these strings, as the authors' -a does
        ('Walk' keeps 'Walking', 'Walking 1' and 'WalkDog'); None keeps all. An empty
        selection is an error naming what there is. subset < 1 keeps a deterministic
        contiguous part of each sequence and downsample every k-th frame, as VideoPose3D."""
        subjects = self.subjects() if subjects is None else list(subjects)
        if not subjects:
            raise DatasetError(f"no subject selected; {self.path_3d.name} has {', '.join(self.subjects())}")
        if downsample < 1:
            raise ValueError(f"--downsample {downsample}: give a positive frame stride")

        def wanted(action):
            return actions is None or any(action.startswith(a) for a in actions)

        out = []
        for subject in (self.subjects() if subjects is None else subjects):
            self._check_subject(subject)
            missing = [a for a in self.positions_3d[subject] if wanted(a) and a not in self.positions_2d[subject]]
            if missing:
                raise _error(self.path_2d, f"action {subject}/{missing[0]} is in {self.path_3d.name} "
                                           f"but missing here.")
            cameras = h36m_cameras(subject)
            for action in filter(wanted, self.actions(subject)):
                world = self._world_17(subject, action)  # (N, 17, 3) metres
                views = self._views_2d(subject, action, len(world))  # 4 x (N, 17, 2) pixels
                keep = _frame_selection(len(world), subset, downsample)
                for index, (camera, pixels) in enumerate(zip(cameras, views)):
                    pos = world_to_camera_np(world, camera["orientation"], camera["translation"])
                    traj = pos[:, :1]  # (N, 1, 3) root position, camera space, metres
                    pose_2d = normalize_screen_coordinates(pixels, camera["res_w"], camera["res_h"])
                    pose_2d = np.ascontiguousarray(pose_2d[keep], dtype=np.float32)
                    extra = {"reproj_2d": coco_to_h36m(pose_2d)} if self.layout_name == "coco" else {}
                    out.append(Sequence(subject, action, index,
                                        pose_2d=pose_2d,
                                        pose_3d=np.ascontiguousarray((pos - traj)[keep], dtype=np.float32),
                                        traj=np.ascontiguousarray(traj[keep], dtype=np.float32),
                                        cam=camera["intrinsics"],
                                        res_w=camera["res_w"], res_h=camera["res_h"], extra=extra))
        if not out:
            groups = sorted({a.split(" ")[0] for s in subjects for a in self.actions(s)})
            raise DatasetError(f"no action of {', '.join(subjects)} starts with {', '.join(actions)} (-a); "
                               f"the actions are: {', '.join(groups)}")
        return out

    def _check_subject(self, subject: str) -> None:
        if subject not in self.positions_3d:
            raise _error(self.path_3d, f"no subject {subject!r} (found {sorted(self.positions_3d)}).")
        if subject not in self.positions_2d:
            raise _error(self.path_2d, f"subject {subject!r} is in {self.path_3d.name} but missing here.")

    def _world_17(self, subject: str, action: str) -> np.ndarray:
        """Mocap of one action, checked and reduced to 17 joints: (N, 17, 3) world metres."""
        pos = np.asarray(self.positions_3d[subject][action])
        where = f"{subject}/{action}"
        if pos.ndim != 3 or pos.shape[1:] != (32, 3):
            raise _error(self.path_3d, f"{where} has shape {pos.shape}, expected (N, 32, 3).")
        bad = ~np.isfinite(pos).all(axis=(1, 2))
        if bad.any():
            raise _error(self.path_3d, f"{where}: {bad.sum()} of {len(pos)} frames contain NaN or inf.")
        return pos[:, self._kept_joints].astype(np.float32)

    def _views_2d(self, subject: str, action: str, num_frames: int) -> list[np.ndarray]:
        """2D keypoints of one action, checked and trimmed to the mocap length: 4 x (N, 17, 2) pixels."""
        where = f"{subject}/{action}"
        views = self.positions_2d[subject][action]
        if len(views) != NUM_CAMERAS:
            raise _error(self.path_2d, f"{where} has {len(views)} camera views, expected {NUM_CAMERAS}.")
        num_joints = self.metadata.get("num_joints", 17)
        out = []
        for index, view in enumerate(views):
            view = np.asarray(view)
            if view.ndim != 3 or view.shape[1:] != (num_joints, 2):
                raise _error(self.path_2d, f"{where} camera {index} has shape {view.shape}, "
                                           f"expected (N, {num_joints}, 2).")
            if len(view) < num_frames:
                raise _error(self.path_2d, f"{where} camera {index} has {len(view)} frames, fewer than "
                                           f"the {num_frames} mocap frames in {self.path_3d.name}.")
            view = view[:num_frames]
            bad = ~np.isfinite(view).all(axis=(1, 2))
            if bad.any():
                raise _error(self.path_2d, f"{where} camera {index}: {bad.sum()} of {num_frames} frames "
                                           f"contain NaN or inf keypoints.")
            out.append(view.astype(np.float32))
        return out


def _frame_selection(num_frames: int, subset: float, downsample: int) -> slice:
    """VideoPose3D's fetch: a contiguous deterministic fraction of the frames (start from a
    hash of the length) and/or every downsample-th frame."""
    if subset < 1:
        n = int(round(num_frames // downsample * subset) * downsample)
        start = deterministic_random(0, num_frames - n + 1, str(num_frames))
        return slice(start, start + n, downsample)
    return slice(None, None, downsample)
