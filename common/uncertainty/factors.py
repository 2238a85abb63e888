"""Per-joint uncertainty from the spread of the H hypotheses (docs/method.md, 'How sure is
each joint').

For every frame and joint, the spread is the median distance of the last iteration's H
hypotheses to the J-Agg joint (one of them is the J-Agg joint itself, at distance 0). The
uncertainty is a radius r = c_j x max(spread, 0.1 mm) such that the J-Agg joint lies within r
of the true joint with a stated probability P (90% by default). The per-joint factor c_j is
fitted split-conformal style on labelled frames held back from the frames it is reported on:
c_j is the ceil((n + 1) P)-th smallest of the n scores error / max(spread, 0.1 mm) of joint j.
Without factors the raw spread is the radius, named uncalibrated.

Arrays here are plain numpy (metres inside, millimetres in reports and files) or torch where
they come straight from sampling. The per-frame records of an evaluation and the frames a
calibration is fitted on are in frames.py; how well a calibration covers the
errors (the report's table, the reliability figure) in report.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..inference import aggregation as agg

DEFAULT_COVERAGE = 0.9
MIN_SPREAD_M = 1e-4                               # spreads below 0.1 mm count as 0.1 mm
METHOD = "median-distance-to-J-Agg x per-joint split-conformal factor"
# The coverages whose factors a fitted calibration stores: 0.01, 0.02, ..., 0.99.
LEVELS = tuple(round(0.01 * i, 2) for i in range(1, 100))


class UncertaintyError(ValueError):
    """Uncertainty that cannot be computed or a stored calibration that cannot be used."""


def check_coverage(p: float, flag: str = "--coverage") -> float:
    p = float(p)
    if not 0 < p < 1:
        raise UncertaintyError(f"{flag} {p}: the stated coverage is a probability strictly between 0 and 1 "
                               f"(e.g. 0.9 for 90%)")
    return p


# ---------------------------------------------------------------------------- spread

def median(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The median along dim (the mean of the two middle values for an even count)."""
    s = x.sort(dim=dim).values
    n = s.shape[dim]
    lo = s.narrow(dim, (n - 1) // 2, 1)
    hi = s.narrow(dim, n // 2, 1)
    return ((lo + hi) / 2).squeeze(dim)


def hypothesis_spread(hyps: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Median distance of the hypotheses (..., H, F, J, 3) to centre (..., F, J, 3) -> (..., F, J)."""
    return median(torch.linalg.vector_norm(hyps - centre.unsqueeze(-4), dim=-1), dim=-3)


def last_iteration(hyps: torch.Tensor, x2d: torch.Tensor, traj: torch.Tensor, cam: torch.Tensor,
                   modes=("J-Agg",), parents=None):
    """The last iteration of hypotheses (B, K, H, F, J, 3): the poses {mode: (B, F, J, 3)} of
    the given lifting modes (J-Agg always among them) and the spread (B, F, J) around J-Agg,
    metres; the spread is NaN for a single hypothesis."""
    last = hyps[:, -1:]
    wanted = tuple(dict.fromkeys(("J-Agg", *modes)))                  # J-Agg once, even when asked for again
    poses = {m: p[:, 0] for m, p in agg.aggregate(last, None, x2d, traj, cam, modes=wanted, parents=parents).items()}
    j_agg = poses["J-Agg"]
    spread = hypothesis_spread(last[:, 0], j_agg) if hyps.shape[2] >= 2 else torch.full_like(j_agg[..., 0], math.nan)
    return poses, spread


# ---------------------------------------------------------------------------- conformal fitting

def conformal_quantile(scores: np.ndarray, p: float) -> float:
    """The split-conformal quantile of n scores for coverage p: the ceil((n + 1) p)-th smallest
    (infinite when that exceeds n), so that a new exchangeable score falls at or below it with
    probability at least p."""
    scores = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    n = len(scores)
    rank = math.ceil((n + 1) * p - 1e-9)
    if n == 0 or rank > n:
        return math.inf
    return float(scores[max(rank, 1) - 1])


def scores(error: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Nonconformity scores error / max(spread, 0.1 mm) (same shapes, metres)."""
    return np.asarray(error, np.float64) / np.maximum(np.asarray(spread, np.float64), MIN_SPREAD_M)


@dataclass
class Calibration:
    """Per-joint factors: radius_j = factor_j(P) x max(spread_j, 0.1 mm). table[i][j] is the
    factor of joint j for the coverage LEVELS[i] (inf where too few frames bound it); counts[j]
    the frames it was fitted on."""

    table: list                       # (len(LEVELS), J) factors
    counts: list                      # (J,) calibration frames per joint
    fitted_on: dict = field(default_factory=dict)   # data, frames [[name, start, stop]], H, K, note
    levels: tuple = LEVELS

    def factors(self, coverage: float = DEFAULT_COVERAGE) -> np.ndarray:
        """(J,) factors for a coverage: exact at the stored levels, linear between them."""
        coverage = check_coverage(coverage)
        levels = np.asarray(self.levels)
        table = np.asarray(self.table, np.float64)
        if not levels[0] <= coverage <= levels[-1]:
            raise UncertaintyError(f"--coverage {coverage}: the stored calibration covers {levels[0]:g} to "
                                   f"{levels[-1]:g}; refit it for this coverage with --calibrate")
        out = np.array([np.interp(coverage, levels, table[:, j]) for j in range(table.shape[1])])
        if not np.isfinite(out).all():
            raise UncertaintyError(f"--coverage {coverage}: the factors were fitted on {min(self.counts)} frames, too "
                                   f"few to bound {coverage:.0%} of the errors (at least "
                                   f"{math.ceil(coverage / (1 - coverage))} are needed); refit on more frames "
                                   f"with --calibrate or state a lower coverage")
        return out

    def to_checkpoint(self) -> dict:
        """Plain lists, floats and strings (weights_only loading accepts them)."""
        return {"method": METHOD, "levels": [float(v) for v in self.levels],
                "table": [[float(v) for v in row] for row in self.table],
                "counts": [int(c) for c in self.counts], "fitted_on": _plain(self.fitted_on)}

    @classmethod
    def from_checkpoint(cls, ckpt: dict, path="checkpoint") -> "Calibration | None":
        """The calibration stored in a checkpoint dict, or None when it has none."""
        entry = ckpt.get("uncertainty") if isinstance(ckpt, dict) else None
        if entry is None:
            return None
        edited = f"{path}: its 'uncertainty' entry is damaged (the file was edited?); refit with --calibrate"
        try:
            levels = tuple(float(v) for v in entry["levels"])
            table = np.asarray(entry["table"], dtype=np.float64)
            counts = [int(c) for c in entry["counts"]]
        except (KeyError, TypeError, ValueError):
            raise UncertaintyError(edited) from None
        if table.ndim != 2 or table.shape != (len(levels), len(counts)) or np.isnan(table).any() \
                or (table < 0).any() or list(levels) != sorted(levels):
            raise UncertaintyError(edited)
        return cls(table=table.tolist(), counts=counts, fitted_on=dict(entry.get("fitted_on") or {}),
                   levels=levels)

    def describe(self) -> str:
        f = self.fitted_on
        names = {n for n, _, _ in f.get("frames", [])}
        return (f"fitted on {min(self.counts)} frames of {len(names)} sequence{'s' * (len(names) != 1)} of "
                f"{f.get('data', '?')} with H={f.get('hypotheses', '?')} K={f.get('iterations', '?')}"
                + (f" ({f['note']})" if f.get("note") else ""))


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    return obj


def fit_calibration(error: np.ndarray, spread: np.ndarray, fitted_on: dict | None = None) -> Calibration:
    """Factors from calibration frames: error, spread (n, J) metres (rows of all frames used)."""
    error, spread = np.asarray(error), np.asarray(spread)
    if error.shape != spread.shape or error.ndim != 2:
        raise UncertaintyError(f"error {error.shape} and spread {spread.shape} must both be (frames, joints)")
    if len(error) == 0:
        raise UncertaintyError("no labelled frames to fit the uncertainty factors on")
    s = scores(error, spread)
    table = [[conformal_quantile(s[:, j], p) for j in range(s.shape[1])] for p in LEVELS]   # inf: no bound
    return Calibration(table=table, counts=[len(s)] * s.shape[1], fitted_on=dict(fitted_on or {}))


def radius(spread: np.ndarray, calibration: Calibration | None, coverage: float = DEFAULT_COVERAGE) -> np.ndarray:
    """Uncertainty radius (..., J) in the units of spread: factor x max(spread, 0.1 mm), or the
    raw spread without a calibration."""
    spread = np.asarray(spread)
    if calibration is None:
        return spread.astype(np.float32)
    factors = calibration.factors(coverage)
    if factors.shape[0] != spread.shape[-1]:
        raise UncertaintyError(f"the stored calibration has {factors.shape[0]} joints, the poses {spread.shape[-1]}; "
                               f"refit it for this model with --calibrate")
    return (factors * np.maximum(spread, MIN_SPREAD_M)).astype(np.float32)
