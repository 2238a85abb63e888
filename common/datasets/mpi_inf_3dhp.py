"""MPI-INF-3DHP: read the official release, write the authors' processed npz files, and load
either into Sequence records (pelvis-rooted 3D in metres, 2D in normalised screen units).

Layouts (docs/data_formats.md):
- release, training: S*/Seq*/annot.mat (MATLAB v5, cell arrays with one (frames, 28*C) entry
  per camera) and S*/Seq*/camera.calibration (text);
- release, test: [mpi_inf_3dhp_test_set/]TS*/annot_data.mat (MATLAB v7.3 = HDF5);
- processed, as the authors' scripts read them (key 'data'; 2D in pixels, 3D absolute camera
  space in millimetres = annot3):
  data_train_3dhp_ori.npz {"S1 Seq1": [{camera: {'data_3d': (N,17,3), 'data_2d': (N,17,2)}}]}
  data_test_3dhp_ori.npz  {"TS1": {'data_3d': (N,17,3), 'data_2d': (N,17,2), 'valid': (N,)}}
  Files written here also carry 'intrinsic_px' (training) and 'activity' (test), keys the
  authors' scripts ignore.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from ..geometry.camera import normalize_screen_coordinates, normalized_intrinsics
from .base import Dataset, DatasetError, Layout, Selection, Sequence
from ..storage.safe_pickle import UnsafePickleError, item, load_npz
from ..geometry.skeleton import Skeleton

METADATA_PATH = Path(__file__).resolve().parents[1] / "constants" / "mpi_inf_3dhp.json"
TRAIN_NPZ = "data_train_3dhp_ori.npz"
TEST_NPZ = "data_test_3dhp_ori.npz"
TEST_SET_FOLDER = "mpi_inf_3dhp_test_set"
NUM_JOINTS = 17


@lru_cache(maxsize=1)
def mpi_inf_3dhp_metadata() -> dict:
    """The project's copy of the MPI-INF-3DHP constants (common/constants/mpi_inf_3dhp.json)."""
    with open(METADATA_PATH) as f:
        return json.load(f)


_META = mpi_inf_3dhp_metadata()
ROOT_INDEX: int = _META["root_index"]
JOINTS_LEFT: list[int] = _META["joints_left"]
JOINTS_RIGHT: list[int] = _META["joints_right"]
TRAIN_CAMERAS: tuple[int, ...] = tuple(_META["train"]["cameras"])
TEST_SEQUENCES: tuple[str, ...] = tuple(_META["test_sequences"])
LAYOUT = Layout(JOINTS_LEFT, JOINTS_RIGHT, JOINTS_LEFT, JOINTS_RIGHT,   # 2D and 3D share the 17 joints
                parents=_META["parents"])


def mpi_inf_3dhp_skeleton() -> Skeleton:
    """The 17-joint evaluation skeleton (root = pelvis 14) with its left/right joints for flipping."""
    return Skeleton(_META["parents"], JOINTS_LEFT, JOINTS_RIGHT, _META["joint_names"])


def camera_pixels_of_test_sequence(seq: str, calibrated: bool = False) -> dict:
    """Pinhole camera of a test sequence in pixels: width, height, fx, fy, cx, cy.

    Default: the authors' camera, each focal length converted from millimetres with its own
    axis (fx = focal / sensor_w x width, fy = focal / sensor_h x height; fx = fy on every test
    camera, e.g. 1683.98 px on TS5/TS6). calibrated: fy = fx x the calibrated pixel aspect,
    which reprojects annot3 onto annot2 more closely."""
    for cam in _META["test_cameras"].values():
        if seq in cam["sequences"]:
            w, h = cam["width"], cam["height"]
            sensor_w, sensor_h = cam["sensor_mm"]
            fx = cam["focal_mm"] / sensor_w * w
            fy = fx * cam["pixel_aspect"] if calibrated else cam["focal_mm"] / sensor_h * h
            return {"width": w, "height": h, "fx": fx, "fy": fy,
                    "cx": cam["center_offset_mm"][0] / sensor_w * w + w / 2,
                    "cy": cam["center_offset_mm"][1] / sensor_h * h + h / 2}
    raise ValueError(f"unknown MPI-INF-3DHP test sequence {seq!r}: expected one of {', '.join(TEST_SEQUENCES)}")


