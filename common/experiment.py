"""What every entry script does once it has its sequences: build the model, train it, or
evaluate a checkpoint and write the result tables. Entry scripts only choose the data."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .arguments import explicit_architecture, fill_architecture, model_config
from .checkpoint import load_denoiser
from .clips import ClipSampler
from .denoiser import Denoiser
from .device import amp_dtype, compile_wanted, configure_cpu_compile, prepare_model
from .diffusion import DDIMSampler, Diffusion
from .distributed import cleanup, init_from_env, wrap
from .engine import OpenVINODenoiser, for_sampling, sampling_flops
from .evaluate import (EvalSettings, average_over, evaluate_sequences, format_iterations, format_table,
                       results_json, summarize)
from .train import Trainer, TrainConfig


@dataclass
class Layout:
    """Joint layout of a data set: left/right joints of the 3D output and of the 2D input."""

    joints_left: list
    joints_right: list
    kps_left: list
    kps_right: list


def eval_settings(args, layout: Layout, hypotheses: int, iterations: int, **overrides) -> EvalSettings:
    return EvalSettings(hypotheses=hypotheses, iterations=iterations, flip=args.test_time_augmentation,
                        group=args.batch_size, compute_batch=args.eval_batch, protocol2=args.p2,
                        exact_frames=args.exact_frames, seed=args.seed,
                        joints_left=tuple(layout.joints_left), joints_right=tuple(layout.joints_right),
                        kps_left=tuple(layout.kps_left), kps_right=tuple(layout.kps_right), **overrides)


def log_to(path: Path):
    """A print function that also appends to a log file."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def log(text: str = "") -> None:
        print(text)
        with open(path, "a") as f:
            f.write(text + "\n")
    return log


def make_sampler(args, steps: int) -> DDIMSampler:
    """The DDIM sampler of the command line: -timestep, -scale, --eta and the speed flags."""
    return DDIMSampler(Diffusion(args.timestep, args.scale), steps, args.eta,
                       max_batch_hypotheses=args.max_batch_hypotheses, amp_dtype=amp_dtype(args.amp))


