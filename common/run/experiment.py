"""What every entry script does once it has its sequences: build the model, train it, or
evaluate a checkpoint and write the result tables. Entry scripts only choose the data; every
setting arrives as one RunConfig (common/run/config.py), which nothing here changes."""
from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from pathlib import Path

import torch

from . import signals
from .calibration import (EvaluationUncertainty, calibrate_after_training, check_training_calibration,
                          data_label)
from ..geometry.camera import shared_focal
from ..model.checkpoint import (CheckpointError, check_architecture, config_from_checkpoint, load_denoiser,
                         remove_stale_temp_files, safe_load)
from ..datasets.clips import ClipSampler
from .config import DATA_FIELDS, RESUME_FIELDS, RunConfig
from ..model.denoiser import Denoiser
from ..model.device import amp_dtype, compile_wanted, configure_cpu_compile, prepare_model
from ..model.diffusion import Diffusion
from .distributed import barrier, cleanup, init_from_env, wrap
from ..evaluation.distributed import evaluate_distributed
from ..datasets.base import Dataset, DatasetError
from ..evaluation.evaluate import EvalSettings, evaluate_sequences, settings_record
from ..inference.core import InferenceCore
from ..storage.locks import run_lock
from ..storage.files import check_writable, guard_previous_run, interrupt_hint, set_interrupt_hint
from ..evaluation.report import Report
from ..geometry.skeleton import Layout
from .train import Trainer, TrainConfig


def show_progress(run: RunConfig) -> bool:
    """Progress bars only on a terminal (never into a redirected log) and not with --no-progress."""
    return not run.no_progress and sys.stderr.isatty()


def eval_settings(run: RunConfig, **overrides) -> EvalSettings:
    """How a run scores its evaluations (--p2, --exact-frames, --pbest-valid-frames); overrides:
    EvalSettings fields."""
    overrides.setdefault("progress", show_progress(run))
    return EvalSettings(**{"protocol2": run.p2, "exact_frames": run.exact_frames,
                           "kept_pbest_valid_only": run.pbest_valid_frames, **overrides})


def evaluate_model(run: RunConfig, model, sequences, layout: Layout, device, log=print, info=None, uncertainty=None,
                   **overrides):
    """Sample and score the sequences through the run's InferenceCore (H = -num_proposals,
    K = -sampling_timesteps, the engine chosen for the amount of work); returns (core,
    settings, per-sequence results). With an enabled DistInfo (torchrun), the processes share
    the work (common.evaluation.distributed) and only rank 0 gets the results; the others get None.
    uncertainty: an EvaluationUncertainty that asks for the per-frame records it needs."""
    core = InferenceCore.from_run(run, model, device, layout, log=log)
    settings = eval_settings(run, **overrides)
    if uncertainty is not None:
        settings = uncertainty.configure(settings, core.sampling)
    if info is not None and info.enabled:
        try:
            results = evaluate_distributed(core, sequences, settings, info, log=log)
        finally:                 # also when stopped: a process group left to the interpreter's exit aborts it
            cleanup(info)
        return core, settings, results
    return core, settings, evaluate_sequences(core, sequences, settings)


def run_evaluation(run: RunConfig, model, sequences, layout: Layout, device, out_dir: Path, name: str,
                   log=print, checkpoint: dict | None = None, refit: bool | None = None,
                   dataset: Dataset | None = None, store_in=(), **overrides):
    """Evaluate (evaluate_model), print the tables, write <name>.log and <name>.json to out_dir.
    The per-joint uncertainty (common.run.calibration) uses the factors in checkpoint (the loaded
    dict), refitted first with refit (default: --calibrate when evaluating a file); dataset
    (the sequences' data set) names its joints and labels the refit; --save-predictions writes
    the per-frame poses; store_in: with refit, the checkpoint files that take the refitted factors
    (instead of a calibrated copy). Returns (report, per-sequence results).
    Under torchrun the processes share the work and rank 0 writes; the other ranks return
    (None, None)."""
    info, device = init_from_env(device)
    uncertainty = EvaluationUncertainty(run, checkpoint, refit, log, dataset, store_in)  # flags checked before sampling
    if info.is_main:
        check_writable(out_dir)
    else:
        log, overrides["progress"] = (lambda *_: None), False
    set_interrupt_hint("evaluation interrupted before its tables were complete; nothing was written")
    core, settings, results = evaluate_model(run, model, sequences, layout, device, log, info, uncertainty,
                                             **overrides)
    if results is None:
        return None, None
    report = Report(results, by_subject=run.by_subject)
    uncertainty.attach(report, results, sequences, core.sampling)
    s = core.sampling
    header = (f"{name}: H={s.hypotheses} K={s.iterations} flip={s.flip} -b {s.group}"
              f"{' exact-frames' if settings.exact_frames else ''}  ({len(sequences)} sequences)")
    meta = {"settings": settings_record(core, settings), "checkpoint": run.evaluate}
    with signals.deferred():                               # the .log and the .json are written together
        report.write(out_dir, name, header, meta, log=log)
    uncertainty.write(results, out_dir)
    set_interrupt_hint(f"the evaluation tables were written to {out_dir}; what came after them was cut short")
    return report, results


