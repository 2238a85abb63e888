"""Checkpoints: the authors' format loads safely; ours round-trips; mismatches explain themselves."""
import os

import numpy as np
import pytest
import torch

from common.model.checkpoint import CheckpointError, atomic_save, load_denoiser, make_checkpoint, safe_load
from common.model.denoiser import Denoiser, DenoiserConfig, from_authors_state_dict


def test_authors_checkpoint_loads_with_no_missing_or_unexpected_keys(fixture_a):
    cfg, _, folder = fixture_a
    ckpt = safe_load(folder / "checkpoint.bin")
    assert set(ckpt) == {"epoch", "lr", "random_state", "optimizer", "model_pos"}
    assert isinstance(ckpt["random_state"], np.random.RandomState)
    state = from_authors_state_dict(ckpt["model_pos"])
    model = Denoiser(DenoiserConfig(frames=cfg["frames"], channels=cfg["channels"], depth=cfg["depth"]))
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    keys = [line.split()[0] for line in (folder / "state_dict_keys.txt").read_text().splitlines() if line.strip()]
    assert set(keys) == set(ckpt["model_pos"])


def test_architecture_is_inferred_from_authors_file(fixture_a):
    cfg, _, folder = fixture_a
    model, _ = load_denoiser(folder / "checkpoint.bin")
    assert (model.cfg.frames, model.cfg.channels, model.cfg.depth) == (cfg["frames"], cfg["channels"], cfg["depth"])


def test_mismatched_flags_name_the_flags_that_fit(fixture_a):
    cfg, _, folder = fixture_a
    with pytest.raises(CheckpointError) as e:
        load_denoiser(folder / "checkpoint.bin", DenoiserConfig(frames=243, channels=512, depth=8))
    msg = str(e.value)
    assert f"-f {cfg['frames']}" in msg and f"-cs {cfg['channels']}" in msg and f"-dep {cfg['depth']}" in msg


def test_numpy1_pickle_spelling_is_accepted(fixture_a, tmp_path):
    """The authors' released files were written by numpy 1.x: 'numpy.core.multiarray'."""
    _, _, folder = fixture_a
    import zipfile
    src = zipfile.ZipFile(folder / "checkpoint.bin")
    out = tmp_path / "old_numpy.bin"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(info, data)
    ckpt = safe_load(out)
    assert isinstance(ckpt["random_state"], np.random.RandomState)


def test_arbitrary_code_in_a_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    path = tmp_path / "evil.bin"
    torch.save({"model_pos": {}, "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="could not load"):
        safe_load(path)


def test_missing_file_and_non_checkpoint_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        safe_load(tmp_path / "nope.bin")
    torch.save({"weights": 1}, tmp_path / "other.bin")
    with pytest.raises(CheckpointError, match="model_pos"):
        safe_load(tmp_path / "other.bin")


def test_our_format_round_trips_with_its_config(tmp_path):
    cfg = DenoiserConfig(frames=3, channels=16, depth=2, heads=2)
    model = Denoiser(cfg)
    atomic_save(make_checkpoint(model, epoch=4, random_state=np.random.RandomState(5)), tmp_path / "c.bin")
    loaded, ckpt = load_denoiser(tmp_path / "c.bin")
    assert loaded.cfg == cfg and ckpt["epoch"] == 4
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_atomic_save_leaves_the_old_file_intact_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "best.bin"
    atomic_save({"model_pos": {"a": torch.ones(2)}}, path)

    def broken_save(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"model_pos": {"a": torch.zeros(2)}}, path)
    monkeypatch.undo()
    assert torch.equal(safe_load(path)["model_pos"]["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["best.bin"]


def test_a_full_disk_during_a_save_is_a_clear_error_and_keeps_the_previous_file(tmp_path, monkeypatch):
    """The file system says ENOSPC after the first 1000 bytes of the new checkpoint (torch's
    writer turns that into a RuntimeError): an OSError naming the full disk, the old file intact."""
    import errno

    from common.model.checkpoint import CheckpointWriteError

    path = tmp_path / "latest_epoch.bin"
    atomic_save({"model_pos": {"a": torch.ones(2)}}, path)
    fdopen = os.fdopen

    class FullDisk:
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 1000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(fdopen(fd, mode)))
    with pytest.raises(CheckpointWriteError, match="the disk is full") as failure:
        atomic_save({"model_pos": {"a": torch.zeros(100_000)}}, path)
    monkeypatch.undo()
    assert isinstance(failure.value, OSError) and f"continue from it with -r {path}" in str(failure.value)
    assert torch.equal(safe_load(path)["model_pos"]["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["latest_epoch.bin"]


# ---------------------------------------------------------------------------- numpy 1 and numpy 2

class _Numpy1RandomState:
    """Pickles as numpy 1.x pickles a RandomState: the bit generator by name, then the state.
    Lets a numpy-2 environment write the other numpy's form (numpy 1 writes it natively)."""

    def __init__(self, state: dict):
        self.state = state

    def __reduce__(self):
        from numpy.random import _pickle
        return getattr(_pickle, "__randomstate_ctor"), ("MT19937",), self.state


def _resaved_state_round_trip(ckpt: dict, tmp_path, name: str) -> dict:
    """Save a loaded checkpoint again (what --calibrate and every resumed run's epoch do), load
    that, and check its RandomState is numpy's own, equal to the one loaded and drawing alike."""
    loaded = ckpt["random_state"]
    assert type(loaded._bit_generator) is np.random.MT19937     # never the unpickling helper class
    atomic_save(ckpt, tmp_path / name)
    again = safe_load(tmp_path / name)["random_state"]
    expected, got = loaded.get_state(), again.get_state()
    assert expected[0] == got[0] and np.array_equal(expected[1], got[1]) and expected[2:] == got[2:]
    assert np.array_equal(loaded.permutation(50), again.permutation(50))
    return again


def test_an_authors_checkpoint_loaded_under_this_numpy_saves_again(fixture_a, tmp_path):
    """The authors' file holds numpy 2's pickle of a RandomState; under numpy 2 a re-save of the
    loaded dict once died with "Can't pickle local object" (the unpickling class)."""
    _, _, folder = fixture_a
    ckpt = safe_load(folder / "checkpoint.bin")
    again = _resaved_state_round_trip(ckpt, tmp_path, "resaved.bin")
    _resaved_state_round_trip({"model_pos": {}, "random_state": again}, tmp_path, "resaved_twice.bin")


def test_a_numpy1_pickled_random_state_loads_and_saves_again(tmp_path):
    reference = np.random.RandomState(1234)
    reference.permutation(10)
    torch.save({"model_pos": {}, "random_state": _Numpy1RandomState(reference.get_state(legacy=False))},
               tmp_path / "numpy1.bin")
    ckpt = safe_load(tmp_path / "numpy1.bin")
    assert np.array_equal(ckpt["random_state"].permutation(50), _advanced(1234, 10).permutation(50))
    _resaved_state_round_trip(safe_load(tmp_path / "numpy1.bin"), tmp_path, "resaved.bin")


def _advanced(seed: int, draws: int) -> np.random.RandomState:
    rs = np.random.RandomState(seed)
    rs.permutation(draws)
    return rs
