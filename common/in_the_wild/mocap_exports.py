"""Marker trajectories of the people of one video for biomechanics tools: OpenSim / Pose2Sim
.trc (write_trc) and .c3d (write_c3d, through ezc3d), so that OpenSim's inverse kinematics,
Mokka, Visual3D or Vicon software can take the lifted poses as motion-capture markers.

- Markers: each person's 17 Human3.6M joints (common.geometry.skeleton.h36m_skeleton_17 names)
  at its absolute position, the shown pose plus the estimated root (`shown + trajectory`).
  One person: the plain joint names (`right_knee`); several: prefixed with the person's id
  (`p3_right_knee`), person after person in the order given.
- Axes: camera space (x right, y down, z forward) turned into a lab-like right-handed frame
  with Y up, as OpenSim expects: X = x, Y = -y, Z = -z (Z points from the person towards the
  camera; the same turn as the .bvh). Y is vertical only as far as the camera was level: no
  floor is estimated.
- Units: millimetres in both files (TRC Units "mm", C3D POINT:UNITS "mm"); OpenSim scales
  a .trc to the model's metres by its Units.
- Frames: the file's frame axis runs over every frame number from the smallest to the largest
  over all people, at their common frame rate (25 fps when none is known). Time = frame
  number / rate, as in the .json and .csv. A .trc's Frame# column holds the video frame
  numbers; a .c3d counts frames from 1, so its first frame (header and
  TRIAL:ACTUAL_START_FIELD) is the first video frame number + 1.
- Missing markers (a person absent from a frame, or a non-finite position): empty X, Y, Z
  fields in a .trc (OpenSim reads them as NaN); in a .c3d the C3D convention, residual -1 with
  zero coordinates (ezc3d reads such a point back as NaN).
- Present markers have C3D residual 0, which C3D reserves for computed (not camera-measured)
  points. Frames in which the detector lost the person but the lifter filled the pose in
  (confidence 0, exports.detected_frames) are written like the others, so that inverse
  kinematics sees a continuous motion; the .json and .csv say which frames were detected.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..geometry.skeleton import h36m_skeleton_17
from ..storage.files import atomic_files, target_name

DEFAULT_FPS = 25.0
CAMERA_TO_LAB = np.diag([1.0, -1.0, -1.0])   # camera (x right, y down, z forward) -> lab (Y up), also the BVH's
UNITS = "mm"
MM_PER_METRE = 1000.0


@dataclass
class MarkerTrajectories:
    """Every marker of every person over the file's frame axis, lab frame (see module docstring)."""

    frames: np.ndarray      # (F,) int64 video frame numbers, consecutive
    rate: float             # frames per second
    names: list             # (M,) marker names
    person_ids: list        # (P,) the people's ids in marker order (None for a lone person without one)
    positions: np.ndarray   # (F, M, 3) millimetres, lab frame; NaN where the marker is missing

    @property
    def times(self) -> np.ndarray:
        """(F,) seconds: frame number / rate."""
        return self.frames / self.rate


def marker_names(person_ids) -> list:
    """The markers of the people with these ids: plain joint names for one person, `p<id>_<joint>`
    for several."""
    joints = h36m_skeleton_17().names
    if len(person_ids) == 1:
        return list(joints)
    return [f"p{pid}_{joint}" for pid in person_ids for joint in joints]


def marker_trajectories(people) -> MarkerTrajectories:
    """The people's joints as markers on one frame axis (the union of their frame ranges); a single
    result (not in a list) is taken as one person, so the writers also fit exports.EXPORTERS."""
    people = [people] if hasattr(people, "shown") else list(people)
    if not people:
        raise ValueError("no people to write: give at least one lifted person")
    ids = [getattr(p, "person_id", None) for p in people]
    if len(people) > 1:
        if any(pid is None for pid in ids):
            raise ValueError("several people need a person_id each, to name their markers")
        seen = set()
        for pid in ids:
            if pid in seen:
                raise ValueError(f"person id {pid} appears twice; each person needs a unique person_id")
            seen.add(pid)
    rate = _common_rate(people, ids)

    frame_ids = [_frame_ids(p, pid) for p, pid in zip(people, ids)]
    first = min(int(f.min()) for f in frame_ids)
    last = max(int(f.max()) for f in frame_ids)
    frames = np.arange(first, last + 1, dtype=np.int64)
    joints = len(h36m_skeleton_17().names)
    positions = np.full((len(frames), len(people) * joints, 3), np.nan)
    for k, (person, rows) in enumerate(zip(people, frame_ids)):
        absolute = np.asarray(person.shown, np.float64) + np.asarray(person.trajectory, np.float64)[:, None]
        positions[rows - first, k * joints:(k + 1) * joints] = absolute @ CAMERA_TO_LAB.T * MM_PER_METRE
    positions[~np.isfinite(positions).all(axis=-1)] = np.nan       # a marker is whole or missing
    return MarkerTrajectories(frames=frames, rate=rate, names=marker_names(ids), person_ids=ids, positions=positions)


def _common_rate(people, ids) -> float:
    """The frame rate the people share (unknown ones take the known one; 25 fps when none is known)."""
    known = {float(p.fps) for p in people if p.fps is not None}
    if len(known) > 1:
        rates = ", ".join(f"person {pid}: {p.fps:g} fps" for p, pid in zip(people, ids) if p.fps is not None)
        raise ValueError(f"the people of one video must share a frame rate; got {rates}")
    rate = known.pop() if known else DEFAULT_FPS
    if not np.isfinite(rate) or rate <= 0:
        raise ValueError(f"frame rate must be a positive number of frames per second, got {rate:g}")
    return rate


