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
they come straight from sampling.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch

from . import aggregation as agg
from .device import to_host

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
                   modes=("J-Agg",)):
    """The last iteration of hypotheses (B, K, H, F, J, 3): the poses {mode: (B, F, J, 3)} of
    the given lifting modes (J-Agg always among them) and the spread (B, F, J) around J-Agg,
    metres; the spread is NaN for a single hypothesis."""
    last = hyps[:, -1:]
    poses = {m: p[:, 0] for m, p in agg.aggregate(last, None, x2d, traj, cam, modes=("J-Agg", *modes)).items()}
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


# ---------------------------------------------------------------------------- per-frame records

@dataclass
class FrameRecords:
    """Per frame of one sequence (each frame once, from the first window covering it, as
    --exact-frames counts): spread and error (N, J) metres, and with poses the pose of every
    lifting mode (common.aggregation.LIFTING_MODES: J-Agg, P-Agg, ...) (N, J, 3) metres
    root-relative, of the last sampling iteration."""

    spread: np.ndarray
    error: np.ndarray
    seen: np.ndarray                  # (N,) bool: written (every frame, once evaluation is complete)
    poses: dict | None = None         # mode -> (N, J, 3)

    @classmethod
    def empty(cls, frames: int, joints: int, poses: bool = False) -> "FrameRecords":
        z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
        return cls(z(frames, joints), np.full((frames, joints), np.nan, np.float32), np.zeros(frames, bool),
                   {m: z(frames, joints, 3) for m in agg.LIFTING_MODES} if poses else None)

    @property
    def j_agg(self) -> np.ndarray | None:
        return None if self.poses is None else self.poses["J-Agg"]

    @property
    def p_agg(self) -> np.ndarray | None:
        return None if self.poses is None else self.poses["P-Agg"]

    def arrays(self) -> list[tuple[str, np.ndarray]]:
        """Every per-frame array (frame axis 0), named, in a fixed order."""
        return [("spread", self.spread), ("error", self.error), ("seen", self.seen),
                *((f"poses/{m}", a) for m, a in (self.poses or {}).items())]

    def zeros_like(self) -> "FrameRecords":
        return FrameRecords(np.zeros_like(self.spread), np.zeros_like(self.error), np.zeros_like(self.seen),
                            None if self.poses is None else {m: np.zeros_like(a) for m, a in self.poses.items()})

    def add(self, hyps: torch.Tensor, x2d, gt, traj, cam, windows: np.ndarray, new: np.ndarray) -> None:
        """Record a group: hyps (n, K, H, F, J, 3) root-relative, the J-Agg target x2d, gt
        (n, F, J, 3) or None, the group's windows and their first-cover mask new (n, F)."""
        poses, spread = last_iteration(hyps, x2d, traj, cam, tuple(self.poses or ()))
        arrays = {"spread": spread}
        if gt is not None:
            arrays["error"] = torch.linalg.vector_norm(poses["J-Agg"] - gt, dim=-1)
        if self.poses is not None:
            arrays.update({f"poses/{m}": p for m, p in poses.items()})
        arrays = to_host(arrays)                                   # one transfer
        named = dict(self.arrays())
        for i, (frames, slots) in enumerate(zip(windows, new)):
            for name, a in arrays.items():
                named[name][frames[slots]] = a[i][slots]
            self.seen[frames[slots]] = True


# ---------------------------------------------------------------------------- calibration split

def recording_of(seq) -> tuple:
    """The recording a sequence view belongs to: all cameras of one subject's action."""
    return (seq.subject, seq.action)


