"""Linking detections into tracks: a detector's people per frame, or a keypoint file's
detections, become one dict {frame: (score, (17, 3) keypoints)} per person (link_by_position), with
the helpers that pick and cut tracks. Pure bookkeeping on arrays: keypoints.py and people.py turn
tracks into keypoints."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def centre_and_size(kpts: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (2,) of a detection's confident keypoints and its size (the larger bounding-box side)."""
    ok = np.isfinite(kpts[:, :2]).all(axis=1) & (np.nan_to_num(kpts[:, 2]) > 0)
    xy = kpts[ok, :2] if ok.any() else np.nan_to_num(kpts[:, :2])
    return xy.mean(axis=0), max(float(np.ptp(xy, axis=0).max()), 1.0)


def link_by_position(per_frame: dict, gate: float = 1.0, max_skip: int = 10) -> list[dict]:
    """Detections {frame: [(score, (17, 3)), ...]} -> tracks [{frame: (score, (17, 3))}], in
    the order they start.

    Frame by frame, each track (seen within max_skip frames) takes the nearest detection whose
    centre lies within gate x the person's size of where the track is expected (its last
    centre moved on by its velocity over the frames since; greedy, nearest pairs first); a
    detection no track takes starts a new track."""
    tracks: list[dict] = []
    state: list[tuple] = []                           # (last frame, centre, size, velocity per frame) per track
    for frame in sorted(per_frame):
        dets = per_frame[frame]
        geometry = [centre_and_size(k) for _, k in dets]
        pairs = []
        for ti, (last, centre, size, velocity) in enumerate(state):
            if frame - last > max_skip:
                continue
            expected = centre + velocity * (frame - last)
            for di, (c, sz) in enumerate(geometry):
                dist = float(np.linalg.norm(c - expected))
                if dist <= gate * max(size, sz):
                    pairs.append((dist, ti, di))
        taken_t, taken_d = set(), set()
        for _, ti, di in sorted(pairs):
            if ti in taken_t or di in taken_d:
                continue
            taken_t.add(ti)
            taken_d.add(di)
            tracks[ti][frame] = dets[di]
            last, centre, _, velocity = state[ti]
            step = (geometry[di][0] - centre) / (frame - last)
            state[ti] = (frame, *geometry[di], 0.5 * velocity + 0.5 * step)   # smoothed over recent frames
        for di, det in enumerate(dets):
            if di not in taken_d:
                tracks.append({frame: det})
                state.append((frame, *geometry[di], np.zeros(2)))
    return tracks


def track_rank(track: dict) -> tuple:
    """Longest first, then the most confident."""
    return len(track), sum(v[0] for v in track.values())


def track_array(track: dict, frame_ids: np.ndarray, joints: int = 17) -> np.ndarray:
    """(len(frame_ids), joints, 3) float32: each frame's keypoints from track {frame: (score,
    (joints, 3))}, NaN rows for the frames the track lacks."""
    raw = np.full((len(frame_ids), joints, 3), np.nan, dtype=np.float32)
    for row, frame in enumerate(np.asarray(frame_ids).tolist()):
        if frame in track:
            raw[row] = track[frame][1]
    return raw


def longest_segment(best: dict, max_gap: int, path: Path, warnings: list, strict: bool = True) -> dict:
    """Split the detected frames where frame numbers jump by more than max_gap; keep the
    segment with the most detections, refusing when it holds less than half of them (strict:
    a file's frame numbers; a video's frames are numbered by decoding, so never refused)."""
    frames = np.array(sorted(best))
    cuts = np.flatnonzero(np.diff(frames) > max_gap) + 1
    if not len(cuts):
        return best
    segments = np.split(frames, cuts)
    kept = max(segments, key=len)
    if strict and len(kept) * 2 < len(frames):
        raise ValueError(f"{path}: the frame numbers ({frames[0]}..{frames[-1]}, {len(frames)} detected frames in "
                         f"{len(segments)} groups split by gaps over {max_gap} frames) do not look like one video's; "
                         f"give the detections of one video with frame numbers as image ids or file names "
                         f"(or raise --max-frame-gap)")
    warnings.append(f"frame numbers jump by more than {max_gap} (--max-frame-gap): kept frames {kept[0]}..{kept[-1]} "
                    f"({len(kept)} of {len(frames)} detected frames), dropped {len(segments) - 1} other segment(s)")
    return {int(f): best[int(f)] for f in kept}
