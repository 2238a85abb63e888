"""What every entry script does once it has its sequences: build the model, train it, or
evaluate a checkpoint and write the result tables. Entry scripts only choose the data."""
from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from pathlib import Path

import torch

from . import signals
from .arguments import explicit_architecture, fill_architecture, model_config, resolve_checkpoint_path
from .checkpoint import (CheckpointError, check_architecture, config_from_checkpoint, load_denoiser,
                         remove_stale_temp_files, safe_load)
from .clips import ClipSampler
from .denoiser import Denoiser
from .device import amp_dtype, compile_wanted, configure_cpu_compile, prepare_model
from .diffusion import DDIMSampler, Diffusion
from .distributed import cleanup, init_from_env, wrap
from .datasets.base import Layout
from .engine import OpenVINODenoiser, for_sampling, sampling_flops
from .evaluate import EvalSettings, evaluate_sequences
from .locks import run_lock
from .outputs import check_writable, guard_previous_run, set_interrupt_hint
from .report import Report
from .train import Trainer, TrainConfig


def pbest_group(args) -> int:
    """Clips of one sequence per P-Best group in evaluation: --pbest-group, else -b."""
    group = getattr(args, "pbest_group", None) or args.batch_size
    if group < 1:
        raise ValueError(f"-b {args.batch_size}: evaluation needs at least 1 clip per P-Best group")
    return group


def training_clips(args) -> int:
    """Clips per training batch: -b frames // -s frames per clip, as the authors' scripts count."""
    clips = args.batch_size // args.stride
    if clips < 1:
        raise ValueError(f"-b {args.batch_size} -s {args.stride} gives {clips} clips per training batch (b // s): "
                         f"give -b at least -s (the authors' default is -b 1024 -s 243, 4 clips), "
                         f"or -s 1 to count -b in clips")
    return clips


def show_progress(args) -> bool:
    """Progress bars only on a terminal (never into a redirected log) and not with --no-progress."""
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


def eval_settings(args, layout: Layout, hypotheses: int, iterations: int, **overrides) -> EvalSettings:
    overrides.setdefault("progress", show_progress(args))
    settings = dict(hypotheses=hypotheses, iterations=iterations, flip=args.test_time_augmentation,
                    group=pbest_group(args), compute_batch=args.eval_batch, protocol2=args.p2,
                    exact_frames=args.exact_frames, seed=args.seed,
                    kept_pbest_valid_only=getattr(args, "pbest_valid_frames", False),
                    joints_left=tuple(layout.joints_left), joints_right=tuple(layout.joints_right),
                    kps_left=tuple(layout.kps_left), kps_right=tuple(layout.kps_right))
    return EvalSettings(**{**settings, **overrides})


def make_sampler(args, steps: int) -> DDIMSampler:
    """The DDIM sampler of the command line: -timestep, -scale, --eta and the speed flags."""
    return DDIMSampler(Diffusion(args.timestep, args.scale), steps, args.eta,
                       max_batch_hypotheses=args.max_batch_hypotheses, amp_dtype=amp_dtype(args.amp))


