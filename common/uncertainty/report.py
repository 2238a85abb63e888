"""How well a calibration of the per-joint uncertainty holds (docs/method.md, 'How sure is each
joint'): the share of errors within their radius, overall and per joint, on all scored frames and
on those the factors were not fitted on; the rank correlation of radius and error; the report's
calibration table and the reliability figure."""
from __future__ import annotations

import math

import numpy as np

from .factors import METHOD, Calibration, radius
from .frames import fitted_mask, usable_frames


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
    from matplotlib.backends.backend_agg import FigureCanvasAgg   # heavy: matplotlib, only for the figure
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
