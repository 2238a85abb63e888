"""The result report of an evaluation: its tables, their printed and JSON forms, and the
headline number.

Tables are {row: {(protocol, mode): (K,) metres}}: one value per sampling iteration k = 1..K.
- actions: a row per action group, the frame-weighted mean over its sequences (all subjects,
  cameras and sub-actions); the reported 'Average' is the plain mean over the rows (the
  authors' action average), and the headline is that average's J-Agg MPJPE at k = K.
- subjects (with by_subject): per test subject the same table over that subject's sequences;
  each subject's mean is the plain mean over its actions (the authors' --by-subject layout).
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..inference import aggregation as agg
from .metrics import AGGREGATION_MODES, BONE_CV
from ..uncertainty.report import format_calibration

PROTOCOL_TITLES = {"p1": "Protocol #1 (MPJPE, mm)", "p2": "Protocol #2 (P-MPJPE, mm)"}
# The motion rows (the unaligned poses, common.evaluation.metrics): the name of each and its unit's
# scale from the stored value (metres, or a fraction for the bone-length variation).
MOTION_TITLES = {"mpjve": "MPJVE mm/frame", "accel": "Accel mm/frame^2", BONE_CV: "bone CV %"}
SCALE = {BONE_CV: 100.0}                     # everything else: metres -> mm


def scale(protocol: str) -> float:
    return SCALE.get(protocol, 1000.0)


def summarize(results, key=lambda seq: seq.action_group) -> dict:
    """Frame-weighted mean error per key (default: action group) of per-sequence results
    (objects with .sequence, .sums {(protocol, mode): (K,) metres x weight} and .weight)."""
    sums, weights = defaultdict(lambda: defaultdict(float)), defaultdict(float)
    for r in results:
        kk = key(r.sequence)
        for pm, s in r.sums.items():
            sums[kk][pm] = sums[kk][pm] + s
        weights[kk] += r.weight
    return {kk: {pm: s / weights[kk] for pm, s in sums[kk].items()} for kk in sorted(sums)}


def average_over(table: dict) -> dict:
    """Plain mean over the rows of a summarize() table (the authors' action average)."""
    keys = next(iter(table.values())).keys()
    return {pm: np.mean([row[pm] for row in table.values()], axis=0) for pm in keys}


def format_table(table: dict, protocol: str, iteration: int, title: str, modes=AGGREGATION_MODES) -> str:
    """Rows (actions, then the average) x the modes, in mm, for one iteration k (1-based)."""
    width = max(12, *(len(str(r)) for r in table)) + 2
    lines = [title, f"{'':<{width}}" + "".join(f"{m:>10}" for m in modes)]
    rows = list(table.items()) + [("Average", average_over(table))]
    for name, row in rows:
        lines.append(f"{name:<{width}}" + "".join(f"{1000 * row[(protocol, m)][iteration - 1]:>10.2f}"
                                                   for m in modes))
    return "\n".join(lines)


def format_iterations(table: dict, protocol: str, title: str, modes=AGGREGATION_MODES) -> str:
    """The action average of each mode for every iteration k."""
    avg = average_over(table)
    k = len(next(iter(avg.values())))
    lines = [title, f"{'k':<6}" + "".join(f"{m:>10}" for m in modes)]
    for i in range(k):
        lines.append(f"{i + 1:<6}" + "".join(f"{1000 * avg[(protocol, m)][i]:>10.2f}" for m in modes))
    return "\n".join(lines)


def _json_rows(rows: dict) -> dict:
    """{row: {(protocol, mode): (K,) m}} -> JSON-ready {protocol: {mode: {row: [K values in mm]}}}
    (the bone-length variation in %)."""
    out = defaultdict(lambda: defaultdict(dict))
    for name, row in rows.items():
        for (protocol, mode), v in row.items():
            out[protocol][mode][name] = [round(float(x) * scale(protocol), 4) for x in v]
    return {p: dict(m) for p, m in out.items()}


def format_motion(table: dict, iteration: int, modes=AGGREGATION_MODES) -> str:
    """The action average of each motion metric (MOTION_TITLES) and mode at iteration k."""
    avg = average_over(table)
    present = [p for p in MOTION_TITLES if all((p, m) in avg for m in modes)]
    if not present:
        return ""
    width = max(len(t) for t in MOTION_TITLES.values()) + 2
    lines = [f"Motion of the poses (average over actions), iteration k={iteration}",
             f"{'':<{width}}" + "".join(f"{m:>10}" for m in modes)]
    for p in present:
        lines.append(f"{MOTION_TITLES[p]:<{width}}" + "".join(f"{scale(p) * avg[(p, m)][iteration - 1]:>10.2f}"
                                                               for m in modes))
    return "\n".join(lines)


def results_json(table: dict) -> dict:
    """JSON-ready {protocol: {mode: {row: [K values in mm]}}} of a table, with an 'Average' row."""
    return _json_rows({**table, "Average": average_over(table)})


class Report:
    """The tables of one evaluation (per-sequence results in, text / JSON / headline out)."""

    def __init__(self, results, by_subject: bool = False, modes=None):
        if not results:
            raise ValueError("nothing was evaluated: the selection holds no sequence")
        self.results = list(results)
        self.modes = tuple(agg.MODES if modes is None else modes)     # None: every mode registered now
        self.actions = summarize(self.results)
        self.protocols = sorted({p for row in self.actions.values() for p, _ in row} & set(PROTOCOL_TITLES))
        self.iterations = len(next(iter(next(iter(self.actions.values())).values())))
        self.subjects = None
        self.calibration = None           # the uncertainty block (common.uncertainty.report.evaluate_calibration)
        if by_subject:
            order = list(dict.fromkeys(r.sequence.subject for r in self.results))  # as the test subjects were given
            self.subjects = {s: summarize([r for r in self.results if r.sequence.subject == s]) for s in order}

    def average(self) -> dict:
        """{(protocol, mode): (K,) metres}: the plain mean over action groups."""
        return average_over(self.actions)

    def headline(self, protocol: str = "p1", mode: str = "J-Agg") -> float:
        """The number a run is judged by: the action average at the last iteration, metres."""
        return float(self.average()[(protocol, mode)][-1])

    def iterations_text(self, protocol: str, title: str) -> str:
        """The action average of every mode for every iteration k."""
        return format_iterations(self.actions, protocol, title, self.modes)

    def text(self) -> str:
        """Per protocol: the action table at k = K, the action average per iteration, and with
        by_subject, for every subject its actions and its mean over them."""
        k = self.iterations
        blocks = []
        for protocol in self.protocols:
            title = PROTOCOL_TITLES.get(protocol, protocol)
            blocks.append(format_table(self.actions, protocol, k, f"{title}, iteration k={k}", self.modes))
            blocks.append(format_iterations(self.actions, protocol, f"{title}, average over actions per iteration",
                                            self.modes))
            for subject, table in (self.subjects or {}).items():
                blocks.append(format_table(table, protocol, k, f"{title}, subject {subject}, iteration k={k}",
                                           self.modes))
        motion = format_motion(self.actions, k, self.modes)
        if motion:
            blocks.append(motion)
        if self.calibration is not None:
            blocks.append(format_calibration(self.calibration))
        return "\n".join(blocks)

    def to_json(self) -> dict:
        """{'actions': ..., 'subjects': ...} in the {protocol: {mode: {row: [K values in mm]}}} shape;
        subjects rows are 'S9/Directions' (a subject's action) and 'S9' (its mean over actions)."""
        out = {"actions": results_json(self.actions)}
        if self.subjects is not None:
            rows = {}
            for subject, table in self.subjects.items():
                rows.update({f"{subject}/{action}": row for action, row in table.items()})
                rows[subject] = average_over(table)
            out["subjects"] = _json_rows(rows)
        if self.calibration is not None:
            out["calibration"] = self.calibration
        return out

    def write(self, out_dir, name: str, header: str, meta: dict | None = None, log=print) -> tuple[Path, Path]:
        """Print header and tables, then append them to <out_dir>/<name>.log and write
        <name>.json (meta, e.g. the settings, first): the tables are on screen even when the
        folder cannot be written. Returns the two paths."""
        out_dir = Path(out_dir)
        log_path, json_path = out_dir / f"{name}.log", out_dir / f"{name}.json"
        text = f"{header}\n{self.text()}"
        log(text)
        done = f"wrote {log_path} and {json_path}"
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps({**(meta or {}), **self.to_json()}, indent=1))
            with open(log_path, "a") as f:
                f.write(f"{text}\n{done}\n")
        except OSError as e:
            raise ValueError(f"the tables above could not be written to {out_dir} ({e.strerror or e}); "
                             f"free space or fix permissions, or choose another -c folder") from None
        log(done)
        return log_path, json_path


def mean_pose_baseline(train_sequences, test_sequences) -> float:
    """MPJPE (metres) of always predicting the mean root-relative training pose, in the same
    table as the evaluation (frame-weighted per action group, plain mean over groups)."""
    mean = np.concatenate([s.pose_3d for s in train_sequences]).mean(axis=0)
    results = [SimpleNamespace(sequence=s, weight=float(s.num_frames),
                               sums={("p1", "J-Agg"): np.linalg.norm(s.pose_3d - mean, axis=-1)
                                     .mean(axis=-1).astype(np.float64).sum(keepdims=True)})
               for s in test_sequences]
    return Report(results).headline()
