"""Reading .npz files whose entries are pickled Python objects, without running their code.

The data set formats (VideoPose3D's data_2d_* / data_3d_* files, the processed MPI-INF-3DHP
files, VideoPose3D's custom-video keypoints) store dicts of numpy arrays as pickled object
arrays. Plain unpickling (np.load with pickles allowed) would run whatever a pickle asks for;
here every entry is read with an unpickler that only builds the plain containers, numbers,
strings and numpy arrays such files hold, and refuses anything else with UnsafePickleError.
"""
from __future__ import annotations

import builtins
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

try:
    from numpy._core import multiarray, numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray, numeric

_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int", "float",
             "complex", "bool", "slice", "range"}
# numpy's pickle helpers, under numpy 1 ('numpy.core') and numpy 2 ('numpy._core') module names.
_NUMPY_HELPERS = {"_reconstruct", "scalar", "_frombuffer"}
_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric")


class UnsafePickleError(ValueError):
    """A pickle that asks for something outside the allow-list (possibly code to run)."""


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "builtins" and name in _BUILTINS:
            return getattr(builtins, name)
        if module == "collections" and name == "OrderedDict":
            from collections import OrderedDict
            return OrderedDict
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module in _NUMPY_CORE and name in _NUMPY_HELPERS:
            return _numpy_helper(name)
        if module == "numpy.dtypes" and name.endswith("DType") and hasattr(np.dtypes, name):
            return getattr(np.dtypes, name)
        raise UnsafePickleError(f"refused to unpickle {module}.{name}: only dicts, lists, tuples, strings, "
                                f"numbers and numpy arrays are allowed in a data file")


def _numpy_helper(name: str):
    return getattr(multiarray, name, None) or getattr(numeric, name)


def safe_loads(data: bytes):
    """pickle.loads restricted to the allow-list."""
    return _AllowListUnpickler(io.BytesIO(data)).load()


def _read_npy(fp):
    """One .npy stream -> array; object arrays go through the allow-list unpickler."""
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        shape, fortran, dtype = np.lib.format._read_array_header(fp, version)
    if not dtype.hasobject:
        count = int(np.prod(shape, dtype=np.int64))
        data = fp.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise ValueError("the array data is truncated")
        array = np.frombuffer(data, dtype=dtype, count=count)
        return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)
    return _AllowListUnpickler(fp).load()


def load_npz(path) -> dict:
    """Every entry of an .npz (or one .npy) file as {name: array}, pickled entries unpickled
    with the allow-list. Raises UnsafePickleError for a refused pickle, ValueError for a file
    that is not an npz."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            with open(path, "rb") as f:
                return {"arr_0": _read_npy(f)}
        with zipfile.ZipFile(path) as zf:
            out = {}
            for member in zf.namelist():
                key = member[:-4] if member.endswith(".npy") else member
                with zf.open(member) as f:
                    out[key] = _read_npy(io.BufferedReader(f))
            return out
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}. The file may have been crafted to run code; "
                                f"do not use it, get the data from its original source") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise ValueError(f"{path} cannot be read as an .npz file ({e}); it is truncated or of another "
                         f"format") from e


def item(array):
    """The object inside a 0-d object array (what np.savez makes of a dict), else the array."""
    if isinstance(array, np.ndarray) and array.dtype == object and array.shape == ():
        return array.item()
    return array