def intrinsics_of_test_sequence(seq: str, calibrated: bool = False) -> np.ndarray:
    """Normalised 9-vector intrinsics of a test camera (see camera_pixels_of_test_sequence); no distortion,
    as annot2 is undistorted."""
    c = camera_pixels_of_test_sequence(seq, calibrated)
    return normalized_intrinsics([c["cx"], c["cy"]], [c["fx"], c["fy"]], np.zeros(3), np.zeros(2),
                                 c["width"], c["height"])


# ---------------------------------------------------------------- official release files

def read_mat(path, fields=None) -> dict[str, np.ndarray]:
    """Variables of a .mat file (v5 or v7.3/HDF5) in MATLAB's dimension order; all of them,
    or just `fields`, each of which must be present."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                present = [k for k, v in f.items() if isinstance(v, h5py.Dataset)]
                _require_fields(path, fields, present)
                return {k: f[k][()].T for k in (fields or present)}  # h5py reverses MATLAB's dims
        mat = scipy.io.loadmat(str(path))
    except (OSError, ValueError, TypeError, KeyError, scipy.io.matlab.MatReadError) as e:
        if isinstance(e, ValueError) and "lacks the field" in str(e):
            raise
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{path} cannot be read as a MATLAB .mat file ({reason}); it is truncated or of "
                         f"another format: export or copy it again") from None
    present = [k for k in mat if not k.startswith("__")]
    _require_fields(path, fields, present)
    return {k: mat[k] for k in (fields or present)}


def _require_fields(path: Path, fields, present) -> None:
    missing = [k for k in fields or [] if k not in present]
    if missing:
        raise DatasetError(f"{path} lacks the field(s) {', '.join(missing)} (it has: {', '.join(sorted(present))}); "
                         "is it an official MPI-INF-3DHP annotation file?")


def _frames_first(a: np.ndarray, channels: int, where: str) -> np.ndarray:
    """MATLAB (C, 17, [1,] N) joints -> (N, 17, C)."""
    if a.shape[:2] != (channels, NUM_JOINTS) or a.size % (channels * NUM_JOINTS):
        raise DatasetError(f"{where}: expected MATLAB shape ({channels}, {NUM_JOINTS}, 1, frames), got {a.shape}")
    return np.ascontiguousarray(a.reshape(channels, NUM_JOINTS, -1).transpose(2, 1, 0))


def read_test_annotations(path) -> dict[str, np.ndarray]:
    """One TS*/annot_data.mat -> {'data_3d': (N,17,3) mm (annot3), 'data_2d': (N,17,2) px,
    'valid': (N,) bool, 'activity': (N,) int 1..7}."""
    m = read_mat(path, ["annot3", "annot2", "valid_frame", "activity_annotation"])
    entry = {"data_3d": _frames_first(m["annot3"], 3, f"{path} annot3"),
             "data_2d": _frames_first(m["annot2"], 2, f"{path} annot2"),
             "valid": m["valid_frame"].reshape(-1) != 0,
             "activity": m["activity_annotation"].reshape(-1).astype(np.int64)}
    lengths = {k: len(v) for k, v in entry.items()}
    if len(set(lengths.values())) != 1:
        raise DatasetError(f"{path}: fields disagree on the number of frames: {lengths}")
    return entry


def read_calibration(path) -> dict[int, np.ndarray]:
    """camera.calibration text -> {camera: (4,) pixel [fx, fy, cx, cy]}, from each camera's
    'intrinsic' line (row-major 4x4) following its 'name' line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: every S*/Seq* folder of the release has a camera.calibration")
    cams, current = {}, None
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "name":
            current = int(parts[1])
        elif parts and parts[0] == "intrinsic" and current is not None:
            k = np.asarray(parts[1:17], dtype=np.float64).reshape(4, 4)
            cams[current] = np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2]])
    return cams


