"""Per-frame uncertainty records of an evaluation (FrameRecords: each frame's spread, error and
poses) and which frames a calibration uses (docs/method.md, 'How sure is each joint'): the
calibration split (every other recording fits the factors, the rest is held out), the frames a
stored calibration was fitted on, recognised by content, and fitting the factors from results."""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from ..inference import aggregation as agg
from ..model.device import to_host
from .factors import Calibration, fit_calibration, last_iteration


# ---------------------------------------------------------------------------- per-frame records

@dataclass
class FrameRecords:
    """Per frame of one sequence (each frame once, from the first window covering it, as
    --exact-frames counts): spread and error (N, J) metres, and with poses the pose of every
    lifting mode (common.inference.aggregation.LIFTING_MODES: J-Agg, P-Agg, ...) (N, J, 3) metres
    root-relative, of the last sampling iteration."""

    spread: np.ndarray
    error: np.ndarray
    seen: np.ndarray                  # (N,) bool: written (every frame, once evaluation is complete)
    poses: dict | None = None         # mode -> (N, J, 3)

    @classmethod
    def empty(cls, frames: int, joints: int, poses: bool = False) -> "FrameRecords":
        z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
        return cls(z(frames, joints), np.full((frames, joints), np.nan, np.float32), np.zeros(frames, bool),
                   {m: z(frames, joints, 3) for m in agg.LIFTING_MODES} if poses else None)

    @property
    def j_agg(self) -> np.ndarray | None:
        return None if self.poses is None else self.poses["J-Agg"]

    @property
    def p_agg(self) -> np.ndarray | None:
        return None if self.poses is None else self.poses["P-Agg"]

    def arrays(self) -> list[tuple[str, np.ndarray]]:
        """Every per-frame array (frame axis 0), named, in a fixed order."""
        return [("spread", self.spread), ("error", self.error), ("seen", self.seen),
                *((f"poses/{m}", a) for m, a in (self.poses or {}).items())]

    def zeros_like(self) -> "FrameRecords":
        return FrameRecords(np.zeros_like(self.spread), np.zeros_like(self.error), np.zeros_like(self.seen),
                            None if self.poses is None else {m: np.zeros_like(a) for m, a in self.poses.items()})

    def add(self, hyps: torch.Tensor, x2d, gt, traj, cam, windows: np.ndarray, new: np.ndarray,
            parents=None) -> None:
        """Record a group: hyps (n, K, H, F, J, 3) root-relative, the J-Agg target x2d, gt
        (n, F, J, 3) or None, the group's windows and their first-cover mask new (n, F);
        parents: the output skeleton (T-Agg's bones)."""
        poses, spread = last_iteration(hyps, x2d, traj, cam, tuple(self.poses or ()), parents)
        arrays = {"spread": spread}
        if gt is not None:
            arrays["error"] = torch.linalg.vector_norm(poses["J-Agg"] - gt, dim=-1)
        if self.poses is not None:
            arrays.update({f"poses/{m}": p for m, p in poses.items()})
        arrays = to_host(arrays)                                   # one transfer
        named = dict(self.arrays())
        for i, (frames, slots) in enumerate(zip(windows, new)):
            for name, a in arrays.items():
                named[name][frames[slots]] = a[i][slots]
            self.seen[frames[slots]] = True


# ---------------------------------------------------------------------------- calibration split

def recording_of(seq) -> tuple:
    """The recording a sequence view belongs to: all cameras of one subject's action."""
    return (seq.subject, seq.action)


def calibration_split(sequences) -> tuple[list[np.ndarray], str]:
    """Which frames fit the factors: every other recording (subject, action; all its camera
    views together, sorted by name) when there are at least two, else the first half of each
    sequence's frames. Returns a (N,) bool mask per sequence and a description."""
    recordings = sorted({recording_of(s) for s in sequences})
    if len(recordings) >= 2:
        fit = set(recordings[::2])
        masks = [np.full(s.num_frames, recording_of(s) in fit) for s in sequences]
        return masks, (f"every other recording ({len(fit)} of {len(recordings)} subject/action pairs, all their "
                       f"cameras), the others held out")
    masks = [np.arange(s.num_frames) < s.num_frames // 2 for s in sequences]
    return masks, "the first half of the frames of the one recording; the second half held out"


def frame_ranges(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True in a (N,) mask as [start, stop) pairs."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def fingerprint(seq) -> str:
    """Identifies a sequence by content (its 2D input), so that the frames a calibration was
    fitted on are recognised in any later evaluation, whatever the data set is called."""
    x = np.ascontiguousarray(seq.pose_2d, dtype=np.float32)
    return f"{seq.name}:{x.shape[0]}:{zlib.crc32(x.tobytes()):08x}"


def fitted_mask(calibration: Calibration | None, seq) -> np.ndarray:
    """(N,) bool: the frames of seq the calibration was fitted on."""
    mask = np.zeros(seq.num_frames, bool)
    if calibration is None:
        return mask
    key = fingerprint(seq)
    for seq_key, start, stop in calibration.fitted_on.get("frames", []):
        if seq_key == key:
            mask[int(start):int(stop)] = True
    return mask


def fit_from_results(results, masks: list[np.ndarray], fitted_on: dict) -> Calibration:
    """Fit on the frames of masks (one per result) that are scored: written, labelled, valid."""
    err, spr, frames = [], [], []
    for r, m in zip(results, masks):
        use = m & usable_frames(r)
        err.append(r.frames.error[use])
        spr.append(r.frames.spread[use])
        frames += [[fingerprint(r.sequence), a, b] for a, b in frame_ranges(m)]
    return fit_calibration(np.concatenate(err), np.concatenate(spr), {**fitted_on, "frames": frames})


def usable_frames(result) -> np.ndarray:
    """(N,) frames that count in calibration: recorded, with ground truth, valid."""
    rec = result.frames
    ok = rec.seen & ~np.isnan(rec.error).any(axis=1)
    if result.sequence.valid is not None:
        ok &= np.asarray(result.sequence.valid, bool)
    return ok
