"""What the entry scripts do with per-joint uncertainty (common.uncertainty.factors): fit the factors
at the end of training (--calibrate) and store them in the checkpoints, refit them on an
evaluated set (--evaluate ... --calibrate) into a copy of the checkpoint, and add the
calibration block to an evaluation report. Functions take plain values and results."""
from __future__ import annotations

import time
from pathlib import Path

from ..model.checkpoint import atomic_save, load_denoiser, safe_load
from ..datasets.base import flags_label
from ..evaluation.evaluate import evaluate_sequences
from ..uncertainty.factors import Calibration, UncertaintyError, check_coverage
from ..uncertainty.frames import calibration_split, fit_from_results
from ..uncertainty.report import evaluate_calibration

MIN_HYPOTHESES = 2


def data_label(run, sequences, dataset=None) -> str:
    """What the factors were fitted on, for people: the data set's label (Dataset.label), or
    without a data set the data flags (-d, -k)."""
    return flags_label(run) if dataset is None else dataset.label(run, sequences)


def check_hypotheses(hypotheses: int, what: str = "--calibrate") -> None:
    if hypotheses < MIN_HYPOTHESES:
        raise UncertaintyError(f"{what} needs the spread of several hypotheses: give -num_proposals 2 or more "
                               f"(e.g. -num_proposals 5 -sampling_timesteps 5), not {hypotheses}")


def check_training_calibration(hypotheses: int, val_sequences) -> None:
    """Before training with --calibrate: what the fit at the end will need."""
    check_hypotheses(hypotheses, "--calibrate (fitting the uncertainty factors after training)")
    if not val_sequences:
        raise ValueError("--calibrate fits the uncertainty factors on the validation sequences, and none were "
                         "selected (check -ste, -a)")


def stored_calibration(checkpoint: dict | None, path, hypotheses: int, log=print) -> Calibration | None:
    """The factors a checkpoint holds (None without), with a warning when they were fitted
    with another number of hypotheses (the spread of H hypotheses depends on H)."""
    calibration = Calibration.from_checkpoint(checkpoint, path) if checkpoint else None
    fitted_h = calibration.fitted_on.get("hypotheses") if calibration else None
    if fitted_h is not None and fitted_h != hypotheses:
        log(f"warning: the uncertainty factors in {path} were fitted with H={fitted_h}, this evaluation samples "
            f"H={hypotheses}: the radii may not hold their coverage; refit with --calibrate")
    return calibration


def fit_on_split(results, sequences, note: str, hypotheses: int, iterations: int) -> Calibration:
    """Fit on the calibration split of the evaluated sequences (common.uncertainty.frames.calibration_split)."""
    masks, how = calibration_split(sequences)
    fitted_on = {"data": note, "split": how, "hypotheses": int(hypotheses), "iterations": int(iterations),
                 "date": time.strftime("%Y-%m-%d")}
    return fit_from_results(results, masks, fitted_on)


def store_calibration(calibration: Calibration, path, checkpoint: dict | None = None, log=print) -> None:
    """Write the factors into a checkpoint file (its 'uncertainty' entry), atomically."""
    ckpt = safe_load(path) if checkpoint is None else checkpoint
    ckpt["uncertainty"] = calibration.to_checkpoint()
    atomic_save(ckpt, path)
    log(f"stored the uncertainty factors in {path}")


def calibrate_after_training(trainer, sequences, core, settings, data: str, log=print,
                             names=("latest_epoch.bin", "best_epoch.bin")) -> Calibration | None:
    """Fit the factors on the calibration split of the validation sequences, for the weights
    of best_epoch.bin and of latest_epoch.bin (once when they are the same epoch; names: the
    files), sampled with `core` (common.inference.core.InferenceCore: H, K, the sampler), and
    store them in those files (their 'uncertainty' entry). Returns the latest weights' factors."""
    masks, how = calibration_split(sequences)
    chosen = [i for i, m in enumerate(masks) if m.any()]
    seqs = [sequences[i] for i in chosen]
    fitted = {}
    latest = None
    for name in names:
        path = Path(trainer.out_dir) / name
        if not path.is_file():
            continue
        ckpt = safe_load(path)
        epoch = ckpt.get("epoch")
        if epoch not in fitted:
            model = trainer.model if epoch == trainer.epoch else load_denoiser(path)[0].to(core.device)
            h, k = core.sampling.hypotheses, core.sampling.iterations
            log(f"fitting the uncertainty factors for epoch {epoch} on {len(seqs)} validation sequences "
                f"({how}), H={h} K={k}")
            results = evaluate_sequences(core.with_model(model.eval()), seqs, settings, desc="calibrating")
            fitted[epoch] = fit_from_results(results, [masks[i] for i in chosen], {
                "data": data, "split": f"validation set: {how}", "hypotheses": h,
                "iterations": k, "epoch": epoch, "date": time.strftime("%Y-%m-%d")})
        store_calibration(fitted[epoch], path, ckpt, log)
        if name == "latest_epoch.bin":
            latest = fitted[epoch]
    return latest


