"""Diffusion: the cosine schedule, forward noising for training, and the DDIM sampler.

The network never sees the schedule: `Diffusion` owns the schedule and the clamping/scaling
around the network, `DDIMSampler` owns the time pairs and the update rule.
"""
from __future__ import annotations

import math

import torch

from .device import autocast
from .skeleton import flip_pose


def cosine_beta_schedule(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """Betas of the cosine schedule (Nichol & Dhariwal), float64, clipped to [0, 0.999]."""
    x = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64)
    abar = torch.cos(((x / timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
    abar = abar / abar[0]
    betas = 1 - (abar[1:] / abar[:-1])
    return torch.clip(betas, 0, 0.999)


def ddim_time_pairs(timesteps: int, steps: int) -> list[tuple[int, int]]:
    """(t, t_next) pairs of a K-step DDIM run, e.g. K=5, T=1000: (999, 799) ... (199, -1)."""
    times = torch.linspace(-1, timesteps - 1, steps=steps + 1)
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
        self.sqrt_recip_alphas_cumprod = (1.0 / self.alphas_cumprod).sqrt()
        self.sqrt_recipm1_alphas_cumprod = (1.0 / self.alphas_cumprod - 1).sqrt()

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=-1.1 * self.scale, max=1.1 * self.scale)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noised poses x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, per sample t (B,).
        Coefficients in float64 as in the authors' code; result in x0's dtype."""
        shape = (-1,) + (1,) * (x0.dim() - 1)
        a = self.sqrt_alphas_cumprod.to(x0.device)[t].reshape(shape)
        b = self.sqrt_one_minus_alphas_cumprod.to(x0.device)[t].reshape(shape)
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

    def predict_x0(self, model, x2d: torch.Tensor, x: torch.Tensor, t: int, cond=None,
                   flip: "FlipTTA | None" = None) -> torch.Tensor:
        """Clean-pose prediction from noisy poses x (B, H, F, J, 3) at timestep t:
        clamp, divide by scale, run the network (averaged with the flipped run when `flip`
        is given), multiply by scale, clamp."""
        b = x.shape[0]
        x_in = self.clamp(x) / self.scale
        if flip is None:
            t_b = torch.full((b,), t, dtype=torch.long, device=x.device)
            x0 = model(x2d, x_in, t_b, cond=cond)
        else:
            x0 = flip.predict(model, x2d, x_in, t, cond)
        return self.clamp(x0 * self.scale)

    def predict_noise(self, x: torch.Tensor, t: int, x0: torch.Tensor) -> torch.Tensor:
        """eps = (sqrt(1/abar_t) x - x0) / sqrt(1/abar_t - 1), computed in float64 from the
        unclamped x and cast back to x's dtype (as the authors' flip path does)."""
        eps = (float(self.sqrt_recip_alphas_cumprod[t]) * x.double() - x0.double()) \
            / float(self.sqrt_recipm1_alphas_cumprod[t])
        return eps.to(x.dtype)


class FlipTTA:
    """Test-time flip augmentation: the network also sees the mirrored 2D input and mirrored
    noisy poses; its output is mirrored back and averaged with the plain output.

    batched=True runs both in one network call (one pass over a doubled batch); False runs
    two calls, as the authors' code does. Results agree to float rounding.
    """

    def __init__(self, x2d_flip: torch.Tensor, joints_left, joints_right, batched: bool = True,
                 cond_flip: torch.Tensor | None = None):
        self.x2d_flip = x2d_flip
        self.joints_left = list(joints_left)
        self.joints_right = list(joints_right)
        self.batched = batched
        self.cond_flip = cond_flip

    def flip(self, x: torch.Tensor) -> torch.Tensor:
        return flip_pose(x, self.joints_left, self.joints_right)

    def rows(self, rows: slice) -> "FlipTTA":
        """The same augmentation for a slice of the batch's clips."""
        return FlipTTA(self.x2d_flip[rows], self.joints_left, self.joints_right, self.batched,
                       None if self.cond_flip is None else self.cond_flip[rows])

    def predict(self, model, x2d, x_in, t: int, cond=None) -> torch.Tensor:
        b = x_in.shape[0]
        x_in_flip = self.flip(x_in)
        if self.batched:
            both_cond = None if cond is None or self.cond_flip is None else torch.cat([cond, self.cond_flip])
            t_b = torch.full((2 * b,), t, dtype=torch.long, device=x_in.device)
            out = model(torch.cat([x2d, self.x2d_flip]), torch.cat([x_in, x_in_flip]), t_b, cond=both_cond)
            plain, mirrored = out[:b], out[b:]
        else:
            t_b = torch.full((b,), t, dtype=torch.long, device=x_in.device)
            plain = model(x2d, x_in, t_b, cond=cond)
            mirrored = model(self.x2d_flip, x_in_flip, t_b, cond=self.cond_flip)
        return (plain + self.flip(mirrored)) / 2


def hypothesis_chunks(batch: int, hypotheses: int, limit: int | None):
    """Split B clips x H hypotheses into (clip slice, hypothesis slice) pieces of at most
    `limit` clip-hypotheses each (None: one piece). Whole clips are grouped while H fits."""
    if limit is None or batch * hypotheses <= limit:
        yield slice(None), slice(None)
    elif hypotheses <= limit:
        step = limit // hypotheses
        for b0 in range(0, batch, step):
            yield slice(b0, b0 + step), slice(None)
    else:
        for b0 in range(batch):
            for h0 in range(0, hypotheses, limit):
                yield slice(b0, b0 + 1), slice(h0, h0 + limit)


# Working-set budget of one denoiser call on the CPU: one (tokens, C) float32 activation of a
# call stays about cache-sized, past which the memory-bound layers slow down (see benchmarks/).
CPU_ACTIVATION_BUDGET = 4 * 2 ** 20


def auto_hypothesis_limit(cfg, device) -> int:
    """Clip-hypotheses per denoiser call that keep a call's working set in budget: cache-sized
    on the CPU, half the free memory on a GPU (about 16 activations per clip-hypothesis
    plus the temporal attention scores when attention is not fused)."""
    device = torch.device(device)
    activation = cfg.frames * cfg.joints * cfg.channels * 4
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        scores = cfg.heads * cfg.joints * cfg.frames * cfg.frames * 4
        return max(1, int(0.5 * free) // (16 * activation + 2 * scores))
    return max(1, CPU_ACTIVATION_BUDGET // activation)


class DDIMSampler:
    """DDIM sampling with eta (docs/method.md, 'Diffusion'); keeps every iteration's x0.

    Compute options, none of which changes the result beyond float rounding:
    max_batch_hypotheses: clip-hypotheses per denoiser call (the flipped copies of batched
    flip TTA count too); None runs everything in one call, 0 picks a limit for the device
    (`auto_hypothesis_limit`). amp_dtype: run the denoiser under torch.autocast with this
    dtype (torch.bfloat16 / torch.float16); the update rule stays in float32.
    """

    def __init__(self, diffusion: Diffusion, steps: int, eta: float = 1.0,
                 max_batch_hypotheses: int | None = None, amp_dtype: torch.dtype | None = None):
        self.diffusion = diffusion
        self.steps = steps
        self.eta = eta
        self.time_pairs = ddim_time_pairs(diffusion.timesteps, steps)
        self.max_batch_hypotheses = max_batch_hypotheses
        self.amp_dtype = amp_dtype

    def step_coefficients(self, t: int, t_next: int) -> tuple[float, float, float]:
        """(sqrt(abar_t'), c, sigma) of the update x' = x0 sqrt(abar_t') + c eps + sigma z."""
        abar = self.diffusion.alphas_cumprod
        a, a_next = abar[t], abar[t_next]
        sigma = self.eta * ((1 - a / a_next) * (1 - a_next) / (1 - a)).sqrt()
        c = (1 - a_next - sigma ** 2).sqrt()
        return float(a_next.sqrt()), float(c), float(sigma)

    def hypothesis_limit(self, model, device, flip: FlipTTA | None) -> int | None:
        """Clip-hypotheses per call of `predict_x0` (halved when batched flip doubles a call)."""
        limit = self.max_batch_hypotheses
        if limit == 0:
            limit = auto_hypothesis_limit(model.cfg, device) if hasattr(model, "cfg") else None
        if limit is not None and flip is not None and flip.batched:
            limit = max(1, limit // 2)
        return limit

    def predict_x0(self, model, x2d, x, t: int, cond, flip: FlipTTA | None, limit: int | None) -> torch.Tensor:
        """Diffusion.predict_x0 over hypothesis chunks, under autocast when asked."""
        chunks = list(hypothesis_chunks(x.shape[0], x.shape[1], limit))
        out = torch.empty_like(x) if len(chunks) > 1 else None
        for rows, hyps in chunks:
            with autocast(x.device, self.amp_dtype):
                x0 = self.diffusion.predict_x0(
                    model, x2d[rows], x[rows, hyps], t, cond=None if cond is None else cond[rows],
                    flip=None if flip is None else flip.rows(rows))
            x0 = x0.to(x.dtype)
            if out is None:
                return x0
            out[rows, hyps] = x0
        return out

    @torch.no_grad()
    def sample(self, model, x2d: torch.Tensor, num_hypotheses: int, flip: FlipTTA | None = None,
               generator: torch.Generator | None = None, noise: list | None = None) -> torch.Tensor:
        """Sample H hypotheses for 2D clips x2d (B, F, J, 2).

        noise: optional list of the K normal draws (B, H, F, J, 3) to use instead of fresh
        ones (draw 0 is x_T, draw i the z of the update after iteration i), to replay a run.
        Returns the x0 prediction of every iteration, (B, K, H, F, J, 3).
        """
        b, f, j, _ = x2d.shape
        shape = (b, num_hypotheses, f, j, 3)
        draws = iter(noise) if noise is not None else None

        def normal() -> torch.Tensor:
            if draws is not None:
                return next(draws).to(device=x2d.device, dtype=x2d.dtype)
            return torch.randn(shape, device=x2d.device, dtype=x2d.dtype, generator=generator)

        cond = model.embed_2d(x2d) if hasattr(model, "embed_2d") else None
        if flip is not None and cond is not None and flip.cond_flip is None:
            flip.cond_flip = model.embed_2d(flip.x2d_flip)
        limit = self.hypothesis_limit(model, x2d.device, flip)
        x = normal()
        outputs = []
        for t, t_next in self.time_pairs:
            x0 = self.predict_x0(model, x2d, x, t, cond, flip, limit)
            outputs.append(x0)
            if t_next < 0:
                break
            eps = self.diffusion.predict_noise(x, t, x0)
            a_next, c, sigma = self.step_coefficients(t, t_next)
            x = x0 * a_next + c * eps + sigma * normal()
        return torch.stack(outputs, dim=1)