def load_for_evaluation(run: RunConfig, device):
    """The model of --evaluate, ready to sample on device; its architecture comes from the
    file, checked against the -f/-cs/-dep given (if any). Returns (model, checkpoint dict,
    the configuration with the resolved checkpoint path and the file's architecture)."""
    path = resolve_checkpoint_path(run.evaluate, run.checkpoint, "--evaluate")
    model, checkpoint = load_denoiser(path, run.architecture_given(), heads=run.heads)
    model = prepare_model(model.to(device).eval(), device, run.compile == "on")
    return model, checkpoint, run.replace(evaluate=str(path)).with_architecture(model.cfg)


def resolve_checkpoint_path(name, folder, flag: str = "--evaluate") -> Path:
    """A checkpoint named on the command line: <folder>/name as the authors' scripts open it,
    else name itself when that file exists."""
    name = str(name)
    for candidate in (Path(folder) / name, Path(name)):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{flag} {name}: checkpoint not found at {Path(folder) / name} (inside -c {folder}) "
                            f"nor at {Path(name)}")


def merge_resumed_flags(stored: dict, given: dict, table: dict, refused=()) -> tuple[dict, list[str], list[str]]:
    """The flags of a resumed run, on plain dicts. stored: the run's values (the checkpoint's
    args); given: the values typed on the command line; table: name -> flag, the names to
    settle; refused: names whose typed value must not differ from the run's. Returns (values
    to use for every name of table the run stored, messages about typed values that win,
    errors about refused ones). Names the run did not store (older checkpoints) are left out."""
    values, messages, errors = {}, [], []
    for name, flag in table.items():
        if name not in stored:
            continue
        if name not in given or _same(given[name], stored[name]):
            values[name] = stored[name]
        elif name in refused:
            errors.append(f"{flag} {given[name]} differs from the resumed run's {flag} {stored[name]}")
        else:
            values[name] = given[name]
            messages.append(f"resuming with {flag} {given[name]} from the command line (the run used {stored[name]})")
    return values, messages, errors


def _same(a, b) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.replace(" ", "") == b.replace(" ", "")
    return a == b


def _typed(run: RunConfig) -> dict:
    return {name: getattr(run, name) for name in run.given}


def _with_data_flags(run: RunConfig, stored: dict) -> tuple[RunConfig, dict]:
    """The run with its data flags taken from the checkpoint's; ValueError for a typed one that
    differs. Returns (configuration, {name: value} of those that changed)."""
    values, _, errors = merge_resumed_flags(stored, _typed(run), DATA_FIELDS, refused=set(DATA_FIELDS))
    if errors:
        raise ValueError(f"{'; '.join(errors)}: a resumed run continues on the data it was trained on, so its data "
                         f"flags come from {run.resume}; drop {', '.join(e.split()[0] for e in errors)}, or start "
                         f"a new run in another -c folder")
    changed = {k: v for k, v in values.items() if not _same(getattr(run, k), v)}
    return run.replace(**values), changed


def _load_training_checkpoint(path) -> dict:
    ckpt = safe_load(path)
    if "train_generator" not in ckpt or "model_config" not in ckpt:
        raise CheckpointError(f"{path} holds no training state (an authors' or evaluation-only "
                              f"checkpoint); it can be evaluated with --evaluate but not resumed with -r")
    return ckpt