def calibrated_copy_path(evaluated, out_dir) -> Path:
    return Path(out_dir) / f"{Path(evaluated).stem}_calibrated.bin"


def write_calibrated_copy(checkpoint: dict, calibration: Calibration, path, overwrite: bool = False,
                          log=print) -> Path:
    """The evaluated checkpoint with the refitted factors, written to path; an existing file
    there is kept (error) or, with overwrite, moved to '<name>.previous-<time>'."""
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise ValueError(f"{path} exists (factors of an earlier --calibrate): add --overwrite to replace it "
                             f"(it is moved aside, not deleted), or choose another -c folder")
        backup = path.with_name(f"{path.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}")
        path.rename(backup)
        log(f"--overwrite: moved the earlier {path.name} to {backup}")
    atomic_save({**checkpoint, "uncertainty": calibration.to_checkpoint()}, path)
    return path


def report_block(results, calibration: Calibration | None, coverage: float, joint_names=None) -> dict:
    """The report's calibration block; joint_names: the data set's (Dataset.joint_names), None: by index."""
    return evaluate_calibration(results, calibration, coverage, joint_names)


class EvaluationUncertainty:
    """The uncertainty side of one evaluation run (experiment.run_evaluation): flags checked
    before sampling, per-frame records asked for, the report's calibration block, and after
    the tables, the refitted copy (--calibrate) and the per-frame file (--save-predictions).
    dataset: the evaluated data set (common.datasets.base.Dataset), which names the joints of
    the calibration block and labels a refit; None: joints by index, labelled by -d and -k."""

    def __init__(self, run, checkpoint: dict | None, refit: bool | None = None, log=print, dataset=None,
                 store_in=()):
        self.run, self.checkpoint, self.log = run, checkpoint, log        # run: the RunConfig
        self.store_in = tuple(store_in)          # with refit: the checkpoint files the factors go into (no copy)
        self.dataset = dataset
        self.coverage = check_coverage(run.coverage)
        self.evaluated = run.evaluate or "the checkpoint"
        self.refit = bool(run.calibrate and run.evaluate) if refit is None else refit
        if self.refit:
            check_hypotheses(run.num_proposals)
            if checkpoint is None:
                raise ValueError("--calibrate with --evaluate needs the evaluated checkpoint's contents")
        self.save_to = run.save_predictions
        if self.save_to:
            from ..storage.files import check_writable_file
            from ..outputs.predictions import check_path

            check_writable_file(check_path(self.save_to), "--save-predictions")
        self.calibration = stored_calibration(checkpoint, self.evaluated, run.num_proposals, log)
        if self.calibration is not None and run.num_proposals >= MIN_HYPOTHESES and not self.refit:
            self.calibration.factors(self.coverage)          # a coverage the factors cannot give: refused now

    def configure(self, settings, sampling):
        """The evaluation's settings (common.evaluation.evaluate.EvalSettings), keeping the per-frame
        records this run needs (sampling: common.inference.core.Sampling)."""
        if self.save_to:
            return settings.keeping("frame_poses")
        return settings.keeping("frames") if sampling.hypotheses >= MIN_HYPOTHESES else settings

    def attach(self, report, results, sequences, sampling) -> None:
        """Refit (with --calibrate) and put the calibration block into the report; sampling:
        the evaluation's common.inference.core.Sampling."""
        if self.refit:
            try:
                fitted = fit_on_split(results, sequences, data_label(self.run, sequences, self.dataset),
                                      sampling.hypotheses, sampling.iterations)
                fitted.factors(self.coverage)
                self.calibration = fitted
            except ValueError as e:
                self.log(f"warning: the uncertainty factors were not refitted: {e}")
                self.refit = False
        if sampling.hypotheses >= MIN_HYPOTHESES:
            names = None if self.dataset is None else self.dataset.joint_names
            report.calibration = report_block(results, self.calibration, self.coverage, names)

    def write(self, results, out_dir) -> None:
        """After the tables: the calibrated copy and the predictions file."""
        for path in self.store_in if self.refit else ():
            store_calibration(self.calibration, path, log=self.log)
        if self.refit and not self.store_in:
            path = write_calibrated_copy(self.checkpoint, self.calibration,
                                         calibrated_copy_path(self.run.evaluate, out_dir), self.run.overwrite,
                                         self.log)
            self.log(f"wrote {path}: {self.run.evaluate} with the refitted uncertainty factors (evaluate it with "
                     f"--evaluate)")
        if self.save_to:
            from ..outputs.predictions import save_predictions

            self.log(f"wrote {save_predictions(self.save_to, results, self.calibration, self.coverage, self.run.downsample)}")
