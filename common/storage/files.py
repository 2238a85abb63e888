"""Output folders and files: checked for writing before long work starts; written all or
nothing (atomic_files); a finished run is never overwritten by a new one; an interrupted run
says how to continue."""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path

RUN_FILES = ("latest_epoch.bin", "best_epoch.bin")


def check_writable(folder, flag: str = "-c/--checkpoint") -> Path:
    """Create folder if needed and write (then delete) a probe file in it; raise ValueError
    naming the flag when that fails, so no long run starts that could not save its results."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ValueError(f"cannot write to {folder} ({e.strerror or e}): choose a writable folder with "
                         f"{flag} or fix its permissions") from None
    return folder


def check_writable_file(path, flag: str) -> Path:
    """check_writable for the folder of an output file (and the file itself when it exists)."""
    path = Path(path)
    check_writable(path.parent if str(path.parent) else Path("."), flag)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a file: choose another file name with {flag}")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"cannot overwrite {path} (no write permission): choose another file with {flag}")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def target_name(path) -> str:
    """The name of the file that `path` will become: its own name, or, for a temporary of
    atomic_files ('.<stem>.XXXXXXXX.partial<suffix>'), its target's (for formats that name
    themselves inside, such as a .trc header)."""
    name = Path(path).name
    temporary = re.fullmatch(r"\.(.+)\.[a-z0-9_]{8}\.partial(\.[^.]*)?", name)
    return temporary.group(1) + (temporary.group(2) or "") if temporary else name


@contextlib.contextmanager
def atomic_files(paths, prefix: str | None = None, suffix: str | None = None, fsync: bool = False):
    """Write files all or nothing: yields one temporary path per target, in the target's folder
    ('.<stem>.XXXXXXXX.partial<suffix>' unless prefix / suffix are given); when the block ends
    without an error each is given the permissions of a new file (0666 less the umask), synced to
    disk with fsync, and renamed over its target. On any error, an interrupt included, the
    temporary files are removed and no target is changed."""
    paths = [Path(p) for p in paths]
    temps = []
    try:
        for p in paths:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}." if prefix is None else prefix,
                                       suffix=f".partial{p.suffix}" if suffix is None else suffix, dir=p.parent)
            os.close(fd)
            temps.append(Path(tmp))
        yield temps
        for tmp, p in zip(temps, paths):
            os.chmod(tmp, 0o666 & ~_umask())
            if fsync:
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
            os.replace(tmp, p)
    finally:
        for tmp in temps:
            if tmp.exists():
                tmp.unlink()


def previous_run_files(folder) -> list[Path]:
    """The checkpoints of an earlier training run in folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    named = [folder / n for n in RUN_FILES if (folder / n).is_file()]
    return named + sorted(folder.glob("epoch_*.bin")) if named else []


def guard_previous_run(folder, resume: str = "", overwrite: bool = False, log=print) -> Path | None:
    """Before a training run writes into folder: refuse when it holds another run's checkpoints,
    unless the run resumes from that folder or --overwrite is given; with --overwrite the old
    checkpoints are moved to a time-stamped subfolder (returned), never deleted."""
    folder = Path(folder)
    found = previous_run_files(folder)
    if not found:
        return None
    if resume and Path(resume).resolve().parent == folder.resolve():
        return None
    if not overwrite:
        raise ValueError(f"{folder} holds the checkpoints of an earlier run ({', '.join(f.name for f in found[:3])}"
                         f"{', ...' if len(found) > 3 else ''}): continue it with -r {folder / found[0].name}, "
                         f"start anew with --overwrite (the old files are moved aside, not deleted), or choose "
                         f"another -c folder")
    backup = folder / time.strftime("previous-%Y%m%d-%H%M%S")
    suffix = 1
    while backup.exists():
        backup = backup.with_name(f"{backup.name.split('.')[0]}.{suffix}")
        suffix += 1
    backup.mkdir()
    for f in found:
        f.rename(backup / f.name)
    log(f"--overwrite: moved the earlier run's {len(found)} checkpoint file(s) to {backup}")
    return backup


# What an interrupt should tell the user; set by the long-running step in progress.
_interrupt_hint = {"text": ""}


def set_interrupt_hint(text) -> None:
    """text: a string, or a function returning one when the interrupt comes."""
    _interrupt_hint["text"] = text


def interrupt_hint() -> str:
    hint = _interrupt_hint["text"]
    return hint() if callable(hint) else hint
