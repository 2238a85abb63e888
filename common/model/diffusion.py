"""Diffusion: the cosine schedule, forward noising for training, and the DDIM sampler.

The network never sees the schedule: `Diffusion` owns the schedule, the clamping and the
forward noising of training; `DDIMSampler` owns the time pairs, the clean-pose prediction
around the network and the update rule (`DDIMSampler.step`).
"""
from __future__ import annotations

import math

import torch

from .chunking import map_in_chunks, resolve_limit
from .device import autocast
from ..geometry.skeleton import flip_pose


def cosine_beta_schedule(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """Betas of the cosine schedule (Nichol & Dhariwal), float64, clipped to [0, 0.999]."""
    x = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64)
    abar = torch.cos(((x / timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
    abar = abar / abar[0]
    betas = 1 - (abar[1:] / abar[:-1])
    return torch.clip(betas, 0, 0.999)


def ddim_time_pairs(timesteps: int, iterations: int) -> list[tuple[int, int]]:
    """(t, t_next) pairs of a DDIM run of K iterations, e.g. K=5, T=1000: (999, 799) ... (199, -1)."""
    times = torch.linspace(-1, timesteps - 1, steps=iterations + 1)
    times = list(reversed(times.int().tolist()))
    return list(zip(times[:-1], times[1:]))


class Diffusion:
    """Schedule, clamping and scaling shared by training and sampling.

    Schedule arrays are float64 and live on the CPU; per-timestep coefficients are read as
    Python floats, so the sampling loop never synchronises with an accelerator.
    """

    def __init__(self, timesteps: int = 1000, scale: float = 1.0):
        self.timesteps = timesteps
        self.scale = scale
        self.betas = cosine_beta_schedule(timesteps)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()
        self._on_device = {}                  # device -> (sqrt abar, sqrt(1 - abar)) there, copied once

    def _coefficients(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The q_sample coefficient tables on `device`, copied there on first use only."""
        if device not in self._on_device:
            self._on_device[device] = (self.sqrt_alphas_cumprod.to(device),
                                       self.sqrt_one_minus_alphas_cumprod.to(device))
        return self._on_device[device]

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=-1.1 * self.scale, max=1.1 * self.scale)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noised poses x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, per sample t (B,).
        Coefficients in float64 as in the authors' code; result in x0's dtype."""
        shape = (-1,) + (1,) * (x0.dim() - 1)
        sqrt_abar, sqrt_one_minus_abar = self._coefficients(x0.device)
        a = sqrt_abar[t].reshape(shape)
        b = sqrt_one_minus_abar[t].reshape(shape)
        return (a * x0 + b * noise).to(x0.dtype)

    def training_input(self, x0: torch.Tensor, generator: torch.Generator | None = None,
                       shard: tuple[int, int] = (0, 1)):
        """Network input for a training batch of root-relative poses x0 (B, F, J, 3):
        t ~ U{0..T-1} and noise ~ N(0, I) per sample, noised, clamped and divided by scale.
        shard = (rank, world_size): x0 is this rank's slice of a global batch of world_size x B;
        the draws are made for the global batch and sliced, so N processes draw what one
        process with the global batch would. Returns (x_t_scaled, t)."""
        b = x0.shape[0]
        rank, world = shard
        t = torch.randint(0, self.timesteps, (world * b,), device=x0.device, generator=generator)
        noise = torch.randn((world * b,) + x0.shape[1:], device=x0.device, dtype=x0.dtype, generator=generator)
        t, noise = t[rank * b:(rank + 1) * b], noise[rank * b:(rank + 1) * b]
        x_t = self.q_sample(x0 * self.scale, t, noise)
        return self.clamp(x_t) / self.scale, t


class FlipTTA:
    """Test-time flip augmentation: the network also sees the mirrored 2D input and mirrored
    noisy poses; its output is mirrored back and averaged with the plain output.

    batched=True runs both in one network call (one pass over a doubled batch); False runs
    two calls, as the authors' code does. Results agree to float rounding.
    """

    def __init__(self, x2d_flip: torch.Tensor, joints_left, joints_right, batched: bool = True):
        self.x2d_flip = x2d_flip
        self.joints_left = list(joints_left)
        self.joints_right = list(joints_right)
        self.batched = batched

    def flip(self, x: torch.Tensor) -> torch.Tensor:
        return flip_pose(x, self.joints_left, self.joints_right)

    def predict(self, model, x2d: torch.Tensor, x_in: torch.Tensor, t: int, rows: slice = slice(None)) -> torch.Tensor:
        """Mean of model(x2d, x_in) and the mirrored run, for the clips `rows` of the batch."""
        b = x_in.shape[0]
        x2d_flip, x_in_flip = self.x2d_flip[rows], self.flip(x_in)
        if self.batched:
            out = model(torch.cat([x2d, x2d_flip]), torch.cat([x_in, x_in_flip]), _timesteps(t, 2 * b, x_in.device))
            plain, mirrored = out[:b], out[b:]
        else:
            t_b = _timesteps(t, b, x_in.device)
            plain, mirrored = model(x2d, x_in, t_b), model(x2d_flip, x_in_flip, t_b)
        return (plain + self.flip(mirrored)) / 2


def _timesteps(t: int, batch: int, device) -> torch.Tensor:
    return torch.full((batch,), t, dtype=torch.long, device=device)


class DDIMSampler:
    """DDIM sampling with eta (docs/method.md, 'Diffusion'); keeps every iteration's x0.

    One iteration at timestep t: `predict_x0` asks the network for the clean poses, `step`
    moves x_t to x_t' with the DDIM update. Compute options, none of which changes the result
    beyond float rounding: max_batch_hypotheses, clip-hypotheses per denoiser call (the
    flipped copies of batched flip TTA count too; None: everything in one call, 0: a limit
    for the device, see common.model.chunking); amp_dtype, the denoiser under torch.autocast with
    this dtype (torch.bfloat16 / torch.float16), the update rule staying in float32.
    """

    def __init__(self, diffusion: Diffusion, iterations: int, eta: float = 1.0,
                 max_batch_hypotheses: int | None = None, amp_dtype: torch.dtype | None = None):
        if not 1 <= iterations <= diffusion.timesteps:
            raise ValueError(f"{iterations} DDIM iterations: give between 1 and the {diffusion.timesteps} diffusion "
                             f"timesteps")
        self.diffusion = diffusion
        self.iterations = iterations                 # K
        self.eta = eta
        self.time_pairs = ddim_time_pairs(diffusion.timesteps, iterations)
        self.max_batch_hypotheses = max_batch_hypotheses
        self.amp_dtype = amp_dtype

    def step(self, x: torch.Tensor, x0: torch.Tensor, t: int, t_next: int, z: torch.Tensor) -> torch.Tensor:
        """One DDIM update from x_t to x_t' (t' = t_next), given the clean prediction x0 and a
        normal draw z (Song et al. 2021, eq. 12, with abar the cumulative alpha product):

            eps   = (x_t / sqrt(abar_t) - x0) / sqrt(1 / abar_t - 1)
            sigma = eta * sqrt((1 - abar_t / abar_t') (1 - abar_t') / (1 - abar_t))
            x_t'  = sqrt(abar_t') x0 + sqrt(1 - abar_t' - sigma^2) eps + sigma z

        eps is computed in float64 from the unclamped x_t, as the authors' code does; the
        coefficients are Python floats, so no step waits for an accelerator."""
        abar = self.diffusion.alphas_cumprod
        a, a_next = abar[t], abar[t_next]
        eps = ((1 / a).sqrt().item() * x.double() - x0.double()) / (1 / a - 1).sqrt().item()
        sigma = self.eta * ((1 - a / a_next) * (1 - a_next) / (1 - a)).sqrt()
        c = (1 - a_next - sigma ** 2).sqrt()
        return x0 * float(a_next.sqrt()) + float(c) * eps.to(x.dtype) + float(sigma) * z

    def predict_x0(self, model, x2d: torch.Tensor, x: torch.Tensor, t: int, flip: FlipTTA | None = None) -> torch.Tensor:
        """Clean poses from noisy poses x (B, H, F, J, 3) at timestep t: clamp, divide by the
        scale, run the network (averaged with the mirrored run under `flip`), multiply by the
        scale, clamp. The network calls are split by common.model.chunking."""
        d = self.diffusion
        limit = resolve_limit(self.max_batch_hypotheses, getattr(model, "cfg", None), x.device,
                              doubled=flip is not None and flip.batched)

        def network(rows: slice, x2d_rows: torch.Tensor, x_rows: torch.Tensor) -> torch.Tensor:
            x_in = d.clamp(x_rows) / d.scale
            with autocast(x.device, self.amp_dtype):
                if flip is None:
                    out = model(x2d_rows, x_in, _timesteps(t, x_in.shape[0], x.device))
                else:
                    out = flip.predict(model, x2d_rows, x_in, t, rows)
                return d.clamp(out * d.scale).to(x.dtype)

        return map_in_chunks(network, x2d, x, limit)

    @torch.no_grad()
    def sample(self, model, x2d: torch.Tensor, hypotheses: int, flip: FlipTTA | None = None,
               generator: torch.Generator | None = None, noise: list | None = None) -> torch.Tensor:
        """Sample H hypotheses for 2D clips x2d (B, F, J, 2).

        noise: optional list of the K normal draws (B, H, F, J, 3) to use instead of fresh
        ones (draw 0 is x_T, draw i the z of the update after iteration i), to replay a run.
        Returns the x0 prediction of every iteration, (B, K, H, F, J, 3).
        """
        if hypotheses < 1:
            raise ValueError(f"{hypotheses} hypotheses: sampling needs at least 1")
        b, f, j, _ = x2d.shape
        shape = (b, hypotheses, f, j, 3)
        draws = iter(noise) if noise is not None else None

        def normal() -> torch.Tensor:
            if draws is not None:
                return next(draws).to(device=x2d.device, dtype=x2d.dtype)
            return torch.randn(shape, device=x2d.device, dtype=x2d.dtype, generator=generator)

        x = normal()
        outputs = torch.empty((b, len(self.time_pairs)) + shape[1:], device=x2d.device, dtype=x2d.dtype)
        for k, (t, t_next) in enumerate(self.time_pairs):
            x0 = self.predict_x0(model, x2d, x, t, flip)
            outputs[:, k] = x0                      # written in place: no list of K results, no stacked copy
            if t_next < 0:
                break
            x = self.step(x, x0, t, t_next, normal())
        return outputs