def calibration_split(sequences) -> tuple[list[np.ndarray], str]:
    """Which frames fit the factors: every other recording (subject, action; all its camera
    views together, sorted by name) when there are at least two, else the first half of each
    sequence's frames. Returns a (N,) bool mask per sequence and a description."""
    recordings = sorted({recording_of(s) for s in sequences})
    if len(recordings) >= 2:
        fit = set(recordings[::2])
        masks = [np.full(s.num_frames, recording_of(s) in fit) for s in sequences]
        return masks, (f"every other recording ({len(fit)} of {len(recordings)} subject/action pairs, all their "
                       f"cameras), the others held out")
    masks = [np.arange(s.num_frames) < s.num_frames // 2 for s in sequences]
    return masks, "the first half of the frames of the one recording; the second half held out"


def frame_ranges(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True in a (N,) mask as [start, stop) pairs."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def fingerprint(seq) -> str:
    """Identifies a sequence by content (its 2D input), so that the frames a calibration was
    fitted on are recognised in any later evaluation, whatever the data set is called."""
    x = np.ascontiguousarray(seq.pose_2d, dtype=np.float32)
    return f"{seq.name}:{x.shape[0]}:{zlib.crc32(x.tobytes()):08x}"


def fitted_mask(calibration: Calibration | None, seq) -> np.ndarray:
    """(N,) bool: the frames of seq the calibration was fitted on."""
    mask = np.zeros(seq.num_frames, bool)
    if calibration is None:
        return mask
    key = fingerprint(seq)
    for seq_key, start, stop in calibration.fitted_on.get("frames", []):
        if seq_key == key:
            mask[int(start):int(stop)] = True
    return mask


def fit_from_results(results, masks: list[np.ndarray], fitted_on: dict) -> Calibration:
    """Fit on the frames of masks (one per result) that are scored: written, labelled, valid."""
    err, spr, frames = [], [], []
    for r, m in zip(results, masks):
        use = m & usable_frames(r)
        err.append(r.frames.error[use])
        spr.append(r.frames.spread[use])
        frames += [[fingerprint(r.sequence), a, b] for a, b in frame_ranges(m)]
    return fit_calibration(np.concatenate(err), np.concatenate(spr), {**fitted_on, "frames": frames})


def usable_frames(result) -> np.ndarray:
    """(N,) frames that count in calibration: recorded, with ground truth, valid."""
    rec = result.frames
    ok = rec.seen & ~np.isnan(rec.error).any(axis=1)
    if result.sequence.valid is not None:
        ok &= np.asarray(result.sequence.valid, bool)
    return ok


# ---------------------------------------------------------------------------- measuring it

def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (ties get their average rank); NaN when either is constant."""
    rx, ry = _ranks(np.asarray(x, np.float64).ravel()), _ranks(np.asarray(y, np.float64).ravel())
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]]))
    counts = np.diff(np.concatenate([starts, [len(x)]]))
    average = starts + (counts - 1) / 2.0                    # 0-based average rank of each tie block
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(average, counts)
    return ranks


def coverage_stats(error: np.ndarray, rad: np.ndarray) -> dict:
    """Share of (frame, joint) errors within their radius, and the rank correlation."""
    n = int(error.size)
    return {"frames": int(error.shape[0]), "coverage": float((error <= rad).mean()) if n else math.nan,
            "rank_correlation": rank_correlation(rad, error) if n else math.nan,
            "mean_radius_mm": float(1000 * rad.mean()) if n else math.nan,
            "mean_error_mm": float(1000 * error.mean()) if n else math.nan}


def evaluate_calibration(results, calibration: Calibration | None, coverage: float, joint_names=None) -> dict:
    """The calibration block of an evaluation report: for all scored frames and for those the
    factors were not fitted on ('held_out'), the share of joints within their radius (overall
    and per joint) and the rank correlation between radius and error. The root joint (error
    0 by construction) is left out of the overall numbers."""
    parts = {"all": ([], []), "held_out": ([], [])}
    roots = set()
    for r in results:
        use = usable_frames(r)
        rad = radius(r.frames.spread, calibration, coverage)
        held = use & ~fitted_mask(calibration, r.sequence)
        for key, m in (("all", use), ("held_out", held)):
            parts[key][0].append(r.frames.error[m])
            parts[key][1].append(rad[m])
        roots.add(r.sequence.root_index)
    out = {"coverage_stated": coverage, "calibrated": calibration is not None,
           "factors": ([round(float(v), 4) for v in calibration.factors(coverage)] if calibration else None),
           "fitted_on": calibration.describe() if calibration else "uncalibrated: the radius is the raw spread",
           "method": METHOD}
    for key, (errs, rads) in parts.items():
        if not errs:
            continue
        e, rd = np.concatenate(errs), np.concatenate(rads)
        if len(e) == 0:
            out[key] = None
            continue
        joints = [j for j in range(e.shape[1]) if j not in roots]
        block = coverage_stats(e[:, joints], rd[:, joints])
        block["joints"] = {(joint_names[j] if joint_names else str(j)): {
            "coverage": float((e[:, j] <= rd[:, j]).mean()), "mean_radius_mm": float(1000 * rd[:, j].mean()),
            "mean_error_mm": float(1000 * e[:, j].mean())} for j in joints}
        out[key] = block
    return out


def _part_title(label: str, frames: int) -> str:
    return f"{label} ({frames} frames)"


def format_calibration(block: dict) -> str:
    """The calibration table of the printed report: per joint and overall, the share of
    errors within their radius, the mean radius and error; the rank correlation."""
    p = block["coverage_stated"]
    title = (f"Uncertainty: radius for {p:.0%} coverage, factors {block['fitted_on']}" if block["calibrated"]
             else f"Uncertainty, uncalibrated (the radius is the raw spread of the hypotheses; stated {p:.0%} "
                  f"needs factors: --calibrate)")
    all_, held = block.get("all"), block.get("held_out")
    if not all_:
        return f"{title}\n(no labelled frames)"
    if not block["calibrated"] or (held and held["frames"] == all_["frames"]):
        parts, note = [("all", "")], ("the factors were fitted on none of these frames" if block["calibrated"] else "")
    elif not held:
        parts, note = [("all", "")], "in-sample: the factors were fitted on all of these frames"
    else:
        parts, note = [("held_out", "not fitted on"), ("all", "all")], ""
    lines = [title, f"{'':<16}" + "".join(f"{_part_title(label or key, block[key]['frames']):>22}"
                                          for key, label in parts),
             f"{'joint':<16}" + f"{'within %':>11}{'radius mm':>11}" * len(parts) + f"{'error mm':>10}"]
    for name in all_["joints"]:
        row = f"{name:<16}"
        for key, _ in parts:
            j = block[key]["joints"][name]
            row += f"{100 * j['coverage']:>11.1f}{j['mean_radius_mm']:>11.1f}"
        lines.append(row + f"{all_['joints'][name]['mean_error_mm']:>10.1f}")
    row = f"{'all joints':<16}"
    for key, _ in parts:
        row += f"{100 * block[key]['coverage']:>11.1f}{block[key]['mean_radius_mm']:>11.1f}"
    lines.append(row + f"{all_['mean_error_mm']:>10.1f}")
    lines.append("rank correlation of radius and error: " + ", ".join(
        f"{block[key]['rank_correlation']:.3f} ({label or 'all'})" for key, label in parts))
    if note:
        lines.append(f"({note})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- figure

def reliability_curve(error: np.ndarray, spread: np.ndarray, calibration: Calibration,
                      levels=(0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)) -> tuple[np.ndarray, np.ndarray]:
    """Observed coverage (share of errors within their radius) at each stated coverage, for
    (n, J) errors and spreads (frames the factors were not fitted on)."""
    observed = [float((error <= radius(spread, calibration, p)).mean()) for p in levels]
    return np.asarray(levels), np.asarray(observed)


def plot_reliability(out_png, error: np.ndarray, spread: np.ndarray, calibration: Calibration | None,
                     title: str = "", dpi: int = 120):
    """Two panels: stated against observed coverage (the reliability diagram; needs factors),
    and the error against the spread, binned by spread deciles with the 90% radius; error and
    spread (n, J) metres, the root joint left out by the caller."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), dpi=dpi)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    if calibration is not None:
        stated, observed = reliability_curve(error, spread, calibration)
        left.plot([0.45, 1], [0.45, 1], color="0.6", ls="--", label="perfect calibration")
        left.plot(stated, observed, marker="o", label="calibrated radius")
    raw = float((error <= spread).mean())
    left.axhline(raw, color="tab:red", lw=1, label=f"raw spread as radius: {raw:.0%}")
    left.set_xlabel("stated coverage P")
    left.set_ylabel("observed share of joints within radius")
    left.set_xlim(0.45, 1.0)
    left.set_ylim(0, 1.0)
    left.grid(alpha=0.3)
    left.legend(loc="lower right", fontsize="small")
    left.set_title("reliability")
    s, e = 1000 * spread.ravel(), 1000 * error.ravel()
    edges = np.quantile(s, np.linspace(0, 1, 11))
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, 9)
    centre = [np.median(s[which == b]) for b in range(10)]
    right.scatter(s[::max(1, len(s) // 4000)], e[::max(1, len(s) // 4000)], s=3, alpha=0.25, color="0.5",
                  label="(frame, joint)")
    right.plot(centre, [np.median(e[which == b]) for b in range(10)], marker="o", label="median error per decile")
    right.plot(centre, [np.quantile(e[which == b], 0.9) for b in range(10)], marker="s",
               label="90th percentile of error")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("spread of the hypotheses (mm)")
    right.set_ylabel("J-Agg error (mm)")
    right.grid(alpha=0.3, which="both")
    right.legend(loc="upper left", fontsize="small")
    right.set_title(f"spread vs error (rank correlation {rank_correlation(s, e):.2f})")
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(out_png)
    return out_png