def read_train_sequence(seq_dir, cameras=TRAIN_CAMERAS) -> dict[int, dict[str, np.ndarray]]:
    """One S*/Seq* folder -> {camera: {'data_3d': (N,17,3) mm (annot3), 'data_2d': (N,17,2) px,
    'intrinsic_px': (4,) [fx, fy, cx, cy]}}; cell i of annot.mat is camera i."""
    seq_dir = Path(seq_dir)
    annot = read_mat(seq_dir / "annot.mat", ["annot2", "annot3"])
    calibration = read_calibration(seq_dir / "camera.calibration")
    cells_2d, cells_3d = annot["annot2"].ravel(), annot["annot3"].ravel()
    missing = [c for c in cameras if c >= min(len(cells_2d), len(cells_3d)) or c not in calibration]
    if missing:
        raise DatasetError(f"{seq_dir}: camera(s) {missing} missing (annot.mat has {len(cells_3d)} camera cells, "
                         f"camera.calibration has cameras {sorted(calibration)})")
    joints = _META["joints_from_28"]
    views = {}
    for c in cameras:
        data_3d, data_2d = np.asarray(cells_3d[c], dtype=np.float64), np.asarray(cells_2d[c], dtype=np.float64)
        if data_3d.ndim != 2 or data_3d.shape[1] != 28 * 3 or data_2d.shape != (len(data_3d), 28 * 2):
            raise DatasetError(f"{seq_dir}/annot.mat camera {c}: expected annot3 (frames, 84) and annot2 (frames, 56), "
                             f"got {data_3d.shape} and {data_2d.shape}")
        views[c] = {"data_3d": data_3d.reshape(-1, 28, 3)[:, joints],
                    "data_2d": data_2d.reshape(-1, 28, 2)[:, joints],
                    "intrinsic_px": calibration[c]}
    return views


def find_test_files(raw_dir) -> dict[str, Path]:
    """{'TS1': annot_data.mat, ...} for the test sequences under raw_dir or raw_dir/mpi_inf_3dhp_test_set."""
    raw_dir = Path(raw_dir)
    found = {}
    for seq in TEST_SEQUENCES:
        for folder in (raw_dir, raw_dir / TEST_SET_FOLDER):
            if (folder / seq / "annot_data.mat").is_file():
                found[seq] = folder / seq / "annot_data.mat"
                break
    return found


def find_train_folders(raw_dir) -> dict[str, Path]:
    """{'S1 Seq1': folder, ...} for the training sequences under raw_dir that have an annot.mat."""
    raw_dir = Path(raw_dir)
    return {f"{s} {q}": raw_dir / s / q for s in _META["train"]["subjects"] for q in _META["train"]["sequences"]
            if (raw_dir / s / q / "annot.mat").is_file()}


def _select(found: dict, requested, what: str, where) -> dict:
    """The requested keys of found (all of it when requested is None); names any that are missing."""
    if requested is None:
        return found
    missing = [r for r in requested if r not in found]
    if missing:
        raise FileNotFoundError(f"{what} {', '.join(map(str, missing))} not found in {where} "
                                f"(found: {', '.join(map(str, found)) or 'none'})")
    return {r: found[r] for r in requested}


def read_raw_test(raw_dir, sequences=None) -> dict[str, dict]:
    """Test sequences of the official release, in the processed layout (see read_test_annotations)."""
    files = _select(find_test_files(raw_dir), sequences, "MPI-INF-3DHP test sequence(s)",
                    f"{raw_dir} (looked for TS*/annot_data.mat and {TEST_SET_FOLDER}/TS*/annot_data.mat)")
    if not files:
        raise FileNotFoundError(f"no TS*/annot_data.mat under {raw_dir} or {Path(raw_dir) / TEST_SET_FOLDER}")
    return {seq: read_test_annotations(f) for seq, f in files.items()}


def read_raw_train(raw_dir, sequences=None, cameras=TRAIN_CAMERAS) -> dict[str, list[dict]]:
    """Training sequences of the official release, in the processed layout {"S1 Seq1": [{camera: view}]}."""
    folders = _select(find_train_folders(raw_dir), sequences, "MPI-INF-3DHP training sequence(s)",
                      f"{raw_dir} (looked for S*/Seq*/annot.mat)")
    if not folders:
        raise FileNotFoundError(f"no S*/Seq*/annot.mat under {raw_dir}")
    return {key: [read_train_sequence(folder, cameras)] for key, folder in folders.items()}


