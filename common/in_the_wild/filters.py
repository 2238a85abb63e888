"""Optional smoothing of a lifted clip over time (`main_in_the_wild.py --filter NAME[:key=value,...]`).

Every filter runs along the frames of (N, ...) arrays, each coordinate on its own, with its
parameters in frames or in Hz (the clip's frame rate turns one into the other):

- butterworth: zero-phase low-pass (scipy.signal.butter + filtfilt), cutoff Hz (default 6),
  order (default 4); offline: each frame sees the past and the future.
- savgol: Savitzky-Golay (scipy.signal.savgol_filter), window frames (odd, default 9),
  order of the polynomial (default 2); offline.
- one-euro: the One-Euro filter (Casiez et al., CHI 2012), causal (each frame from the past only,
  as a live stream needs): min_cutoff Hz (default 1), beta (default 0.01, per metre/second: how
  fast the cutoff rises with speed), d_cutoff Hz (default 1).

None is on by default: T-Agg's pose is steady without them. A filter smooths the joints (root-relative)
and the root trajectory alike, so the bones' lengths are no longer exactly constant.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import numpy as np


def butterworth(x: np.ndarray, fps: float, cutoff: float = 6.0, order: int = 4) -> np.ndarray:
    from scipy.signal import butter, filtfilt

    nyquist = fps / 2
    if not 0 < cutoff < nyquist:
        raise ValueError(f"butterworth cutoff={cutoff} Hz must lie between 0 and half the frame rate ({nyquist:g} Hz)")
    b, a = butter(int(order), cutoff / nyquist)
    pad = min(3 * max(len(a), len(b)), len(x) - 1)
    return filtfilt(b, a, x, axis=0, padlen=pad) if pad > 0 else x.copy()


def savgol(x: np.ndarray, fps: float, window: int = 9, order: int = 2) -> np.ndarray:
    from scipy.signal import savgol_filter

    window = int(window)
    if window < 3 or window % 2 == 0:
        raise ValueError(f"savgol window={window} must be an odd number of frames, 3 or more")
    if int(order) >= window:
        raise ValueError(f"savgol order={order} must be below the window ({window} frames)")
    if len(x) < window:
        return x.copy()
    return savgol_filter(x, window, int(order), axis=0, mode="interp")


class OneEuro:
    """The One-Euro filter one frame at a time, for any array shape (the state of one_euro):
    call it with each frame and the seconds since the previous one (a dropped frame makes it
    longer); a live stream smooths its frames with it as they arrive."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.01, d_cutoff: float = 1.0):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("one-euro needs min_cutoff > 0 Hz, d_cutoff > 0 Hz and beta >= 0")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.previous = self.speed = None

    def __call__(self, x: np.ndarray, dt: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.previous is None:
            self.previous, self.speed = x, np.zeros_like(x)
            return x
        rate = 1.0 / dt
        a_d = 1.0 / (1.0 + rate / (2 * math.pi * self.d_cutoff))
        self.speed = a_d * (x - self.previous) * rate + (1 - a_d) * self.speed     # smoothed derivative, units/s
        cutoff = self.min_cutoff + self.beta * np.abs(self.speed)
        a = 1.0 / (1.0 + rate / (2 * math.pi * cutoff))
        self.previous = a * x + (1 - a) * self.previous
        return self.previous


def one_euro(x: np.ndarray, fps: float, min_cutoff: float = 1.0, beta: float = 0.01,
             d_cutoff: float = 1.0) -> np.ndarray:
    step = OneEuro(min_cutoff, beta, d_cutoff)
    out = np.empty_like(x, dtype=np.float64)
    for i in range(len(x)):
        out[i] = step(x[i], 1.0 / fps)
    return out


FILTERS = {"butterworth": butterworth, "savgol": savgol, "one-euro": one_euro}


@dataclass(frozen=True)
class Filter:
    """A filter by name with its parameters (FILTERS; parse() reads the command line's form)."""

    name: str
    params: tuple = ()

    @classmethod
    def parse(cls, spec: str) -> "Filter":
        """'butterworth', 'butterworth:cutoff=4,order=2', 'savgol:window=11', 'one-euro:beta=0.1'."""
        name, _, rest = spec.partition(":")
        name = name.strip().lower().replace("_", "-")
        if name not in FILTERS:
            raise ValueError(f"unknown filter {name!r}: choose from {', '.join(FILTERS)} "
                             f"(e.g. butterworth:cutoff=6,order=4)")
        params = []
        for item in filter(None, (s.strip() for s in rest.split(","))):
            key, eq, value = item.partition("=")
            allowed = list(inspect.signature(FILTERS[name]).parameters)[2:]      # after x and fps
            if not eq or key not in allowed:
                raise ValueError(f"filter {name}: {item!r} is not key=value with a key among {', '.join(allowed)}")
            try:
                params.append((key, float(value)))
            except ValueError:
                raise ValueError(f"filter {name}: {key}={value!r} is not a number") from None
        return cls(name, tuple(params))

    def __call__(self, x: np.ndarray, fps: float) -> np.ndarray:
        return FILTERS[self.name](np.asarray(x, np.float64), float(fps), **dict(self.params)).astype(np.float32)

    def describe(self) -> str:
        return self.name + ("" if not self.params else "(" + ", ".join(f"{k}={v:g}" for k, v in self.params) + ")")


def smooth_result(result, spec: Filter, fps: float | None = None) -> None:
    """Filter a lifted clip (result.WildResult) in place: every lifting mode's pose and the root
    trajectory, at the clip's frame rate (the video's, else fps, else 25)."""
    rate = result.fps or fps or 25.0
    result.poses = {m: spec(p, rate) for m, p in result.poses.items()}
    result.trajectory = spec(result.trajectory, rate)
    result.filter = f"{spec.describe()} at {rate:g} fps"
