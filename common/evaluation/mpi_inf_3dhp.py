"""MPI-INF-3DHP scoring: a Python port of the dataset's MATLAB test utilities
(mpii_test_predictions, mpii_evaluate_errors, mpii_compute_3d_pck) and the .mat prediction
files they read (inference_data_<MODE>.mat, variables TS1..TS6 of shape (3, 17, N, K) in mm).

Conventions (metadata 'scoring', common/constants/mpi_inf_3dhp.json):
- Prediction and ground truth (annot3, camera space, mm) are both made relative to the pelvis
  (joint 14); the error of a joint is its Euclidean distance; only frames with valid_frame = 1
  count.
- MPJPE of a joint = mean over frames; 'Average' = mean over all 17 joints (the pelvis adds 0).
- PCK and AUC of a joint group pool the group's joints and frames, as MATLAB's
  sum(sum(err(group, :) < t)) / (numel(group) * frames): the fraction of (frame, joint) pairs
  with error < t (strict). 'Total' pools the 14 joints of the 8 groups (pelvis, spine and head
  are left out). PCK = 100 x fraction at t = 150 mm; AUC = 100 x mean of the fractions at
  t = 0, 5, .., 150 (31 thresholds). With the strict comparison nothing counts at t = 0, so a
  perfect prediction scores AUC = 100 x 30/31 = 96.77.
- Sequencewise table: a row per sequence present ('TestSeq5' for TS5). Activitywise table: the
  7 activities then 'All', pooling the valid frames of all sequences present; an activity with
  no frame (or ground truth without activity labels) gets NaN, MATLAB's 0/0, never 0.
- Headline numbers (what the paper reports; what users got by averaging the rows of the
  sequencewise CSV): the unweighted mean over the sequences present of each row's PCK
  'Total', AUC 'Total' and MPJPE 'Average'. The pooled 'All' row is reported beside them.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from ..inference.aggregation import MODES
from ..datasets.mpi_inf_3dhp import ROOT_INDEX, mpi_inf_3dhp_metadata, read_mat, read_test_entries

_META = mpi_inf_3dhp_metadata()
_SCORING = _META["scoring"]
JOINT_NAMES: list[str] = _META["joint_names"]
JOINT_GROUPS: dict[str, list[int]] = _SCORING["joint_groups"]
TOTAL_JOINTS: list[int] = [j for joints in JOINT_GROUPS.values() for j in joints]
THRESHOLDS_MM = np.asarray(_SCORING["auc_thresholds_mm"], dtype=np.float64)  # (31,)
PCK_THRESHOLD_MM: float = _SCORING["pck_threshold_mm"]
ACTIVITY_NAMES: dict[int, str] = {int(k): v for k, v in _META["activity_names"].items()}
MAT_PREFIX = "inference_data_"
# The prediction files, one per aggregation mode (common.inference.aggregation.MODES): inference_data_<stem>.mat
# with the mode's name as stem ('J-Agg' -> J_Agg); the authors' four first, in their order, then
# any other mode in the registry's order.
AUTHORS_MAT_ORDER = ("P-Agg", "P-Best", "J-Best", "J-Agg")
MAT_STEMS = {m: m.replace("-", "_") for m in (*(m for m in AUTHORS_MAT_ORDER if m in MODES),
                                               *(m for m in MODES if m not in AUTHORS_MAT_ORDER))}


@dataclass
class ScoreTable:
    """One official table: a row per sequence or activity; columns per joint (MPJPE) or group (PCK, AUC)."""

    rows: list[str]
    mpjpe: np.ndarray  # (R, 18) mm: the 17 joints, then 'Average'
    pck: np.ndarray  # (R, 9) %: the 8 joint groups, then 'Total'
    auc: np.ndarray  # (R, 9) %

    def headline(self, row: str) -> dict[str, float]:
        """PCK 'Total', AUC 'Total' and MPJPE 'Average' of one row."""
        i = self.rows.index(row)
        return {"pck": float(self.pck[i, -1]), "auc": float(self.auc[i, -1]), "mpjpe": float(self.mpjpe[i, -1])}

    def write_csv(self, path) -> None:
        """Three blocks like the official CSV: MPJPE per joint, then PCK and AUC per group; NaN as 'NaN'."""
        groups = [*JOINT_GROUPS, "Total"]
        blocks = [("MPJPE (mm)", [*JOINT_NAMES, "Average"], self.mpjpe),
                  (f"PCK@{PCK_THRESHOLD_MM:g}mm (%)", groups, self.pck), ("AUC (%)", groups, self.auc)]
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            for i, (title, columns, values) in enumerate(blocks):
                if i:
                    writer.writerow([])
                writer.writerow([title, *columns])
                writer.writerows([row, *("NaN" if np.isnan(v) else repr(float(v)) for v in vals)]
                                 for row, vals in zip(self.rows, values))


@dataclass
class Scores:
    """Both official tables for one sampling iteration."""

    sequencewise: ScoreTable
    activitywise: ScoreTable

    def mean_over_sequences(self) -> dict[str, float]:
        """The paper's numbers: unweighted mean over the sequences present of PCK, AUC and MPJPE."""
        rows = [self.sequencewise.headline(r) for r in self.sequencewise.rows]
        return {k: float(np.mean([r[k] for r in rows])) for k in ("pck", "auc", "mpjpe")}

    def pooled(self) -> dict[str, float]:
        """The activitywise 'All' row: every valid frame of every sequence pooled."""
        return self.activitywise.headline("All")


