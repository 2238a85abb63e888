"""Motion files -> a training set in the Human3.6M file format (data/README.md), so that
main.py trains and evaluates on real motion like on Human3.6M:

  data_3d_<name>.npz       positions_3d {subject: {action: (N, 32, 3) world metres}}
  data_2d_<name>_gt.npz    exact projections through the subject's 4 Human3.6M cameras
  data_2d_<name>_det.npz   the same with the synthetic set's detector-like noise

Each file becomes one action ("Mocap <file name>", "Mocap <file name> 2", ... when a long
motion is cut into pieces of at most max_seconds, each re-centred under the cameras) of one
subject: the training files are dealt in turn to the training subjects S1 S5 S6 S7 S8, the
held-out ones to the test subjects S9 S11, so that main.py's default -str / -ste train on the
first and report on the second. With `merge`, the subjects and actions of an existing set in
the same folder (e.g. the synthetic one) are written into the new files too, so one -d trains
on both. Existing files are never replaced.
"""
from __future__ import annotations

import fnmatch
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...geometry.skeleton import h36m_metadata
from ...storage.files import atomic_files
from ...storage.safe_pickle import item, load_npz
from ..base import DatasetError
from ..h36m import h36m_cameras
from ..synthetic.files import METADATA, save_npz, detections, project_to_pixels, synthetic_paths
from .motion import Motion, MotionError, normalized
from .positions import read_positions

DEMO_CLIPS = Path(__file__).resolve().parents[3] / "motion" / "deepmimic"     # in a clone of the repository
# The demo's real motion: whole clips held out to report on, and the two long stealthy walks left
# out (132 s of one gait, which would double the demo's training time).
DEMO_HELD_OUT = ("jog", "kick", "dance_b", "long_walk3", "zombie_walk")
DEMO_LEFT_OUT = ("stealthy_walk0", "stealthy_walk1")
TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
ACTION_GROUP = "Mocap"
MAX_SECONDS = 10.0


@dataclass
class Take:
    """One piece of motion placed in the set: its subject, action name and joints (N, 17, 3)."""

    subject: str
    action: str
    joints: np.ndarray
    source: str


def pieces(motion: Motion, max_seconds: float = MAX_SECONDS) -> list[np.ndarray]:
    """A normalised motion cut into pieces of at most max_seconds (the last piece at least half
    as long: shorter ends join the piece before), each moved so its mean pelvis is above the origin."""
    size = max(2, int(round(max_seconds * motion.fps)))
    n = len(motion.joints)
    starts = list(range(0, n, size))
    if len(starts) > 1 and n - starts[-1] < size // 2:
        starts.pop()
    out = []
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else n
        piece = motion.joints[start:stop].copy()
        piece[..., :2] -= piece[:, 0, :2].mean(axis=0)
        out.append(piece)
    return out


def deal(motions: list[Motion], held_out: list[str], max_seconds: float = MAX_SECONDS) -> list[Take]:
    """Place motions into subjects: held_out are file-name patterns (fnmatch, e.g. '*jog*') of
    the motions kept out of training (test subjects); the others train."""
    takes, counts = [], {"train": 0, "test": 0}
    names = set()
    for m in motions:
        test = any(fnmatch.fnmatch(Path(m.source).name, p) or fnmatch.fnmatch(m.name, p) for p in held_out)
        subjects = TEST_SUBJECTS if test else TRAIN_SUBJECTS
        subject = subjects[counts["test" if test else "train"] % len(subjects)]
        counts["test" if test else "train"] += 1
        base = f"{ACTION_GROUP} {m.name}"
        if (subject, base) in names:
            raise MotionError(f"{m.source}: a second motion named {m.name!r}; rename one of the files")
        names.add((subject, base))
        for i, joints in enumerate(pieces(normalized(m), max_seconds)):
            takes.append(Take(subject, base if i == 0 else f"{base} {i + 1}", joints, m.source))
    unmatched = [p for p in held_out if not any(fnmatch.fnmatch(Path(m.source).name, p) or fnmatch.fnmatch(m.name, p)
                                                for m in motions)]
    if unmatched:
        raise MotionError(f"--held-out {','.join(unmatched)} matches no motion file; the files are "
                          f"{', '.join(sorted(Path(m.source).name for m in motions))}")
    return takes