def run_evaluation(args, model, sequences, layout: Layout, device, out_dir: Path, name: str,
                   log=print, **overrides):
    """Evaluate with H = -num_proposals, K = -sampling_timesteps; print the tables, write
    <name>.log and <name>.json to out_dir. Returns (action table, per-sequence results)."""
    sampler = make_sampler(args, args.sampling_timesteps)
    settings = eval_settings(args, layout, args.num_proposals, args.sampling_timesteps, **overrides)
    windows = sum(-(-s.num_frames // model.cfg.frames) for s in sequences)
    work = sampling_flops(model.cfg, windows * settings.hypotheses, settings.iterations, settings.flip)
    model = for_sampling(model, getattr(args, "engine", "auto"), device, work, args.amp, args.compile == "on", log)
    if isinstance(model, OpenVINODenoiser):
        sampler.amp_dtype = None                          # the precision is OpenVINO's
    results = evaluate_sequences(model, sampler, sequences, settings, device)
    table = summarize(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_to(out_dir / f"{name}.log")
    header = (f"{name}: H={settings.hypotheses} K={settings.iterations} flip={settings.flip} -b {settings.group}"
              f"{' exact-frames' if settings.exact_frames else ''}  ({len(sequences)} sequences)")
    log_file(header)
    protocols = [("p1", "Protocol #1 (MPJPE, mm)")] + ([("p2", "Protocol #2 (P-MPJPE, mm)")] if args.p2 else [])
    for protocol, title in protocols:
        log_file(format_table(table, protocol, settings.iterations, f"{title}, iteration k={settings.iterations}"))
        log_file(format_iterations(table, protocol, f"{title}, average over actions per iteration"))
        if getattr(args, "by_subject", False):
            by_subject = summarize(results, key=lambda s: s.subject)
            log_file(format_table(by_subject, protocol, settings.iterations, f"{title} by subject"))
    payload = {"settings": {k: v for k, v in vars(settings).items() if not k.startswith("keep")},
               "checkpoint": str(getattr(args, "evaluate", "")), "actions": results_json(table)}
    if getattr(args, "by_subject", False):
        payload["subjects"] = results_json(summarize(results, key=lambda s: s.subject))
    (out_dir / f"{name}.json").write_text(json.dumps(payload, indent=1))
    log_file(f"wrote {out_dir / (name + '.log')} and {out_dir / (name + '.json')}")
    return table, results


def load_for_evaluation(args, device, with_checkpoint: bool = False):
    """The model of --evaluate, ready to sample on device; its architecture comes from the
    file, checked against the -f/-cs/-dep given (if any). with_checkpoint: also return the
    loaded checkpoint dict."""
    model, checkpoint = load_denoiser(args.evaluate, explicit_architecture(args), heads=args.heads)
    fill_architecture(args, model.cfg)
    model = prepare_model(model.to(device).eval(), device, args.compile == "on")
    return (model, checkpoint) if with_checkpoint else model


def run_training(args, train_sequences, val_sequences, layout: Layout, device, log=print) -> Trainer:
    """Train per method.md's recipe; validate on val_sequences with (--val-proposals, --val-timesteps).
    Under torchrun, every process trains its share of each global batch (common.distributed)."""
    info, device = init_from_env(device)
    if not info.is_main:
        log = lambda *_: None
    torch.manual_seed(args.seed)
    model = prepare_model(Denoiser(model_config(args)).to(device), device)
    diffusion = Diffusion(args.timestep, args.scale)
    clips = ClipSampler(train_sequences, args.number_of_frames, args.batch_size, augment=args.data_augmentation,
                        kps_left=layout.kps_left, kps_right=layout.kps_right,
                        joints_left=layout.joints_left, joints_right=layout.joints_right, seed=args.seed,
                        rank=info.rank, world_size=info.world_size)
    validate = None
    if not args.no_eval and val_sequences:
        sampler = make_sampler(args, args.val_timesteps)
        settings = eval_settings(args, layout, args.val_proposals, args.val_timesteps, progress=False)

        def validate(m):
            table = summarize(evaluate_sequences(m, sampler, val_sequences, settings, device))
            return float(average_over(table)[("p1", "J-Agg")][-1])
    writer = None
    if not args.nolog and info.is_main:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(args.log)
    cfg = TrainConfig(epochs=args.epochs, lr=args.learning_rate, lr_decay=args.lr_decay,
                      weight_decay=args.weight_decay, seed=args.seed, checkpoint_frequency=args.checkpoint_frequency,
                      amp_dtype=amp_dtype(args.amp))
    net = wrap(model, info, device)
    work = args.epochs * clips.num_batches() * args.batch_size * 3 * sampling_flops(model.cfg, 1, 1, False)
    if compile_wanted(args.compile, device, work):
        if torch.device(device).type == "cpu":
            configure_cpu_compile()
        net = torch.compile(model if net is None else net)
        log("training through torch.compile (the first steps compile the model)")
    trainer = Trainer(model, diffusion, clips, cfg, device, args.checkpoint, validate=validate, writer=writer,
                      dist=info, ddp_model=net, extra_state={"args": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}})
    if args.resume:
        trainer.resume(args.resume)
        log(f"resumed from {args.resume} after epoch {trainer.epoch}")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"training {n_params / 1e6:.2f}M parameters on {device}"
        f"{f' x {info.world_size} processes' if info.enabled else ''}: {len(train_sequences)} sequences, "
        f"{clips.num_batches()} batches of {args.batch_size} clips per epoch{' per process' if info.enabled else ''}")
    trainer.fit(log)
    if writer is not None:
        writer.close()
    cleanup(info)
    return trainer


def entry_point(main):
    """Run an entry script's main(), turning our exceptions into a one-line message."""
    from .checkpoint import CheckpointError
    from .datasets.h36m import DatasetError

    try:
        return main()
    except (CheckpointError, DatasetError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