def valid_frame_joint_errors(pred: np.ndarray, annot3: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-joint errors (V, 17) in mm over the valid frames; pred, annot3 (N, 17, 3) mm, both made pelvis-relative."""
    pred = pred - pred[:, ROOT_INDEX:ROOT_INDEX + 1]
    gt = annot3 - annot3[:, ROOT_INDEX:ROOT_INDEX + 1]
    return np.sqrt(np.sum((pred - gt) ** 2, axis=-1))[valid]


def _score_row(err: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Errors (F, 17) -> MPJPE (18,), PCK (9,), AUC (9,); NaN everywhere when F = 0."""
    if len(err) == 0:
        return np.full(len(JOINT_NAMES) + 1, np.nan), *np.full((2, len(JOINT_GROUPS) + 1), np.nan)
    per_joint = err.mean(axis=0)
    pck, auc = [], []
    for joints in [*JOINT_GROUPS.values(), TOTAL_JOINTS]:
        hits = (err[:, joints, None] < THRESHOLDS_MM).sum(axis=(0, 1)) / (len(joints) * len(err))  # (31,)
        pck.append(100 * hits[THRESHOLDS_MM == PCK_THRESHOLD_MM][0])
        auc.append(100 * hits.sum() / len(THRESHOLDS_MM))
    return np.append(per_joint, per_joint.mean()), np.array(pck), np.array(auc)


def _table(rows: list[str], errors: list[np.ndarray]) -> ScoreTable:
    mpjpe, pck, auc = zip(*(_score_row(e) for e in errors))
    return ScoreTable(rows, np.stack(mpjpe), np.stack(pck), np.stack(auc))


def _sequence_label(seq: str) -> str:
    m = re.fullmatch(r"TS(\d+)", seq)
    return f"TestSeq{m.group(1)}" if m else seq


def _sequence_order(seq: str):
    m = re.fullmatch(r"TS(\d+)", seq)
    return (0, int(m.group(1)), "") if m else (1, 0, seq)


def as_iterations(pred: np.ndarray, where: str = "prediction") -> np.ndarray:
    """(N, 17, 3) or the MATLAB layout (3, 17, N[, K]) -> (K, N, 17, 3) float64."""
    pred = np.asarray(pred, dtype=np.float64)
    if pred.ndim == 3 and pred.shape[1:] == (17, 3):
        return pred[None]
    if pred.ndim in (3, 4) and pred.shape[:2] == (3, 17):
        return (pred if pred.ndim == 4 else pred[..., None]).transpose(3, 2, 1, 0)
    raise ValueError(f"{where}: expected (N, 17, 3) or (3, 17, N, K) millimetres, got shape {pred.shape}")


def score_predictions(preds: dict[str, np.ndarray], gt: dict[str, tuple]) -> list[Scores]:
    """Official tables for every sampling iteration k (list index k - 1).

    preds: {seq: (N, 17, 3) or (3, 17, N, K)} millimetres, camera space, all N frames.
    gt:    {seq: (annot3 (N, 17, 3) mm, valid (N,) bool, activity (N,) int 1..7 or None)}.
    """
    missing = [s for s in preds if s not in gt]
    if missing:
        raise ValueError(f"no ground truth for {', '.join(missing)} (have: {', '.join(gt) or 'none'})")
    seqs = sorted(preds, key=_sequence_order)
    iterations = {s: as_iterations(preds[s], s) for s in seqs}  # (K, N, 17, 3) each
    for s in seqs:
        bad = ~np.isfinite(iterations[s])
        if bad.any():
            k, frame = (int(i) for i in np.argwhere(bad)[0][:2])
            raise ValueError(f"{s}: the prediction holds {int(bad.sum())} NaN/inf values (first at iteration "
                             f"{k + 1}, frame {frame}); scores of non-finite poses mean nothing: fix or "
                             f"re-export the predictions")
    ks = {s: len(p) for s, p in iterations.items()}
    if len(set(ks.values())) != 1:
        raise ValueError(f"sequences disagree on the number of iterations K: {ks}")
    for s in seqs:
        n_gt, n_pred = len(gt[s][0]), iterations[s].shape[1]
        if n_pred != n_gt:
            raise ValueError(f"{s}: the prediction has {n_pred} frames, the ground truth {n_gt}: "
                             "predictions must cover every frame (invalid ones included)")
    annot3 = {s: np.asarray(gt[s][0], dtype=np.float64) for s in seqs}
    valid = {s: np.asarray(gt[s][1]).reshape(-1) != 0 for s in seqs}
    activity = np.concatenate([np.zeros(valid[s].sum(), dtype=np.int64) if gt[s][2] is None  # 0: unknown
                               else np.asarray(gt[s][2]).reshape(-1)[valid[s]] for s in seqs])  # (V_all,)
    scores = []
    for k in range(ks[seqs[0]]):
        errors = [valid_frame_joint_errors(iterations[s][k], annot3[s], valid[s]) for s in seqs]  # (V_s, 17) each
        pooled = np.concatenate(errors)
        scores.append(Scores(
            sequencewise=_table([_sequence_label(s) for s in seqs], errors),
            activitywise=_table([*ACTIVITY_NAMES.values(), "All"],
                                [pooled[activity == a] for a in ACTIVITY_NAMES] + [pooled])))
    return scores


# ---------------------------------------------------------------- files

def export_3dhp_mat(path, predictions: dict[str, np.ndarray]) -> Path:
    """Write {seq: (K, N, 17, 3) metres, root-relative} as the MATLAB scorer's (3, 17, N, K) mm doubles."""
    arrays = {}
    for seq, pred in predictions.items():
        pred = np.asarray(pred, dtype=np.float64)
        if pred.ndim != 4 or pred.shape[2:] != (17, 3):
            raise ValueError(f"{seq}: expected (K, N, 17, 3) metres, got shape {pred.shape}")
        pred = (pred - pred[:, :, ROOT_INDEX:ROOT_INDEX + 1]) * 1000.0
        arrays[seq] = np.ascontiguousarray(pred.transpose(3, 2, 1, 0))  # (3, 17, N, K)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), arrays)
    return path


def read_3dhp_mat(path) -> dict[str, np.ndarray]:
    """A prediction .mat -> {seq: (3, 17, N, K) mm float64}, the arrays MATLAB sees (K = 1 added when dropped)."""
    variables = read_mat(path)
    preds = {k: v for k, v in variables.items() if re.fullmatch(r"TS\d+", k)}
    if not preds:
        raise ValueError(f"{path} holds no TS1..TS6 variables (it has: {', '.join(variables) or 'nothing'})")
    return {seq: as_iterations(v, f"{path} {seq}").transpose(3, 2, 1, 0) for seq, v in preds.items()}


def load_3dhp_ground_truth(path, sequences=None) -> dict[str, tuple]:
    """{seq: (annot3 (N,17,3) mm, valid (N,) bool, activity (N,) or None)} from the official test
    folder (TS*/annot_data.mat, exact) or a processed test npz (float32, no activities)."""
    return {seq: (e["data_3d"].astype(np.float64), e["valid"], e.get("activity"))
            for seq, e in read_test_entries(path, sequences).items()}


def prediction_files(paths) -> list[Path]:
    """Expand folders to their inference_data_<MODE>.mat files (official mode order first)."""
    order = list(MAT_STEMS.values())
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob(f"{MAT_PREFIX}*.mat"), key=lambda f: (
                order.index(mode_name(f)) if mode_name(f) in order else len(order), f.name))
            if not found:
                raise FileNotFoundError(f"no {MAT_PREFIX}*.mat in {p}")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"prediction file {p} not found")
    return files