def prepare_3dhp(raw_dir, out_dir, train_sequences=None, test_sequences=None,
                 cameras=TRAIN_CAMERAS) -> dict[str, Path]:
    """Official release -> data_train_3dhp_ori.npz / data_test_3dhp_ori.npz in out_dir, for the
    sequences present (or exactly those requested). Returns {'train'|'test': written file}."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"MPI-INF-3DHP folder {raw_dir} does not exist")
    have_train = train_sequences is not None or bool(find_train_folders(raw_dir))
    have_test = test_sequences is not None or bool(find_test_files(raw_dir))
    if not (have_train or have_test):
        raise FileNotFoundError(
            f"no MPI-INF-3DHP files in {raw_dir}: expected the official release, i.e. S1..S8/Seq1,Seq2/annot.mat "
            f"with camera.calibration (training) and/or TS1..TS6/annot_data.mat, possibly inside {TEST_SET_FOLDER}/ (test)")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    if have_train:
        train = read_raw_train(raw_dir, train_sequences, cameras)
        data = {key: [{c: _to_float32(v) for c, v in views[0].items()}] for key, views in train.items()}
        written["train"] = _save_processed(out_dir / TRAIN_NPZ, data)
    if have_test:
        test = read_raw_test(raw_dir, test_sequences)
        written["test"] = _save_processed(out_dir / TEST_NPZ, {seq: _to_float32(e) for seq, e in test.items()})
    return written


def _to_float32(entry: dict) -> dict:
    return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in entry.items()}


def _save_processed(path: Path, data: dict) -> Path:
    np.savez(path, data=data)
    return path


# ---------------------------------------------------------------- processed files -> Sequence

def _processed_file(path: Path, name: str) -> Path:
    """The processed npz that path is, or that the folder path holds."""
    npz = path if path.is_file() else path / name
    if not npz.is_file():
        raise FileNotFoundError(f"neither a processed {name} nor the official release files found at {path}")
    return npz


def _load_processed(path: Path) -> dict:
    try:
        return item(load_npz(path)["data"])
    except UnsafePickleError:
        raise
    except (KeyError, ValueError, OSError) as e:
        raise DatasetError(f"{path} is not a processed MPI-INF-3DHP file (an npz with a pickled dict under "
                           f"'data'): {e}") from e


def _checked_entry(entry: dict, where: str, required: tuple[str, ...]) -> dict:
    """A processed entry with its shapes checked and 3D in millimetres (metres are detected and converted)."""
    missing = [k for k in required if k not in entry]
    if missing:
        raise DatasetError(f"{where} lacks {', '.join(missing)} (has: {', '.join(entry)})")
    entry = {k: np.asarray(v) for k, v in entry.items()}
    n = len(entry["data_3d"])
    if entry["data_3d"].shape != (n, NUM_JOINTS, 3) or entry["data_2d"].shape != (n, NUM_JOINTS, 2):
        raise DatasetError(f"{where}: expected data_3d (N, 17, 3) and data_2d (N, 17, 2), "
                         f"got {entry['data_3d'].shape} and {entry['data_2d'].shape}")
    for key in ("valid", "activity"):
        if key in entry:
            entry[key] = entry[key].reshape(-1)
            if len(entry[key]) != n:
                raise DatasetError(f"{where}: {key} has {len(entry[key])} frames, data_3d has {n}")
    if "valid" in entry:
        entry["valid"] = entry["valid"] != 0
    pelvis_depth = float(np.median(entry["data_3d"][:, ROOT_INDEX, 2]))
    if not pelvis_depth > 0:
        raise DatasetError(f"{where}: data_3d must be absolute camera coordinates (pelvis depth > 0), "
                         f"got a median pelvis depth of {pelvis_depth}")
    if pelvis_depth < 100:  # a person is never 100 mm from the camera: these are metres
        entry["data_3d"] = entry["data_3d"] * 1000.0
    return entry


def read_test_entries(path, sequences=None) -> dict[str, dict]:
    """Test sequences {seq: {'data_3d' mm, 'data_2d' px, 'valid'[, 'activity']}} from a processed npz or
    a folder: its official TS*/annot_data.mat files when present (exact, with activities), else its
    data_test_3dhp_ori.npz."""
    path = Path(path)
    if path.is_dir() and find_test_files(path):
        source, data = path, read_raw_test(path, sequences)
    else:
        source = _processed_file(path, TEST_NPZ)
        data = _select(_load_processed(source), sequences, "MPI-INF-3DHP test sequence(s)", source)
    return {seq: _checked_entry(e, f"{source}[{seq}]", ("data_3d", "data_2d", "valid")) for seq, e in data.items()}


def read_train_entries(path, sequences=None, cameras=None) -> dict[str, dict[int, dict]]:
    """Training views {"S1 Seq1": {camera: {'data_3d' mm, 'data_2d' px[, 'intrinsic_px']}}} from a
    processed npz or a folder: its data_train_3dhp_ori.npz when present, else the official release
    files (slow: the annot.mat files are large)."""
    path = Path(path)
    if path.is_dir() and not (path / TRAIN_NPZ).is_file() and find_train_folders(path):
        source, data = path, read_raw_train(path, sequences, TRAIN_CAMERAS if cameras is None else cameras)
    else:
        source = _processed_file(path, TRAIN_NPZ)
        data = _select(_load_processed(source), sequences, "MPI-INF-3DHP training sequence(s)", source)
    out = {}
    for key, wrapped in data.items():  # the authors' layout wraps each sequence's views in a 1-element list
        views = _select({int(c): v for c, v in wrapped[0].items()}, cameras, f"camera(s) of {key}", source)
        out[key] = {c: _checked_entry(v, f"{source}[{key}][{c}]", ("data_3d", "data_2d")) for c, v in views.items()}
    return out


def _sequence(subject: str, action: str, camera: int, entry: dict, res_w: int, res_h: int,
              cam: np.ndarray | None) -> Sequence:
    """A processed entry (3D mm absolute, 2D px) -> Sequence (3D metres pelvis-relative, 2D normalised)."""
    data_3d = entry["data_3d"].astype(np.float64) / 1000.0  # (N, 17, 3) metres, camera space
    traj = data_3d[:, ROOT_INDEX:ROOT_INDEX + 1]  # (N, 1, 3)
    return Sequence(subject=subject, action=action, camera=camera,
                    pose_2d=normalize_screen_coordinates(entry["data_2d"].astype(np.float32), w=res_w, h=res_h),
                    pose_3d=(data_3d - traj).astype(np.float32), traj=traj.astype(np.float32), cam=cam,
                    res_w=res_w, res_h=res_h, root_index=ROOT_INDEX, valid=entry.get("valid"),
                    extra={"activity": entry["activity"]} if "activity" in entry else {})


def load_3dhp_test(path, sequences=None, calibrated_camera: bool = False) -> list[Sequence]:
    """Test sequences (subject = action = 'TS1'.., camera 0) with their valid masks, test-camera
    intrinsics (the authors' camera, or with calibrated_camera the pixel-aspect one; see
    camera_pixels_of_test_sequence) and, when the source has them, activity ids in extra['activity']."""
    out = []
    for seq, entry in read_test_entries(path, sequences).items():
        c = camera_pixels_of_test_sequence(seq)
        out.append(_sequence(seq, seq, 0, entry, c["width"], c["height"], intrinsics_of_test_sequence(seq, calibrated_camera)))
    return out


def load_3dhp_train(path, sequences=None, cameras=None) -> list[Sequence]:
    """Training views (subject 'S1', action 'Seq1', camera index); intrinsics when the source has them."""
    w, h = _META["train"]["width"], _META["train"]["height"]
    out = []
    for key, views in read_train_entries(path, sequences, cameras).items():
        subject, seq = key.split(" ")
        for c, entry in views.items():
            k = entry.get("intrinsic_px")
            cam = None if k is None else normalized_intrinsics(k[2:], k[:2], np.zeros(3), np.zeros(2), w, h)
            out.append(_sequence(subject, seq, int(c), entry, w, h, cam))
    return out


class MPIINF3DHPDataset(Dataset):
    """MPI-INF-3DHP as a data set: training views from the processed training file, test
    sequences from the processed test file or the official test release. Test sequences are
    selected by name (TS1..TS6) through Selection.subjects_test."""

    name = "3dhp"
    layout = LAYOUT
    joint_names = _META["joint_names"]

    def __init__(self, train_source=None, test_source=None, calibrated_camera: bool = False):
        self.train_source, self.test_source = train_source, test_source
        self.calibrated_camera = calibrated_camera

    def label(self, run, sequences) -> str:
        """'MPI-INF-3DHP ' and the sequences' names (the data flags do not choose this data)."""
        return "MPI-INF-3DHP " + ",".join(sorted({s.subject for s in sequences}))

    def train_sequences(self, selection: Selection) -> list[Sequence]:
        if self.train_source is None:
            raise DatasetError(f"no MPI-INF-3DHP training data was given (the processed {TRAIN_NPZ})")
        return load_3dhp_train(self.train_source)

    def test_sequences(self, selection: Selection) -> list[Sequence]:
        if self.test_source is None:
            raise DatasetError(f"no MPI-INF-3DHP test data was given ({TEST_NPZ} or the official test release)")
        return load_3dhp_test(self.test_source, selection.subjects_test, calibrated_camera=self.calibrated_camera)
