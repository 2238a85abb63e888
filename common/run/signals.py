"""SIGTERM and SIGINT end a run the same way: a clean stop with a message saying how to go on.

Cluster schedulers (SLURM, Kubernetes) and torchrun send SIGTERM some seconds before they kill
a job; Ctrl-C sends SIGINT. While `handle_signals()` is active both raise `Interrupted` (a
KeyboardInterrupt), so every `except KeyboardInterrupt` / `finally` on the way out runs, and
the entry point prints its hint and exits with the shell's code for the signal (128 + signal
number: 130 for SIGINT, 143 for SIGTERM). Once the stop has begun, further signals are
ignored until the block ends, so a repeated one cannot cut the clean stop short.

Where stopping half-way would leave things inconsistent (writing a checkpoint and its
companions), code runs inside `deferred()`: a signal arriving there is held and raised when
the block ends. Distributed training holds signals for the whole epoch and lets all ranks
agree at safe points (`stop_requested` + an all-reduce in common.run.train), so that no rank
leaves a collective operation the others are still waiting in.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal (SIGINT or SIGTERM)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_state = {"deferred": 0, "pending": 0, "stopping": 0}


def exit_code(exc: BaseException) -> int:
    """The process exit code for an interrupt: 128 + the signal's number (130 for a plain
    KeyboardInterrupt, which is what SIGINT gives without our handler)."""
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


def signal_name(exc: BaseException) -> str:
    return signal.Signals(exc.signum).name if isinstance(exc, Interrupted) else "SIGINT"


def _handler(signum, frame) -> None:
    if _state["stopping"]:
        return                  # already stopping (torchrun signals the other ranks again when one ends)
    if _state["deferred"]:
        _state["pending"] = _state["pending"] or int(signum)      # the first signal names the stop
        return
    _state["stopping"] = int(signum)
    raise Interrupted(signum)


@contextmanager
def handle_signals(stay_stopped: bool = False):
    """SIGINT and SIGTERM raise Interrupted inside the block; the previous handlers come back
    after it. A signal the process ignores (SIG_IGN, e.g. SIGINT of a job started in the
    background by a non-interactive shell) stays ignored. Outside the main thread (where
    Python cannot set handlers) nothing changes.

    stay_stopped (for entry points, whose process ends after the block): once a stop has
    begun, both signals stay ignored after the block instead of getting their old handlers
    back, so that one arriving while the interpreter shuts down (torchrun signals the other
    ranks when the first one ends) cannot turn the exit code 143 into a death by signal."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in HANDLED:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                previous[sig] = signal.signal(sig, _handler)
    _state.update(deferred=0, pending=0, stopping=0)
    try:
        yield
    finally:
        stopped = stay_stopped and _state["stopping"]
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if stopped else handler)
        _state.update(deferred=0, pending=0, stopping=0)


def stop_requested() -> int:
    """The number of a signal held by deferred() and not yet acted on, else 0."""
    return _state["pending"]


def raise_if_requested(signum: int | None = None) -> None:
    """Act on a held signal (or on signum, e.g. one that another rank received): raise
    Interrupted and forget it."""
    signum = signum or _state["pending"]
    if signum:
        _state.update(pending=0, stopping=signum)
        raise Interrupted(signum)


@contextmanager
def deferred():
    """Hold SIGINT / SIGTERM while the block runs; the stop happens when it ends (at the end
    of the outermost such block), unless an exception is already on its way out."""
    _state["deferred"] += 1
    try:
        yield
    except BaseException:
        _state["deferred"] -= 1
        raise
    _state["deferred"] -= 1
    if not _state["deferred"]:
        raise_if_requested()
