"""--save-predictions FILE.npz: every evaluated sequence's per-frame poses in plain arrays.

For each sequence, keys '<subject>/<action>/<camera>/<name>' (e.g. 'S9/Walking 1/0/j_agg'):
  j_agg, p_agg    (N, J, 3) float32 mm, root-relative, camera space: the last iteration's
                  J-Agg and P-Agg poses (and so on: one entry per aggregation mode that needs
                  no ground truth, named by common.inference.aggregation.mode_key)
  uncertainty     (N, J) float32 mm: the radius around the J-Agg joint that holds the true
                  joint with probability `coverage` (raw hypothesis spread when uncalibrated)
  ground_truth    (N, J, 3) float32 mm, root-relative
  frames          (N,) int64: frame numbers in the source sequence (after --downsample)
  valid           (N,) bool: frames that count in the scores (MPI-INF-3DHP; else all True)
and once: 'sequences' (S,) the key prefixes, 'coverage' (), 'calibrated' () bool.
Every frame appears once; a frame in the overlap of the end-aligned last window comes from
the window that covered it first, as --exact-frames counts it. No object arrays: the file
reads with np.load(path, allow_pickle=False).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..inference.aggregation import LIFTING_MODES, mode_key
from ..storage.files import atomic_files
from ..uncertainty.factors import radius

ENTRIES = (*map(mode_key, LIFTING_MODES), "uncertainty", "ground_truth", "frames", "valid")


def sequence_key(seq) -> str:
    return f"{seq.subject}/{seq.action}/{seq.camera}"


def prediction_arrays(results, calibration, coverage: float, frame_step: int = 1) -> dict[str, np.ndarray]:
    """The arrays of the file, from evaluation results that kept per-frame poses
    (EvalSettings keep "frame_poses")."""
    out, keys = {}, []
    for r in results:
        rec, seq = r.frames, r.sequence
        if rec is None or rec.poses is None:
            raise ValueError("the evaluation kept no per-frame poses (EvalSettings keep \"frame_poses\")")
        if not rec.seen.all():
            raise ValueError(f"{seq.name}: {int((~rec.seen).sum())} frames were not evaluated")
        key = sequence_key(seq)
        if key in keys:
            raise ValueError(f"two evaluated sequences share the key {key!r}")
        keys.append(key)
        n = seq.num_frames
        out.update({f"{key}/{mode_key(m)}": 1000 * rec.poses[m] for m in LIFTING_MODES})
        out.update({f"{key}/uncertainty": 1000 * radius(rec.spread, calibration, coverage),
                    f"{key}/ground_truth": (1000 * np.asarray(seq.pose_3d, np.float32)),
                    f"{key}/frames": np.arange(n, dtype=np.int64) * int(frame_step),
                    f"{key}/valid": (np.ones(n, bool) if seq.valid is None else np.asarray(seq.valid, bool))})
    out = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in out.items()}
    out.update(sequences=np.array(keys, dtype=np.str_), coverage=np.float64(coverage),
               calibrated=np.bool_(calibration is not None))
    return out


def check_path(path) -> Path:
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"--save-predictions {path}: give a file name ending in .npz")
    return path


def save_predictions(path, results, calibration, coverage: float, frame_step: int = 1) -> Path:
    """Write prediction_arrays to path (.npz, written whole to a temporary name first:
    common.storage.files.atomic_files)."""
    path = check_path(path)
    arrays = prediction_arrays(results, calibration, coverage, frame_step)
    with atomic_files([path]) as (tmp,):
        np.savez(tmp, **arrays)
    return path


def load_predictions(path) -> dict[str, dict[str, np.ndarray]]:
    """{'<subject>/<action>/<camera>': {entry: array}} from a --save-predictions file."""
    with np.load(path, allow_pickle=False) as d:
        return {key: {name: d[f"{key}/{name}"] for name in ENTRIES} for key in d["sequences"].tolist()}