def to_32_joints(joints_17: np.ndarray) -> np.ndarray:
    """(N, 17, 3) -> (N, 32, 3) in Human3.6M's 32-joint file layout: the 17 joints at their
    places, each of the 15 joints the loader drops at its nearest kept ancestor."""
    meta = h36m_metadata()
    kept = meta["reduction_to_17"]["kept_joints"]
    parents = meta["skeleton_32"]["parents"]
    out = np.zeros((len(joints_17), 32, 3), np.float32)
    out[:, kept] = joints_17
    for j in range(32):
        if j not in kept:
            a = parents[j]
            while a not in kept:
                a = parents[a]
            out[:, j] = out[:, a]
    return out


def _existing_set(folder: Path, name: str) -> tuple[dict, dict, dict]:
    """The positions_3d and the gt / det positions_2d of an existing set in the folder."""
    paths = synthetic_paths(folder, name)
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise DatasetError(f"--merge {name}: {', '.join(missing)} not found in {folder}; write that set first "
                           f"(e.g. python main.py --demo writes the synthetic one)")
    return tuple(item(load_npz(paths[k])["positions_3d" if k == "3d" else "positions_2d"]) for k in ("3d", "gt", "det"))


def write_motion_set(takes: list[Take], out_dir, name: str, seed: int = 0, merge: str | None = None) -> dict[str, Path]:
    """Write the set's three files (all or none; existing files are refused); returns their paths."""
    out_dir = Path(out_dir)
    paths = synthetic_paths(out_dir, name)
    there = [p.name for p in paths.values() if p.exists()]
    if there:
        raise DatasetError(f"{', '.join(there)} already in {out_dir}: choose another --name or move them away "
                           f"(nothing was written)")
    positions_3d, gt, det = _existing_set(out_dir, merge) if merge else ({}, {}, {})
    rng = np.random.default_rng(seed)
    for take in takes:
        for d in (positions_3d, gt, det):
            d.setdefault(take.subject, {})
        if take.action in positions_3d[take.subject]:
            raise DatasetError(f"{take.source}: action {take.subject}/{take.action} is already in --merge {merge}")
        cameras = h36m_cameras(take.subject)
        world = take.joints.astype(np.float32)
        pixels = [project_to_pixels(world, cam) for cam in cameras]
        positions_3d[take.subject][take.action] = to_32_joints(world)
        gt[take.subject][take.action] = pixels
        det[take.subject][take.action] = [detections(px, cam, rng) for px, cam in zip(pixels, cameras)]
    with atomic_files([paths["3d"], paths["gt"], paths["det"]]) as (p3d, pgt, pdet):
        save_npz(p3d, positions_3d=positions_3d)
        save_npz(pgt, positions_2d=gt, metadata=METADATA)
        save_npz(pdet, positions_2d=det, metadata=METADATA)
    return paths


def ensure_demo_set(data_dir, name: str, merge: str, log=print) -> bool:
    """Write the demo's set (the synthetic set `merge` plus the repository's real clips) unless it
    is there; False when this is no clone of the repository (no clips): the demo then trains on
    the synthetic set alone."""
    if not DEMO_CLIPS.is_dir():
        log(f"note: no real motion clips at {DEMO_CLIPS} (not a clone of the repository): the demo trains on "
            f"synthetic motion alone")
        return False
    paths = synthetic_paths(data_dir, name)
    files = sorted(p for p in DEMO_CLIPS.glob("*.npz") if p.stem not in DEMO_LEFT_OUT)
    stamp_path = Path(data_dir) / f"data_{name}_motion.json"
    merged_stamp = Path(data_dir) / f"data_{merge}_options.json"
    stamp = json.dumps({"merge": merge, "merged": merged_stamp.read_text() if merged_stamp.exists() else None,
                        "clips": [f"{f.name}:{zlib.crc32(f.read_bytes()):08x}" for f in files],
                        "held_out": list(DEMO_HELD_OUT)})
    if stamp_path.exists() and stamp_path.read_text() == stamp and all(p.exists() for p in paths.values()):
        return True
    there = [p for p in paths.values() if p.exists()]
    if there and not stamp_path.exists():
        raise DatasetError(f"{there[0]} is not the demo's own set (no {stamp_path.name} beside it): move it away")
    for p in there:                                  # the demo's own files, from other clips or another synthetic set
        p.unlink()
    takes = deal([read_positions(f) for f in files], [f"{c}.npz" for c in DEMO_HELD_OUT])
    write_motion_set(takes, data_dir, name, merge=merge)
    stamp_path.write_text(stamp)
    return True