def run_evaluation(args, model, sequences, layout: Layout, device, out_dir: Path, name: str,
                   log=print, **overrides):
    """Evaluate with H = -num_proposals, K = -sampling_timesteps; print the tables, write
    <name>.log and <name>.json to out_dir. Returns (report, per-sequence results)."""
    check_writable(out_dir)
    set_interrupt_hint("evaluation interrupted before its tables were complete; nothing was written")
    sampler = make_sampler(args, args.sampling_timesteps)
    settings = eval_settings(args, layout, args.num_proposals, args.sampling_timesteps, **overrides)
    windows = sum(-(-s.num_frames // model.cfg.frames) for s in sequences)
    work = sampling_flops(model.cfg, windows * settings.hypotheses, settings.iterations, settings.flip)
    model = for_sampling(model, getattr(args, "engine", "auto"), device, work, args.amp, args.compile == "on",
                         args.compile == "auto", log)
    if isinstance(model, OpenVINODenoiser):
        sampler.amp_dtype = None                          # the precision is OpenVINO's
    results = evaluate_sequences(model, sampler, sequences, settings, device)
    report = Report(results, by_subject=getattr(args, "by_subject", False))
    header = (f"{name}: H={settings.hypotheses} K={settings.iterations} flip={settings.flip} -b {settings.group}"
              f"{' exact-frames' if settings.exact_frames else ''}  ({len(sequences)} sequences)")
    meta = {"settings": {k: v for k, v in vars(settings).items() if not k.startswith("keep")},
            "checkpoint": str(getattr(args, "evaluate", ""))}
    with signals.deferred():                               # the .log and the .json are written together
        report.write(out_dir, name, header, meta, log=log)
    set_interrupt_hint(f"the evaluation tables were written to {out_dir}; what came after them was cut short")
    return report, results


def load_for_evaluation(args, device, with_checkpoint: bool = False):
    """The model of --evaluate, ready to sample on device; its architecture comes from the
    file, checked against the -f/-cs/-dep given (if any). with_checkpoint: also return the
    loaded checkpoint dict."""
    args.evaluate = str(resolve_checkpoint_path(args.evaluate, args.checkpoint, "--evaluate"))
    model, checkpoint = load_denoiser(args.evaluate, explicit_architecture(args), heads=args.heads)
    fill_architecture(args, model.cfg)
    model = prepare_model(model.to(device).eval(), device, args.compile == "on")
    return (model, checkpoint) if with_checkpoint else model


# Hyper-parameters of a run (argparse names -> flags) that a resumed run takes from its
# checkpoint unless the command line gives them.
RUN_FLAGS = {"learning_rate": "-lr", "lr_decay": "-lrd", "batch_size": "-b", "weight_decay": "-wd",
             "stride": "-s", "epochs": "-e", "data_augmentation": "-no-da", "timestep": "-timestep", "scale": "-scale",
             "seed": "--seed", "checkpoint_frequency": "-cf", "val_proposals": "--val-proposals",
             "val_timesteps": "--val-timesteps", "no_eval": "--no-eval", "drop_path": "--drop-path",
             "heads": "--heads"}


# The data flags of a run: a resumed run takes them from its checkpoint (the entry script
# reads the data with them, see load_resume); one typed with another value is refused.
DATA_FLAGS = {"dataset": "-d", "keypoints": "-k", "subjects_train": "-str", "actions": "-a", "subset": "--subset",
              "downsample": "--downsample"}


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


def _typed(args) -> dict:
    return {name: getattr(args, name) for name in getattr(args, "given", set()) if hasattr(args, name)}


def _apply_data_flags(args, stored: dict) -> dict:
    """Set the data flags of args to the run's; raise ValueError for a typed one that differs.
    Returns {name: value} of those that changed."""
    values, _, errors = merge_resumed_flags(stored, _typed(args), DATA_FLAGS, refused=set(DATA_FLAGS))
    if errors:
        raise ValueError(f"{'; '.join(errors)}: a resumed run continues on the data it was trained on, so its data "
                         f"flags come from {args.resume}; drop {', '.join(e.split()[0] for e in errors)}, or start "
                         f"a new run in another -c folder")
    changed = {k: v for k, v in values.items() if not _same(getattr(args, k), v)}
    for name, value in values.items():
        setattr(args, name, value)
    return changed


def _load_training_checkpoint(path) -> dict:
    ckpt = safe_load(path)
    if "train_generator" not in ckpt or "model_config" not in ckpt:
        raise CheckpointError(f"{path} holds no training state (an authors' or evaluation-only "
                              f"checkpoint); it can be evaluated with --evaluate but not resumed with -r")
    return ckpt


def load_resume(args, log=print) -> dict:
    """-r, before the entry script reads its data: load the checkpoint and take the run's data
    flags (-d -k -str -a --subset --downsample) from it; a typed one that differs is refused.
    Returns the checkpoint, for run_training(resumed=...)."""
    args.resume = str(resolve_checkpoint_path(args.resume, args.checkpoint, "-r"))
    ckpt = _load_training_checkpoint(args.resume)
    changed = _apply_data_flags(args, ckpt.get("args") or {})
    if changed and int(os.environ.get("RANK", "0")) == 0:
        log("resuming on the run's data: " + " ".join(f"{DATA_FLAGS[k]} {v}" for k, v in changed.items()))
    return ckpt


def resume_arguments(args, log=print, ckpt: dict | None = None) -> dict:
    """Load the checkpoint of -r (unless given) and take the run's architecture and
    hyper-parameters from it: a flag given on the command line wins (and is reported) except
    -lr, an architecture flag and a data flag, which cannot change without breaking the exact
    resume. Returns the checkpoint."""
    ckpt = _load_training_checkpoint(args.resume) if ckpt is None else ckpt
    cfg = config_from_checkpoint(ckpt, args.resume)
    check_architecture(args.resume, explicit_architecture(args), cfg)
    fill_architecture(args, cfg)
    args.heads, args.drop_path = cfg.heads, cfg.drop_path
    stored = ckpt.get("args") or {}
    _apply_data_flags(args, stored)
    table = {k: v for k, v in RUN_FLAGS.items() if k not in ("heads", "drop_path")}
    values, messages, errors = merge_resumed_flags(stored, _typed(args), table, refused={"learning_rate"})
    if errors:
        raise ValueError(f"-lr {args.learning_rate} differs from the resumed run's {stored['learning_rate']}: a "
                         f"resumed run continues at its own decayed rate ({ckpt['lr']:.3e}); drop -lr, or start a "
                         f"new run")
    for name, value in values.items():
        setattr(args, name, value)
    for message in messages:
        log(message)
    return ckpt


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


def _training_interrupted(trainer, args) -> str:
    latest = Path(args.checkpoint) / "latest_epoch.bin"
    if trainer.epoch and latest.is_file():
        return (f"training interrupted during epoch {trainer.epoch + 1}; continue from the end of epoch "
                f"{trainer.epoch} with: -r {latest}")
    return "training interrupted before its first epoch ended; nothing was saved: run the command again"


def run_training(args, train_sequences, val_sequences, layout: Layout, device, log=print,
                 resumed: dict | None = None) -> Trainer:
    """Train per the recipe of docs/method.md; validate on val_sequences with (--val-proposals, --val-timesteps).
    Under torchrun, every process trains its share of each global batch (common.distributed).
    The -c folder stays locked (common.locks) until training ends; resumed: the checkpoint of
    -r when the caller has loaded it already (load_resume)."""
    with ExitStack() as held:
        return _run_training(args, train_sequences, val_sequences, layout, device, log, resumed, held)


def _run_training(args, train_sequences, val_sequences, layout, device, log, resumed, held: ExitStack) -> Trainer:
    if not train_sequences:
        raise ValueError("no training sequences were selected (check -str, -a)")
    if args.resume:
        args.resume = str(resolve_checkpoint_path(args.resume, args.checkpoint, "-r"))
    info, device = init_from_env(device)
    if not info.is_main:
        log = lambda *_: None
    resumed = resume_arguments(args, log, resumed) if args.resume else None
    if resumed:
        check_training_data(resumed.get("train_data"), _training_data(train_sequences), args.resume)
    batch_clips = training_clips(args)
    if info.is_main:
        check_writable(args.checkpoint)
        held.enter_context(run_lock(args.checkpoint, warn=log))
        guard_previous_run(args.checkpoint, args.resume, getattr(args, "overwrite", False), log)
        remove_stale_temp_files(args.checkpoint)
    torch.manual_seed(args.seed)
    model_cfg = config_from_checkpoint(resumed, args.resume) if resumed else model_config(args)
    model = prepare_model(Denoiser(model_cfg).to(device), device)
    diffusion = Diffusion(args.timestep, args.scale)
    clips = ClipSampler(train_sequences, args.number_of_frames, batch_clips, augment=args.data_augmentation,
                        kps_left=layout.kps_left, kps_right=layout.kps_right,
                        joints_left=layout.joints_left, joints_right=layout.joints_right, seed=args.seed,
                        rank=info.rank, world_size=info.world_size)
    validate = None
    if not args.no_eval and val_sequences:
        sampler = make_sampler(args, args.val_timesteps)
        settings = eval_settings(args, layout, args.val_proposals, args.val_timesteps, progress=False)

        def validate(m):
            return Report(evaluate_sequences(m, sampler, val_sequences, settings, device)).headline()
    writer = None
    if not args.nolog and info.is_main:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(args.log)
    cfg = TrainConfig(epochs=args.epochs, lr=args.learning_rate, lr_decay=args.lr_decay,
                      weight_decay=args.weight_decay, seed=args.seed, checkpoint_frequency=args.checkpoint_frequency,
                      amp_dtype=amp_dtype(args.amp), progress=show_progress(args))
    net = wrap(model, info, device)
    work = args.epochs * clips.num_batches() * clips.batch_size * 3 * sampling_flops(model.cfg, 1, 1, False)
    if compile_wanted(args.compile, device, work):
        if torch.device(device).type == "cpu":
            configure_cpu_compile()
        net = torch.compile(model if net is None else net)
        log("training through torch.compile (the first steps compile the model)")
    trainer = Trainer(model, diffusion, clips, cfg, device, args.checkpoint, validate=validate, writer=writer,
                      dist=info, ddp_model=net, extra_state={"args": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))},
                                   "train_data": _training_data(train_sequences)})
    if resumed:
        trainer.resume(resumed, args.resume)
        log(f"resumed from {args.resume} after epoch {trainer.epoch}")
    set_interrupt_hint((lambda: _training_interrupted(trainer, args)) if info.is_main else
                       f"rank {info.rank} stopped with the others (rank 0 says how to continue)")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"training {n_params / 1e6:.2f}M parameters on {device}"
        f"{f' x {info.world_size} processes' if info.enabled else ''}: {len(train_sequences)} sequences, "
        f"{clips.num_batches()} batches of {clips.batch_size} clips per epoch{' per process' if info.enabled else ''}")
    trainer.fit(log)
    if writer is not None:
        writer.close()
    cleanup(info)
    return trainer


def entry_point(main):
    """Run an entry script's main(), turning our exceptions into a one-line message."""
    from .datasets.base import DatasetError
    from .outputs import interrupt_hint

    set_interrupt_hint("")
    with signals.handle_signals():                   # SIGTERM stops as Ctrl-C does
        try:
            return main()
        except (CheckpointError, DatasetError, ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as e:
            print(f"\ninterrupted by {signals.signal_name(e)}: "
                  f"{interrupt_hint() or 'stopped before any result was written'}", file=sys.stderr)
            return signals.exit_code(e)
