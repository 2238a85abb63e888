"""What every entry script does once it has its sequences: build the model, train it, or
evaluate a checkpoint and write the result tables. Entry scripts only choose the data."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from .arguments import explicit_architecture, fill_architecture, model_config, resolve_checkpoint_path
from .checkpoint import load_denoiser
from .clips import ClipSampler
from .denoiser import Denoiser
from .device import amp_dtype, prepare_model
from .diffusion import DDIMSampler, Diffusion
from .distributed import cleanup, init_from_env, wrap
from .datasets.base import Layout
from .evaluate import EvalSettings, evaluate_sequences
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


def eval_settings(args, layout: Layout, hypotheses: int, iterations: int, **overrides) -> EvalSettings:
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
    sampler = make_sampler(args, args.sampling_timesteps)
    settings = eval_settings(args, layout, args.num_proposals, args.sampling_timesteps, **overrides)
    results = evaluate_sequences(model, sampler, sequences, settings, device)
    report = Report(results, by_subject=getattr(args, "by_subject", False))
    header = (f"{name}: H={settings.hypotheses} K={settings.iterations} flip={settings.flip} -b {settings.group}"
              f"{' exact-frames' if settings.exact_frames else ''}  ({len(sequences)} sequences)")
    meta = {"settings": {k: v for k, v in vars(settings).items() if not k.startswith("keep")},
            "checkpoint": str(getattr(args, "evaluate", ""))}
    report.write(out_dir, name, header, meta, log=log)
    return report, results


def load_for_evaluation(args, device, with_checkpoint: bool = False):
    """The model of --evaluate, ready to sample on device; its architecture comes from the
    file, checked against the -f/-cs/-dep given (if any). with_checkpoint: also return the
    loaded checkpoint dict."""
    args.evaluate = str(resolve_checkpoint_path(args.evaluate, args.checkpoint, "--evaluate"))
    model, checkpoint = load_denoiser(args.evaluate, explicit_architecture(args), heads=args.heads)
    fill_architecture(args, model.cfg)
    model = prepare_model(model.to(device).eval(), device, args.compile)
    return (model, checkpoint) if with_checkpoint else model


def run_training(args, train_sequences, val_sequences, layout: Layout, device, log=print) -> Trainer:
    """Train per method.md's recipe; validate on val_sequences with (--val-proposals, --val-timesteps).
    Under torchrun, every process trains its share of each global batch (common.distributed)."""
    if not train_sequences:
        raise ValueError("no training sequences were selected (check -str, -a)")
    if args.resume:
        args.resume = str(resolve_checkpoint_path(args.resume, args.checkpoint, "-r"))
    batch_clips = training_clips(args)
    info, device = init_from_env(device)
    if not info.is_main:
        log = lambda *_: None
    torch.manual_seed(args.seed)
    model = prepare_model(Denoiser(model_config(args)).to(device), device)
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
                      amp_dtype=amp_dtype(args.amp))
    net = wrap(model, info, device)
    if args.compile:
        net = torch.compile(model if net is None else net)
    trainer = Trainer(model, diffusion, clips, cfg, device, args.checkpoint, validate=validate, writer=writer,
                      dist=info, ddp_model=net, extra_state={"args": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}})
    if args.resume:
        trainer.resume(args.resume)
        log(f"resumed from {args.resume} after epoch {trainer.epoch}")
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
    from .checkpoint import CheckpointError
    from .datasets.h36m import DatasetError

    try:
        return main()
    except (CheckpointError, DatasetError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