def _frame_ids(person, pid) -> np.ndarray:
    """(N,) int64 frame numbers of the person's rows, checked against its poses."""
    who = "the person" if pid is None else f"person {pid}"
    frames = np.asarray(person.frame_ids)
    n = len(frames)
    if n == 0:
        raise ValueError(f"{who} has no frames")
    if np.shape(person.shown) != (n, 17, 3) or np.shape(person.trajectory) != (n, 3):
        raise ValueError(f"{who}: {n} frame numbers but poses {np.shape(person.shown)} and trajectory "
                         f"{np.shape(person.trajectory)}; expected ({n}, 17, 3) and ({n}, 3)")
    if not np.issubdtype(frames.dtype, np.integer):
        raise ValueError(f"{who}: frame numbers must be integers, got {frames.dtype}")
    if len(np.unique(frames)) < n:
        raise ValueError(f"{who}: a frame number appears twice")
    return frames.astype(np.int64)


# ---------------------------------------------------------------------------- TRC

def write_trc(people, path: Path) -> None:
    """OpenSim / Pose2Sim marker file: the five header lines (PathFileType 4; DataRate ...
    OrigNumFrames; their values; Frame#, Time and the marker names; X1 Y1 Z1 ...), then one
    tab-separated row per frame: Frame#, Time (s), X Y Z of each marker in mm, empty fields
    where a marker is missing."""
    m = marker_trajectories(people)
    f, n = len(m.frames), len(m.names)
    rate = f"{m.rate:.10g}"                          # 30 -> "30", 30000/1001 -> "29.97002997"
    lines = [f"PathFileType\t4\t(X/Y/Z)\t{target_name(path)}",
             "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames",
             f"{rate}\t{rate}\t{f}\t{n}\t{UNITS}\t{rate}\t{m.frames[0]}\t{f}",
             "Frame#\tTime\t" + "".join(f"{name}\t\t\t" for name in m.names),
             "\t\t" + "".join(f"X{i}\tY{i}\tZ{i}\t" for i in range(1, n + 1))]
    for frame, time, row in zip(m.frames.tolist(), m.times.tolist(), m.positions):
        cells = [str(frame), f"{time:.6f}"]
        for xyz in row:
            cells += ["", "", ""] if np.isnan(xyz[0]) else [f"{v:.3f}" for v in xyz]
        # A closing tab: OpenSim's reader drops a row's last field when empty, which would make
        # a row whose last marker is missing one field short.
        lines.append("\t".join(cells) + "\t")
    with open(path, "w", newline="\n") as out:
        out.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------- C3D

C3D_MAX_HEADER_FRAME = 65535   # the header's frame numbers are 16-bit; TRIAL:ACTUAL_*_FIELD hold 32


def write_c3d(people, path: Path) -> None:
    """C3D through ezc3d: POINT data (float, mm) with the marker names as POINT:LABELS,
    POINT:RATE the frame rate, residual 0 for present markers and -1 for missing ones; the
    first frame in the header and in TRIAL:ACTUAL_START_FIELD / ACTUAL_END_FIELD (video frame
    number + 1, C3D counting from 1); several people also as SUBJECTS (NAMES, LABEL_PREFIXES)."""
    import ezc3d                                     # only for .c3d
    from ezc3d import ezc3d as ezc3d_core            # ezc3d's own Parameter, for integer pairs

    m = marker_trajectories(people)
    f, n = len(m.frames), len(m.names)
    first, last = int(m.frames[0]) + 1, int(m.frames[-1]) + 1
    if first < 1:
        raise ValueError(f"C3D frame numbers start at 1; the first frame number here is {first - 1} (negative)")

    c3d = ezc3d.c3d()
    c3d["parameters"]["POINT"]["RATE"]["value"] = [m.rate]
    c3d["parameters"]["POINT"]["LABELS"]["value"] = tuple(m.names)
    c3d.add_parameter("POINT", "UNITS", [UNITS])
    points = np.ones((4, n, f))                      # (XYZ1, markers, frames)
    points[:3] = m.positions.transpose(2, 1, 0)
    missing = np.isnan(m.positions[..., 0]).T        # (markers, frames)
    c3d["data"]["points"] = points
    c3d["data"]["meta_points"] = {"residuals": np.where(missing, -1.0, 0.0)[None]}
    c3d["header"]["points"]["first_frame"] = min(first, C3D_MAX_HEADER_FRAME) - 1   # ezc3d counts from 0 here
    for name, frame, what in (("ACTUAL_START_FIELD", first, "first"), ("ACTUAL_END_FIELD", last, "last")):
        words = [(frame >> shift) & 0xFFFF for shift in (0, 16)]              # two unsigned 16-bit words
        param = ezc3d_core.Parameter(name, f"{what} frame: low and high 16-bit words")
        param.set(ezc3d_core.VecInt([w - 0x10000 if w > 0x7FFF else w for w in words]))  # stored as int16
        c3d["parameters"].add_parameter("TRIAL", param)
    if len(m.person_ids) > 1:                        # the Vicon way of naming each subject's markers
        prefixes = [f"p{pid}_" for pid in m.person_ids]
        c3d.add_parameter("SUBJECTS", "USED", len(prefixes))
        c3d.add_parameter("SUBJECTS", "NAMES", [p.rstrip("_") for p in prefixes])
        c3d.add_parameter("SUBJECTS", "LABEL_PREFIXES", prefixes)

    path = Path(path)
    if path.name.endswith(".c3d"):
        c3d.write(str(path))
    else:                                            # ezc3d would append ".c3d" to any other name
        with atomic_files([path], suffix=".partial.c3d") as (tmp,):
            c3d.write(str(tmp))
