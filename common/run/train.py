"""Training: the plain loop of the recipe in docs/method.md, with exact resume and safe checkpoints.

One epoch: every training window of every sequence (twice with flip augmentation), in a
shuffled order; per batch: noise the root-relative 3D poses at random timesteps, predict x0,
MPJPE loss, AdamW step. After the epoch: learning rate x lr_decay, a quick validation, and
checkpoints (latest every epoch, best on validation, one every `checkpoint_frequency`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from . import signals
from ..model.checkpoint import atomic_save, make_checkpoint, safe_load
from ..model.device import autocast, to_device
from ..model.diffusion import Diffusion
from .distributed import DistInfo, agreed_stop, gather_states, mean_over_ranks
from ..evaluation.metrics import mpjpe


# Batches between reads of the running loss for the progress bar (each read waits for the device).
LOG_EVERY = 20
# Batches between the ranks' agreement on a stop under torchrun (an all-reduce the host waits
# for); a signal stops the run at most this many batches later, and always at an epoch's end.
STOP_CHECK_EVERY = 20


@dataclass
class TrainConfig:
    epochs: int = 400
    lr: float = 6e-5
    lr_decay: float = 0.993
    weight_decay: float = 0.1
    seed: int = 1
    checkpoint_frequency: int = 20
    progress: bool = True
    amp_dtype: torch.dtype | None = None   # autocast the forward pass (bf16 / fp16)


class Trainer:
    """Owns the model, optimizer, RNGs and clip sampler of one training run."""

    def __init__(self, model, diffusion: Diffusion, clips, cfg: TrainConfig, device, out_dir,
                 validate=None, writer=None, dist: DistInfo | None = None, ddp_model=None,
                 extra_state: dict | None = None):
        self.model = model
        self.net = model if ddp_model is None else ddp_model   # what the forward pass runs through (DDP wrapper or model)
        self.diffusion = diffusion
        self.clips = clips
        self.cfg = cfg
        self.device = device
        self.out_dir = Path(out_dir)
        self.validate = validate               # callable(model) -> error in metres, or None
        self.writer = writer
        self.dist = dist or DistInfo()
        self.extra_state = extra_state or {}
        self.optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
        # fp16 gradients need loss scaling; bf16 and float32 do not.
        self.scaler = torch.amp.GradScaler(torch.device(device).type, enabled=cfg.amp_dtype == torch.float16)
        self.lr = cfg.lr
        self.epoch = 0                          # epochs completed
        self.best_error = math.inf
        self.generator = torch.Generator(device=device).manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed + self.dist.rank)   # drop-path masks draw from the global generator

    # ------------------------------------------------------------------ state
    def state(self, rank_rng: list | None = None) -> dict:
        """rank_rng: distributed, every rank's generator states (_rng_states), so that each
        rank resumes its own drop-path draws. Only the run's own device's RNG is stored (not
        every visible GPU's), with the device type of each generator, so that the checkpoint
        resumes on another device type or with another number of GPUs."""
        extra = {"rank_rng": rank_rng} if rank_rng else {}
        device = torch.device(self.device)
        device_rng = {"type": "cuda", "state": torch.cuda.get_rng_state(device)} if device.type == "cuda" else None
        return make_checkpoint(
            self.model, epoch=self.epoch, lr=self.lr, optimizer=self.optimizer.state_dict(),
            random_state=self.clips.random_state(), best_error=self.best_error,
            train_generator=self.generator.get_state(), train_generator_device=device.type,
            grad_scaler=self.scaler.state_dict(), torch_rng=torch.get_rng_state(), device_rng=device_rng,
            **self.extra_state, **extra)

    def _rng_states(self) -> list[torch.Tensor]:
        """This process's global generators that training draws from (drop-path masks): the
        CPU's, and its CUDA device's."""
        states = [torch.get_rng_state()]
        if torch.device(self.device).type == "cuda":
            states.append(torch.cuda.get_rng_state(self.device))
        return states

    def resume(self, checkpoint, path=None) -> list[str]:
        """Continue exactly where a checkpoint of ours (a path, or its loaded dict) left off.
        On the device type it was saved on the continuation is exact; on another (a CPU run's
        checkpoint on a GPU, or the reverse) the generators cannot carry over, so the noise
        draws restart from a stream seeded by (seed, epoch). Returns notes saying so."""
        ckpt = safe_load(checkpoint, map_location="cpu") if path is None else checkpoint
        path = checkpoint if path is None else path
        if "train_generator" not in ckpt:
            raise ValueError(f"{path} holds no training state (an authors' or evaluation-only checkpoint); "
                             f"it can be evaluated with --evaluate but not resumed")
        self.model.load_state_dict(ckpt["model_pos"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.lr, self.epoch, self.best_error = ckpt["lr"], ckpt["epoch"], ckpt["best_error"]
        self.clips.set_random_state(ckpt["random_state"])
        if ckpt.get("grad_scaler"):
            self.scaler.load_state_dict(ckpt["grad_scaler"])
        torch.set_rng_state(ckpt["torch_rng"])
        here = torch.device(self.device)
        saved = saved_generator_device(ckpt)
        notes = []
        if saved == here.type:
            self.generator.set_state(ckpt["train_generator"])
            device_state = saved_device_rng(ckpt, here)
            if device_state is not None:
                torch.cuda.set_rng_state(device_state, here)
        else:
            self.generator.manual_seed(self.cfg.seed * 1_000_003 + self.epoch)
            notes.append(f"{path} was trained on {saved.upper()} and resumes on {here.type.upper()}: the training "
                         f"noise continues from a new stream seeded by (--seed, epoch), so the run is not the "
                         f"bit-identical continuation it would be on {saved.upper()}")
        rank_rng = ckpt.get("rank_rng") or []
        if self.dist.enabled and len(rank_rng) == self.dist.world_size:    # each rank's own draws
            own = rank_rng[self.dist.rank]
            torch.set_rng_state(own[0])
            if len(own) > 1 and here.type == "cuda" and saved == "cuda":
                torch.cuda.set_rng_state(own[1], here)
        return notes

    # ------------------------------------------------------------------ loop
    def train_epoch(self) -> tuple[float, float]:
        """One pass over the shuffled clips; returns (mean loss in metres, clips per second).

        Nothing in a step waits for the device: the loss is summed on the device and read
        every LOG_EVERY batches (the progress bar) and at the epoch's end; under torchrun the
        ranks agree on a stop every STOP_CHECK_EVERY batches."""
        self.net.train()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        frames, clips_seen, start = 0, 0, time.perf_counter()
        batches = self.clips.next_epoch()
        bar = tqdm(batches, total=self.clips.num_batches(), desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}",
                   unit="batch", disable=not (self.cfg.progress and self.dist.is_main), leave=False)
        for step, batch in enumerate(bar, 1):
            x2d = to_device(batch["pose_2d"], self.device)
            x3d = to_device(batch["pose_3d"], self.device)
            x_t, t = self.diffusion.training_input(x3d, generator=self.generator,
                                                   shard=(self.dist.rank, self.dist.world_size))
            with autocast(self.device, self.cfg.amp_dtype):
                pred = self.net(x2d, x_t, t)
            loss = mpjpe(pred.float(), x3d)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            n = x3d.shape[0] * x3d.shape[1]
            total += loss.detach().double() * n
            frames += n
            clips_seen += x3d.shape[0]
            if step % LOG_EVERY == 0 and not bar.disable:
                bar.set_postfix(loss=f"{1000 * float(total) / frames:.1f}mm",
                                clips_s=f"{clips_seen / (time.perf_counter() - start):.1f}")
            if step % STOP_CHECK_EVERY == 0:
                self._stop_point()
        speed = clips_seen / (time.perf_counter() - start) * self.dist.world_size
        return mean_over_ranks(float(total) / max(frames, 1), frames, self.dist, self.device), speed

    def fit(self, log=print) -> float:
        """Train until cfg.epochs epochs are complete; returns the best validation error (m).

        SIGINT / SIGTERM (common.run.signals) stop the run: at once in one process, never while
        checkpoints are written; under torchrun every rank holds the signal until all of them
        agree (they check every STOP_CHECK_EVERY batches and after the epoch's checkpoints),
        and stops there."""
        if not self.dist.enabled:
            return self._fit(log)
        with signals.deferred():
            return self._fit(log)

    def _stop_point(self) -> None:
        """Distributed: a safe point to stop at; all ranks stop when any of them received a signal."""
        if self.dist.enabled:
            signals.raise_if_requested(agreed_stop(signals.stop_requested(), self.dist, self.device))

    def _fit(self, log) -> float:
        while self.epoch < self.cfg.epochs:
            loss, speed = self.train_epoch()
            rank_rng = gather_states(self._rng_states(), self.dist, self.device) if self.dist.enabled else None
            self.epoch += 1
            self.lr *= self.cfg.lr_decay
            for group in self.optimizer.param_groups:
                group["lr"] *= self.cfg.lr_decay
            error = self.validate(self.model) if self.validate and self.dist.is_main else math.nan
            improved = error < self.best_error
            if improved:
                self.best_error = error
            if self.dist.is_main:
                log(f"[{self.epoch}] lr {self.lr:.3e}  train {1000 * loss:.2f} mm  "
                    f"val {1000 * error:.2f} mm{'  (best)' if improved else ''}  {speed:.1f} clips/s")
                self._save(improved, rank_rng)
                if self.writer is not None:
                    self.writer.add_scalar("loss/train_mpjpe_mm", 1000 * loss, self.epoch)
                    self.writer.add_scalar("lr", self.lr, self.epoch)
                    if not math.isnan(error):
                        self.writer.add_scalar("loss/val_mpjpe_mm", 1000 * error, self.epoch)
            self._stop_point()                 # also the ranks' barrier at the end of an epoch
        return self.best_error

    def _save(self, improved: bool, rank_rng: list | None = None) -> None:
        with signals.deferred():       # an interrupt waits until the epoch's checkpoints are all written
            state = self.state(rank_rng)
            atomic_save(state, self.out_dir / "latest_epoch.bin")
            if improved:
                atomic_save(state, self.out_dir / "best_epoch.bin")
            if self.cfg.checkpoint_frequency and self.epoch % self.cfg.checkpoint_frequency == 0:
                atomic_save(state, self.out_dir / f"epoch_{self.epoch}.bin")


# The state sizes of torch's generators: the CPU's Mersenne Twister, CUDA's Philox (seed, offset).
_CPU_GENERATOR_BYTES = 5056


def saved_generator_device(ckpt: dict) -> str:
    """The device type a checkpoint's training generator ran on (files written before this was
    recorded: told by the state's size)."""
    recorded = ckpt.get("train_generator_device")
    if recorded:
        return recorded
    return "cpu" if ckpt["train_generator"].numel() == _CPU_GENERATOR_BYTES else "cuda"


def saved_device_rng(ckpt: dict, device: torch.device) -> torch.Tensor | None:
    """The saved CUDA RNG state for a run on `device`: the run's own (device_rng), or, in files
    that stored every visible GPU's (cuda_rng), the entry of the same index when there is one.
    None on the CPU or when nothing fits (more GPUs were visible when it was saved is fine)."""
    if device.type != "cuda":
        return None
    own = ckpt.get("device_rng")
    if own:
        return own["state"] if own.get("type") == "cuda" else None
    every = ckpt.get("cuda_rng") or []
    index = device.index or 0
    return every[index] if index < len(every) else None


def make_optimizer(model, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW, with PyTorch's fused kernel (one update for all parameters) where it exists."""
    devices = {p.device.type for p in model.parameters()}
    fused = devices <= {"cpu", "cuda"}
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=fused or None)