def load_resume(run: RunConfig, log=print) -> tuple[RunConfig, dict]:
    """-r, before the entry script reads its data: load the checkpoint and take the run's data
    flags (-d -k -str -a --subset --downsample) from it; a typed one that differs is refused.
    Returns (the configuration with them, the checkpoint for run_training(resumed=...))."""
    run = run.replace(resume=str(resolve_checkpoint_path(run.resume, run.checkpoint, "-r")))
    ckpt = _load_training_checkpoint(run.resume)
    run, changed = _with_data_flags(run, ckpt.get("args") or {})
    if changed and int(os.environ.get("RANK", "0")) == 0:
        log("resuming on the run's data: " + " ".join(f"{DATA_FIELDS[k]} {v}" for k, v in changed.items()))
    return run, ckpt


def resume_settings(run: RunConfig, log=print, ckpt: dict | None = None) -> tuple[RunConfig, dict]:
    """Load the checkpoint of -r (unless given) and take the run's architecture and
    hyper-parameters from it: a flag given on the command line wins (and is reported) except
    -lr, an architecture flag and a data flag, which cannot change without breaking the exact
    resume. Returns (the resumed run's configuration, the checkpoint)."""
    ckpt = _load_training_checkpoint(run.resume) if ckpt is None else ckpt
    cfg = config_from_checkpoint(ckpt, run.resume)
    check_architecture(run.resume, run.architecture_given(), cfg)
    run = run.with_architecture(cfg).replace(heads=cfg.heads, drop_path=cfg.drop_path)
    stored = ckpt.get("args") or {}
    run, _ = _with_data_flags(run, stored)
    values, messages, errors = merge_resumed_flags(stored, _typed(run), RESUME_FIELDS, refused={"learning_rate"})
    if errors:
        raise ValueError(f"-lr {run.learning_rate} differs from the resumed run's {stored['learning_rate']}: a "
                         f"resumed run continues at its own decayed rate ({ckpt['lr']:.3e}); drop -lr, or start a "
                         f"new run")
    for message in messages:
        log(message)
    return run.replace(**values), ckpt


def _training_data(sequences) -> dict:
    """What a checkpoint records of its training data, to recognise it on resume."""
    return {"sequences": len(sequences), "frames": int(sum(s.num_frames for s in sequences))}


def check_training_data(stored: dict | None, current: dict, path) -> None:
    """Refuse to resume on training data other than the run's (other files in --data-dir)."""
    if stored and dict(stored) != current:
        raise ValueError(f"the training data differs from the run's in {path}: it trained on {stored['sequences']} "
                         f"sequences of {stored['frames']} frames in all, the data now read has {current['sequences']} "
                         f"of {current['frames']}; point --data-dir at the run's data, or start a new run in another "
                         f"-c folder")


def _training_interrupted(trainer, run: RunConfig) -> str:
    latest = Path(run.checkpoint) / "latest_epoch.bin"
    if trainer.epoch and latest.is_file():
        return (f"training interrupted during epoch {trainer.epoch + 1}; continue from the end of epoch "
                f"{trainer.epoch} with: -r {latest}")
    return "training interrupted before its first epoch ended; nothing was saved: run the command again"


def run_training(run: RunConfig, train_sequences, val_sequences, layout: Layout, device, log=print,
                 resumed: dict | None = None, dataset: Dataset | None = None) -> Trainer:
    """Train per the recipe of docs/method.md; validate on val_sequences with (--val-proposals, --val-timesteps).
    Under torchrun, every process trains its share of each global batch (common.run.distributed).
    The -c folder stays locked (common.storage.locks) until training ends; resumed: the checkpoint of
    -r when the caller has loaded it already (load_resume); dataset: the sequences' data set,
    which labels the uncertainty factors of --calibrate."""
    with ExitStack() as held:
        return _run_training(run, train_sequences, val_sequences, layout, device, log, resumed, held, dataset)


