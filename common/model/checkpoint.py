"""Checkpoints: our own format and the authors' (D3DP) format, loaded safely.

Our format: {'format': 'd3dp-pytorch', 'version': 1, 'model_config': DenoiserConfig dict,
'diffusion': {...}, 'model_pos': state dict with our names, 'epoch', 'lr', 'optimizer',
'random_state' (clip sampler), 'torch_rng', 'best_error', 'args'}.

Authors' format: {'epoch', 'lr', 'random_state' (a pickled numpy RandomState), 'optimizer',
'model_pos'} with keys like 'module.pose_estimator.STEblocks.0.attn.qkv.weight' and the
diffusion schedule buffers stored beside them (the name mapping is denoiser.AUTHORS_NAMES). Both load with torch.load(weights_only=True);
only the numpy globals the authors' pickle needs are allow-listed.
"""
from __future__ import annotations

import dataclasses
import errno
import os
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from numpy.random import MT19937 as NumpyMT19937

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

from ..storage.files import atomic_files
from .denoiser import (ARCHITECTURE_FIELDS, INPUT_MAPS, Denoiser, DenoiserConfig, config_of_state_dict,
                       from_authors_state_dict)

FORMAT = "d3dp-pytorch"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why and what to do."""


def _mt19937_class():
    """MT19937 that also takes the (state, seed sequence) pickle state of numpy 2 under numpy 1."""
    class MT19937(NumpyMT19937):                  # the name numpy's state check expects
        def __setstate__(self, state):
            if isinstance(state, tuple):         # numpy >= 2: (state dict, seed sequence)
                state = state[0]
            self.state = state

    return MT19937


_PICKLED_MT19937 = _mt19937_class()


def _mt19937(bit_generator="MT19937"):
    """The bit generator of a pickled RandomState, given by class (numpy 2 pickles) or by name
    (numpy 1): the authors' files hold numpy 2 pickles, which numpy 1's own constructor refuses."""
    name = bit_generator if isinstance(bit_generator, str) else getattr(bit_generator, "__name__", "")
    if name != "MT19937":
        raise ValueError(f"unexpected bit generator {name!r} in a pickled RandomState (expected MT19937)")
    return _PICKLED_MT19937()


def _random_state(bit_generator_name="MT19937", bit_generator_ctor=None):
    """numpy's pickled-RandomState constructor, for numpy 1 and 2 pickles alike: numpy 2
    passes the unpickled bit generator itself, numpy 1 its name.

    The RandomState returned holds numpy's own MT19937 without a seed sequence (as a seeded
    RandomState does), never the unpickling class above, which is defined inside a function and
    cannot be pickled again: a loaded checkpoint's state saves again under either numpy, in the
    form a seeded RandomState has. The pickle's __setstate__ that follows sets the full state."""
    state = np.random.RandomState(0)
    if isinstance(bit_generator_name, NumpyMT19937):
        state.set_state(bit_generator_name.state)
    else:
        _mt19937(bit_generator_name)                  # checks the name
    return state


def _numpy_safe_globals() -> list:
    """The numpy globals a pickled numpy RandomState needs, under numpy 1 and 2 names; the two
    constructors are ours (they accept numpy 1 and numpy 2 pickles under either numpy)."""
    globs = [
        (_random_state, "numpy.random._pickle.__randomstate_ctor"),
        (_mt19937, "numpy.random._pickle.__bit_generator_ctor"),
        NumpyMT19937,
        _PICKLED_MT19937,
        np.random.RandomState,
        np.ndarray,
        np.dtype,
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        (_reconstruct, "numpy._core.multiarray._reconstruct"),
        type(np.dtype(np.uint32)),  # numpy.dtypes.UInt32DType
    ]
    return globs


