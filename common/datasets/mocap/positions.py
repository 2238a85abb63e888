"""Plain joint-position arrays: a .npy of (frames, 17, 3) Human3.6M-17 joints, or a .npz with
`joints` (frames, J, 3), optional `fps`, `units` ('m', 'cm', 'mm') and `joint_names` (J names;
the Human3.6M-17 ones must be among them, see common.datasets.mocap.motion.H36M_NAMES). Read
with numpy, never unpickled. The axes (z up or y up) are the caller's to say, and the unit
when the file does not."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .motion import H36M_NAMES, Motion, MotionError, from_y_up

UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}
AXES = ("z-up", "y-up")


def read_positions(path, fps: float | None = None, units: str = "m", up: str = "z-up") -> Motion:
    """(frames, J, 3) positions in `units` with `up` the vertical axis -> Motion."""
    path = Path(path)
    if units not in UNITS or up not in AXES:
        raise MotionError(f"{path}: units {units!r} / axes {up!r}: choose units from {sorted(UNITS)} and axes from "
                          f"{list(AXES)}")
    names, stored_fps, stored_units = None, None, None
    try:
        if path.suffix == ".npy":
            joints = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as f:
                if "joints" not in f:
                    raise MotionError(f"{path}: no 'joints' array (it holds {sorted(f.files)}); save the (frames, J, 3) "
                                      f"positions as 'joints'")
                joints = f["joints"]
                names = [str(n) for n in f["joint_names"]] if "joint_names" in f else None
                stored_fps = float(f["fps"]) if "fps" in f else None
                stored_units = str(f["units"]) if "units" in f else None
    except (OSError, ValueError) as e:
        raise MotionError(f"{path}: cannot be read as a numpy array file ({e})") from None
    joints = np.asarray(joints, np.float64)
    if joints.ndim != 3 or joints.shape[2] != 3:
        raise MotionError(f"{path}: positions of shape {joints.shape}; expected (frames, joints, 3)")
    if names is not None:
        missing = [n for n in H36M_NAMES if n not in names]
        if missing:
            raise MotionError(f"{path}: joint_names lacks {missing}; name the Human3.6M-17 joints {list(H36M_NAMES)}")
        joints = joints[:, [names.index(n) for n in H36M_NAMES]]
    elif joints.shape[1] != 17:
        raise MotionError(f"{path}: {joints.shape[1]} joints without joint_names; give the 17 Human3.6M joints in "
                          f"their order, or a 'joint_names' array")
    rate = fps or stored_fps
    if rate is None:
        raise MotionError(f"{path}: no frame rate; store 'fps' in the file or pass --fps")
    if stored_units is not None and stored_units not in UNITS:
        raise MotionError(f"{path}: units {stored_units!r}; store one of {sorted(UNITS)}")
    joints = joints * UNITS[stored_units or units]
    return Motion(path.stem, from_y_up(joints) if up == "y-up" else joints, rate, str(path))


def save_positions(motion: Motion, path) -> None:
    """A motion as a compact positions file: joints in whole millimetres (int16), fps, units, names."""
    millimetres = np.round(motion.joints * 1000)
    if np.abs(millimetres).max() >= 2 ** 15:
        raise MotionError(f"{motion.source or motion.name}: positions beyond +-32.7 m do not fit int16 millimetres")
    np.savez_compressed(path, joints=millimetres.astype(np.int16), fps=np.float64(motion.fps), units=np.str_("mm"),
                        joint_names=np.array(H36M_NAMES))