def _run_training(run: RunConfig, train_sequences, val_sequences, layout: Layout, device, log, resumed,
                  held: ExitStack, dataset: Dataset | None = None) -> Trainer:
    if not train_sequences:
        raise ValueError("no training sequences were selected (check -str, -a)")
    if run.resume:
        run = run.replace(resume=str(resolve_checkpoint_path(run.resume, run.checkpoint, "-r")))
    info, device = init_from_env(device)
    held.callback(cleanup, info)     # also when stopped: a process group left to the interpreter's exit aborts it
    if not info.is_main:
        log = lambda *_: None
    if run.resume:
        run, resumed = resume_settings(run, log, resumed)
        check_training_data(resumed.get("train_data"), _training_data(train_sequences), run.resume)
    batch_clips = run.training_clips()
    if run.calibrate:
        check_training_calibration(run.num_proposals, val_sequences)
    if info.is_main:
        check_writable(run.checkpoint)
        held.enter_context(run_lock(run.checkpoint, warn=log))
        guard_previous_run(run.checkpoint, run.resume, run.overwrite, log)
        remove_stale_temp_files(run.checkpoint)
    torch.manual_seed(run.seed)
    model_cfg = config_from_checkpoint(resumed, run.resume) if resumed else run.model_config(layout.input_name)
    run = run.with_architecture(model_cfg)
    model = prepare_model(Denoiser(model_cfg).to(device), device)
    diffusion = Diffusion(run.timestep, run.scale)
    clips = ClipSampler(train_sequences, model_cfg.frames, batch_clips, augment=run.data_augmentation, layout=layout,
                        seed=run.seed, rank=info.rank, world_size=info.world_size, view_pitch=run.view_augment,
                        view_roll=run.view_augment / 2, bone_scale=run.bone_augment, time_warp=run.time_warp)
    validate = None
    if not run.no_eval and val_sequences:
        validation = InferenceCore.from_run(run, model, device, layout, engines=False, hypotheses=run.val_proposals,
                                            iterations=run.val_timesteps)
        settings = eval_settings(run, progress=False)

        def validate(m):
            return Report(evaluate_sequences(validation.with_model(m), val_sequences, settings)).headline()
    writer = None
    if not run.nolog and info.is_main:
        from torch.utils.tensorboard import SummaryWriter   # heavy: TensorBoard, only when logging
        writer = SummaryWriter(run.log)
    cfg = TrainConfig(epochs=run.epochs, lr=run.learning_rate, lr_decay=run.lr_decay,
                      weight_decay=run.weight_decay, seed=run.seed, checkpoint_frequency=run.checkpoint_frequency,
                      amp_dtype=amp_dtype(run.amp), progress=show_progress(run))
    net = wrap(model, info, device)
    work = run.epochs * clips.num_batches() * clips.batch_size * 3 * model.cfg.flops()
    if compile_wanted(run.compile, device, work):
        if torch.device(device).type == "cpu":
            configure_cpu_compile()
        net = torch.compile(model if net is None else net)
        log("training through torch.compile (the first steps compile the model)")
    trainer = Trainer(model, diffusion, clips, cfg, device, run.checkpoint, validate=validate, writer=writer,
                      dist=info, ddp_model=net,
                      extra_state={"args": {**run.to_dict(), "input_layout": layout.input_name,
                                            "training_focal": shared_focal(s.cam for s in train_sequences)},
                                   "train_data": _training_data(train_sequences)})
    if resumed:
        for note in trainer.resume(resumed, run.resume):
            log(f"note: {note}")
        log(f"resumed from {run.resume} after epoch {trainer.epoch}")
    set_interrupt_hint((lambda: _training_interrupted(trainer, run)) if info.is_main else
                       f"rank {info.rank} stopped with the others (rank 0 says how to continue)")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"training {n_params / 1e6:.2f}M parameters on {device}"
        f"{f' x {info.world_size} processes' if info.enabled else ''}: {len(train_sequences)} sequences, "
        f"{clips.num_batches()} batches of {clips.batch_size} clips per epoch{' per process' if info.enabled else ''}")
    trainer.fit(log)
    if run.calibrate and info.is_main:
        core = InferenceCore.from_run(run, trainer.model, device, layout)
        trainer.calibration = calibrate_after_training(trainer, val_sequences, core, eval_settings(run, keep={"frames"}),
                                                       data_label(run, val_sequences, dataset), log)
    if writer is not None:
        writer.close()
    barrier(info)            # every rank done (rank 0 validates and saves last) before the group goes away
    cleanup(info)
    return trainer


def entry_point(main):
    """Run an entry script's main(), turning our exceptions into a one-line message."""
    set_interrupt_hint("")
    with signals.handle_signals(stay_stopped=True):  # SIGTERM stops as Ctrl-C does
        try:
            return main()
        except (CheckpointError, DatasetError, ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as e:
            print(f"\ninterrupted by {signals.signal_name(e)}: "
                  f"{interrupt_hint() or 'stopped before any result was written'}", file=sys.stderr)
            return signals.exit_code(e)