def safe_load(path, map_location="cpu") -> dict:
    """torch.load with weights_only=True, accepting the numpy RandomState of the authors' files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}. Pass the path to a .bin file "
                              f"(e.g. checkpoint/h36m_best_epoch.bin).")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes): not a checkpoint (an interrupted copy?); "
                              f"copy it again or use another .bin file")
    if head != b"PK\x03\x04" and head[:1] != b"\x80":   # neither torch's zip format nor a legacy pickle
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (it starts with {head!r}); pass a .bin file "
                              f"written by this project's training or the authors' code")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling errors are diverse; all mean the same to the user
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"could not load {path} safely as a checkpoint ({reason}); the file is truncated, "
                              f"not a checkpoint, or holds objects other than weights") from e
    if not isinstance(obj, dict) or "model_pos" not in obj:
        raise CheckpointError(f"{path} is not a D3DP checkpoint: expected a dict with a 'model_pos' entry, "
                              f"got {type(obj).__name__} with keys {list(obj)[:8] if isinstance(obj, dict) else '-'}")
    return obj


def config_from_checkpoint(ckpt: dict, path="checkpoint") -> DenoiserConfig:
    """The DenoiserConfig stored in one of our checkpoints, checked field by field."""
    stored = ckpt.get("model_config")
    fields = {f.name: f.type for f in dataclasses.fields(DenoiserConfig)}
    edited = "the file was edited or damaged: use an unedited copy"
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path} has no model_config dict (found {type(stored).__name__}); {edited}")
    unknown = sorted(set(stored) - set(fields))
    missing = [k for k in ("frames", "channels", "depth") if k not in stored]
    if unknown or missing:
        raise CheckpointError(f"{path}: model_config has unknown fields {unknown} / lacks {missing} "
                              f"(expected {sorted(fields)}); {edited}")
    values = {}
    for name, value in stored.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if fields[name] == "str":
            if not (isinstance(value, str) and value in INPUT_MAPS):
                raise CheckpointError(f"{path}: model_config {name} = {value!r} is not one of "
                                      f"{sorted(INPUT_MAPS)}; {edited}")
            values[name] = value
            continue
        if fields[name] == "int":
            ok = number and value == int(value) and value >= 1
        else:
            ok = number and (0 <= value < 1 if name == "drop_path" else value > 0)
        if not ok:
            raise CheckpointError(f"{path}: model_config {name} = {value!r} is not a valid value; {edited}")
        values[name] = int(value) if fields[name] == "int" else float(value)
    cfg = DenoiserConfig(**values)
    if cfg.channels % cfg.heads:
        raise CheckpointError(f"{path}: model_config channels {cfg.channels} is not a multiple of heads "
                              f"{cfg.heads}; {edited}")
    return cfg


def is_authors_format(ckpt: dict) -> bool:
    return ckpt.get("format") != FORMAT


def infer_config(state: dict, heads: int = 8, mlp_ratio: float | None = None) -> DenoiserConfig:
    """Architecture implied by an (our-names) state dict's shapes."""
    try:
        return config_of_state_dict(state, heads, mlp_ratio)
    except KeyError as e:
        raise CheckpointError(f"checkpoint weights lack {e}: not a D3DP denoiser") from e


def check_architecture(path, expected: dict, found: DenoiserConfig) -> None:
    """A CheckpointError naming the flags that fit when `found` differs from the architecture
    fields in `expected` (DenoiserConfig names -> values)."""
    diffs = [(name, want, getattr(found, name)) for name, want in expected.items()
             if name in ARCHITECTURE_FIELDS and getattr(found, name) != want]
    if diffs:
        have = ", ".join(f"{ARCHITECTURE_FIELDS[n][1]} {w}" for n, w, _ in diffs)
        need = " ".join(f"{ARCHITECTURE_FIELDS[n][1]} {f}" for n, _, f in diffs)
        raise CheckpointError(f"{path} was trained with a different architecture than the flags ask "
                              f"for ({have}). Run with `{need}` to match the file.")