def mode_name(path) -> str:
    """The label of a prediction file in score tables: its stem after the prefix ('J_Agg' for
    inference_data_J_Agg.mat), or the whole stem for other names."""
    stem = Path(path).stem
    return stem[len(MAT_PREFIX):] if stem.startswith(MAT_PREFIX) else stem


def score_prediction_files(pred_files, gt_path, out_dir=None) -> dict[str, list[Scores]]:
    """Score each prediction .mat against the ground truth; {mode: [Scores per iteration]}. With
    out_dir, writes <mode>_k<k>_{sequencewise,activitywise}.csv and summary.csv there."""
    preds = {mode_name(f): read_3dhp_mat(f) for f in pred_files}
    gt = load_3dhp_ground_truth(gt_path, sorted({s for p in preds.values() for s in p}, key=_sequence_order))
    results = {mode: score_predictions(p, gt) for mode, p in preds.items()}
    if out_dir is not None:
        write_scores(results, out_dir)
    return results


def write_scores(results: dict[str, list[Scores]], out_dir) -> None:
    """Every table as CSV, plus summary.csv with the headline numbers per mode and iteration."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for mode, per_k in results.items():
        for k, s in enumerate(per_k, start=1):
            s.sequencewise.write_csv(out_dir / f"{mode}_k{k}_sequencewise.csv")
            s.activitywise.write_csv(out_dir / f"{mode}_k{k}_activitywise.csv")
    with open(out_dir / "summary.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["mode", "iteration", "sequences", "PCK", "AUC", "MPJPE", "PCK_pooled", "AUC_pooled",
                         "MPJPE_pooled"])
        for mode, k, s in _iterate(results):
            mean, pooled = s.mean_over_sequences(), s.pooled()
            writer.writerow([mode, k, " ".join(s.sequencewise.rows), *(repr(mean[m]) for m in ("pck", "auc", "mpjpe")),
                             *(repr(pooled[m]) for m in ("pck", "auc", "mpjpe"))])


def _iterate(results: dict[str, list[Scores]]):
    return ((mode, k, s) for mode, per_k in results.items() for k, s in enumerate(per_k, start=1))


def format_summary(results: dict[str, list[Scores]]) -> str:
    """A printable table of the headline numbers per mode and iteration."""
    first = next(iter(results.values()))[0]
    lines = [f"MPI-INF-3DHP, {' '.join(first.sequencewise.rows)}: mean over sequences (the paper's numbers) "
             "| all valid frames pooled ('All' row)",
             f"{'mode':<8}{'k':>3}  {'PCK':>7}{'AUC':>7}{'MPJPE':>8}  | {'PCK':>7}{'AUC':>7}{'MPJPE':>8}"]
    for mode, k, s in _iterate(results):
        m, p = s.mean_over_sequences(), s.pooled()
        lines.append(f"{mode:<8}{k:>3}  {m['pck']:7.2f}{m['auc']:7.2f}{m['mpjpe']:8.2f}  "
                     f"| {p['pck']:7.2f}{p['auc']:7.2f}{p['mpjpe']:8.2f}")
    return "\n".join(lines)


def export_evaluation(results, out_dir) -> list[Path]:
    """Write inference_data_<MODE>.mat for every aggregation mode from evaluation results that
    kept per-frame poses (common.evaluation.evaluate.SequenceResult with .poses: mode -> (K, N, 17, 3) m)."""
    files = []
    for mode, stem in MAT_STEMS.items():
        preds = {r.sequence.subject: r.poses[mode] for r in results}
        files.append(export_3dhp_mat(Path(out_dir) / f"{MAT_PREFIX}{stem}.mat", preds))
    return files
