"""One training run per folder: a lock on the -c folder, held for the run's lifetime.

The lock is an exclusive `flock` on the file `.d3dp-run.lock` in the folder; the process
holding it writes its process id, host, start time and command line into it, which is what a
refused second run reports. The kernel drops the lock when the process ends in any way (a
crash, SIGKILL, the out-of-memory killer), so a killed run never leaves the folder locked;
the file itself stays (removing it would let two runs lock two different files).

Network file systems: Linux's NFS client implements flock with NFS byte-range locks (NFSv4,
or NFSv3 with a lock daemon), so two runs on two hosts exclude each other as well. Where the
file system supports no locking at all (flock fails with ENOLCK, ENOTSUP or ENOSYS), the run
goes on unlocked and a warning says that a second run in the same folder would not be refused.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".d3dp-run.lock"
_UNSUPPORTED = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


class FolderInUse(ValueError):
    """Another live process holds the folder's lock."""


def owner_text(pid: int | None = None) -> str:
    """What the lock file says about its holder: one line."""
    argv = " ".join(sys.argv) or "python"
    return (f"pid {pid or os.getpid()} on host {socket.gethostname()}, started "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')} ({argv})")


@contextmanager
def run_lock(folder, what: str = "training run", warn=None):
    """Hold the lock of folder (created if needed) while the block runs; raise FolderInUse
    naming the holder when another process has it. warn(text): where to say that locking is
    not supported here (default: stderr)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    locked = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except BlockingIOError:
            holder = _holder(fd) or "a process that wrote nothing into the lock file yet"
            raise FolderInUse(f"{folder} is in use by another {what}: {holder}. Wait for it to end (or stop it), "
                              f"or choose another -c folder; two runs in one folder would overwrite each "
                              f"other's checkpoints") from None
        except OSError as e:
            if e.errno not in _UNSUPPORTED:
                raise
            (warn or (lambda t: print(t, file=sys.stderr)))(
                f"warning: {folder} cannot be locked ({e.strerror}; a file system without locking): a second "
                f"run started into it would not be refused")
        if locked:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (owner_text() + "\n").encode(), 0)
        yield path
    finally:
        if locked:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _holder(fd: int, wait_s: float = 1.0) -> str:
    """The holder's line; a process that has just taken the lock writes it a moment later."""
    deadline = time.monotonic() + wait_s
    text = _read(fd)
    while not text and time.monotonic() < deadline:
        time.sleep(0.05)
        text = _read(fd)
    return text


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 4096, 0).decode(errors="replace").strip()
    except OSError:
        return ""