def load_denoiser(path, expected: DenoiserConfig | dict | None = None, heads: int = 8, map_location="cpu"):
    """Load a denoiser from our checkpoint or the authors'; the architecture comes from the file.

    expected: the architecture the command line asks for (a DenoiserConfig, or a dict of the
    fields given); a file that does not fit raises CheckpointError naming the flags that would.
    Returns (model, checkpoint dict).
    """
    if isinstance(expected, DenoiserConfig):
        heads = expected.heads
        expected = {k: getattr(expected, k) for k in ARCHITECTURE_FIELDS}
    ckpt = safe_load(path, map_location)
    if is_authors_format(ckpt):
        state = from_authors_state_dict(ckpt["model_pos"])
        found = infer_config(state, heads=heads)
    else:
        state = dict(ckpt["model_pos"])
        found = config_from_checkpoint(ckpt, path)
    check_architecture(path, expected or {}, found)
    model = Denoiser(found)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # tensor sizes that do not fit the stored architecture
        detail = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e)[:200])
        raise CheckpointError(f"{path}: the weights do not fit the stored architecture ({detail}); "
                              f"the file was edited or damaged: use an unedited copy") from e
    if missing or unexpected:
        raise CheckpointError(f"{path} does not fit the denoiser: missing keys {missing[:6]}, "
                              f"unexpected keys {unexpected[:6]}")
    return model, ckpt


# Our temporary files: '<name>.<8 random characters>.tmp' (tempfile.mkstemp's pattern).
_TEMP_PATTERN = re.compile(r"^(?P<name>.+\.bin)\.[A-Za-z0-9_]{8}\.tmp$")


def remove_stale_temp_files(folder, name: str | None = None) -> list[Path]:
    """Delete the temporary files an interrupted atomic_save left in folder (only ours: matching
    '<name>.XXXXXXXX.tmp' for a .bin name; just those of `name` when given). Returns them."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TEMP_PATTERN.match(entry.name)
        if match and (name is None or match["name"] == name) and entry.is_file():
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                pass
    return removed


def atomic_save(obj, path) -> None:
    """torch.save to a temporary file in the same folder ('<name>.XXXXXXXX.tmp'), synced, then
    renamed over the target (common.storage.files.atomic_files), so a crash mid-save never leaves a
    half-written file under the final name. Temporary files a killed earlier save of the same
    name left behind are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent, path.name)
    try:
        with atomic_files([path], prefix=path.name + ".", suffix=".tmp", fsync=True) as (tmp,):
            with os.fdopen(os.open(tmp, os.O_WRONLY), "wb") as f:
                torch.save(obj, f)
    except (OSError, RuntimeError) as e:             # torch's writer reports a full disk as a RuntimeError
        raise CheckpointWriteError(_write_failure(path, e)) from e


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, lost permissions); the message says what
    was kept."""


def _write_failure(path: Path, error: BaseException) -> str:
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    chain, seen = [], error
    while seen is not None and len(chain) < 10:              # torch's RuntimeError may wrap the OSError
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    if any(getattr(e, "errno", None) == errno.ENOSPC for e in chain) or (free is not None and free < 64 * 2 ** 20):
        reason = f"the disk is full: {free / 2 ** 20:.0f} MB free" if free is not None else "the disk is full"
    else:
        reason = getattr(error, "strerror", None) or str(error).splitlines()[0]
    kept = (f"the previous {path.name} is unchanged (continue from it with -r {path} once the problem is fixed)"
            if path.name == "latest_epoch.bin" and path.is_file() else
            f"the previous {path.name} is unchanged" if path.is_file() else "nothing was written under that name")
    return f"could not write the checkpoint {path} ({reason}); {kept}; free space or choose another -c folder"


def make_checkpoint(model: Denoiser, **state) -> dict:
    """Our checkpoint dict: weights, architecture and whatever training state is given."""
    return {"format": FORMAT, "version": 1, "model_config": model.cfg.to_dict(),
            "model_pos": model.state_dict(), **state}
