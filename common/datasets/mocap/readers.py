"""Any motion file to a Motion, by its suffix: .bvh (BVH), .amc (CMU ASF/AMC), .txt / .json
(DeepMimic), .npy / .npz (joint positions)."""
from __future__ import annotations

from pathlib import Path

from .asf_amc import read_asf_amc
from .bvh import read_bvh
from .deepmimic import read_deepmimic
from .motion import Motion, MotionError
from .positions import read_positions

SUFFIXES = (".bvh", ".amc", ".txt", ".json", ".npy", ".npz")


def read_motion(path, joint_map=None, fps: float | None = None, units: str = "m", up: str = "z-up") -> Motion:
    """Read one motion file. joint_map: a BVH joint map (a built-in name, a dict or a JSON path);
    fps: the frame rate of position arrays (ASF/AMC: default 120); units and up: the unit and
    the vertical axis of position arrays."""
    path = Path(path)
    if not path.is_file():
        raise MotionError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".bvh":
        return read_bvh(path, joint_map)
    if suffix == ".amc":
        return read_asf_amc(path, fps=fps or 120.0)
    if suffix in (".txt", ".json"):
        return read_deepmimic(path)
    if suffix in (".npy", ".npz"):
        return read_positions(path, fps, units, up)
    raise MotionError(f"{path}: unknown motion format {suffix!r}; give one of {', '.join(SUFFIXES)}")


def motion_files(folder) -> list[Path]:
    """The motion files under a folder (recursively), sorted; .asf skeletons are read with their .amc."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MotionError(f"{folder}: no such folder of motion files")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
