"""The inference core: everything that turns 2D clips into sampled 3D hypotheses, in one place.

Evaluation (common.evaluation.evaluate), training's validation and calibration, drawing, in-the-wild
lifting (keypoints, video) and the Python API all sample through an InferenceCore, built once
from the run configuration (`InferenceCore.from_run`):

- the denoiser, and the engine that runs it for sampling (eager PyTorch, torch.compile or
  OpenVINO, common.model.engine), chosen for the amount of work and converted once per engine;
- the DDIM sampler: the diffusion schedule (-timestep, -scale), --eta, the chunking of
  denoiser calls (--max-batch-hypotheses) and autocast (--amp; cleared for OpenVINO, whose
  precision is its own);
- how hypotheses are drawn (Sampling): H, K, flip test-time augmentation with the data's joint
  layout, windows per group, windows per denoiser call and the seed.

A per-call setting (the API's hypotheses, iterations, seed, ...) is `core.replace(...)`, which
keeps the model and its converted engines; a new sampler setting is read here from the run and
nowhere else.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from ..geometry.coco import input_layout
from ..model.device import amp_dtype
from ..model.diffusion import DDIMSampler, Diffusion
from ..model.engine import OpenVINODenoiser, choose_engine, for_sampling
from .sampling import WindowGroup, sample_windows
from ..geometry.skeleton import Layout

ROOT = 0  # the root joint of the lifted output (Human3.6M-17 pelvis)


@dataclass(frozen=True)
class Sampling:
    """How the hypotheses are drawn. group: consecutive windows of one sequence that share a
    noise generator (and, in evaluation, P-Best's choice); compute_batch: windows per denoiser
    call (0: one group; speed only, never results)."""

    hypotheses: int = 1           # H
    iterations: int = 1           # K
    flip: bool = True             # flip test-time augmentation
    group: int = 4
    compute_batch: int = 0
    seed: int = 0

    @classmethod
    def of_run(cls, run, **overrides) -> "Sampling":
        """The run's sampling (-num_proposals, -sampling_timesteps, -no-tta, -b/--pbest-group,
        --eval-batch, --seed); overrides left None keep the run's value."""
        values = dict(hypotheses=run.num_proposals, iterations=run.sampling_timesteps,
                      flip=run.test_time_augmentation, group=run.pbest_clips(), compute_batch=run.eval_batch,
                      seed=run.seed)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def make_sampler(run, iterations: int) -> DDIMSampler:
    """The DDIM sampler of a run: -timestep, -scale, --eta, --max-batch-hypotheses and --amp."""
    return DDIMSampler(Diffusion(run.timestep, run.scale), iterations, run.eta,
                       max_batch_hypotheses=run.max_batch_hypotheses, amp_dtype=amp_dtype(run.amp))


class InferenceCore:
    """A model ready to sample on a device with a run's sampler and sampling settings.

    engines: choose an engine for the work at hand (--engine; False: sample the model as given,
    as training's validation does with weights that are still changing); compile_auto: let
    --compile auto pick torch.compile for long work (evaluation; lifting never compiles)."""

    def __init__(self, model, run, device, layout: Layout, sampling: Sampling, engines: bool = True,
                 compile_auto: bool = True, log=print, sampler: DDIMSampler | None = None):
        self.model, self.run, self.device, self.layout, self.sampling = model, run, device, layout, sampling
        self.engines, self.compile_auto, self.log = engines, compile_auto, log
        self._sampler = sampler              # a given sampler instead of the run's (of_sampler)
        self._converted = {}                 # engine name -> the model converted for it, shared by replace()

    @classmethod
    def from_run(cls, run, model, device, layout: Layout, engines: bool = True, compile_auto: bool = True,
                 log=print, **sampling) -> "InferenceCore":
        """The core of a run configuration; sampling: Sampling fields overriding the run's."""
        return cls(model, run, device, layout, Sampling.of_run(run, **sampling), engines, compile_auto, log)

    @classmethod
    def of_sampler(cls, model, sampler: DDIMSampler, device="cpu", layout: Layout | None = None,
                   **sampling) -> "InferenceCore":
        """A core around a sampler built by hand (library use and tests): K is the sampler's,
        the model runs as given (no engine); layout: the joints flip TTA mirrors (Human3.6M's
        by default; give flip=False for none)."""
        sampling = Sampling(**{"iterations": sampler.iterations, **sampling})
        if sampling.iterations != sampler.iterations:
            raise ValueError(f"iterations={sampling.iterations} differs from the sampler's {sampler.iterations}")
        return cls(model, None, device, layout or input_layout("h36m"), sampling, engines=False, sampler=sampler)

    def replace(self, **sampling) -> "InferenceCore":
        """The same model, engines and run with other Sampling values (None: unchanged)."""
        changes = {k: v for k, v in sampling.items() if v is not None}
        if self._sampler is not None and changes.get("iterations", self._sampler.iterations) != self._sampler.iterations:
            raise ValueError(f"this core samples with a given sampler of {self._sampler.iterations} iterations")
        core = InferenceCore(self.model, self.run, self.device, self.layout,
                             dataclasses.replace(self.sampling, **changes), self.engines, self.compile_auto, self.log,
                             self._sampler)
        core._converted = self._converted
        return core

    def with_model(self, model) -> "InferenceCore":
        """The same settings for another model (e.g. training's weights at each validation)."""
        return InferenceCore(model, self.run, self.device, self.layout, self.sampling, self.engines,
                             self.compile_auto, self.log, self._sampler)

    @property
    def frames(self) -> int:
        """F, the model's window length."""
        return self.model.cfg.frames

    # ------------------------------------------------------------------ the model and sampler to run

    def prepared(self, windows: int) -> tuple:
        """(the model to call, the sampler) for sampling `windows` F-frame windows."""
        s = self.sampling
        sampler = make_sampler(self.run, s.iterations) if self._sampler is None else copy.copy(self._sampler)
        if not self.engines:
            return self.model, sampler
        work = self.model.cfg.flops(windows * s.hypotheses, s.iterations, s.flip)
        compiled = self.run.compile == "on"
        compile_auto = self.compile_auto and self.run.compile == "auto"
        name = choose_engine(self.run.engine, self.device, work, compiled, compile_auto)
        if name not in self._converted:
            self._converted[name] = for_sampling(self.model, self.run.engine, self.device, work, self.run.amp,
                                                 compiled, compile_auto, self.log)
        model = self._converted[name]
        if isinstance(model, OpenVINODenoiser):
            sampler.amp_dtype = None                          # the precision is OpenVINO's
        return model, sampler

    # ------------------------------------------------------------------ sampling

    def sample_windows(self, inputs_2d: list[np.ndarray], desc: str = "sampling", progress: bool = True,
                       batches=None) -> Iterator[tuple[WindowGroup, torch.Tensor, torch.Tensor]]:
        """Every F-frame window of every sequence (common.inference.sampling.sample_windows): yields
        (group, x2d (n, F, J, 2), hypotheses (n, K, H, F, J, 3)) per group, in order.
        inputs_2d: one (N_i, J, 2) normalised array per sequence; batches: only these
        denoiser calls (a process's share)."""
        s = self.sampling
        windows = sum(-(-len(x) // self.frames) for x in inputs_2d)
        model, sampler = self.prepared(windows)
        yield from sample_windows(model, sampler, inputs_2d, s.hypotheses, s.group,
                                  self.layout if s.flip else None, s.seed, self.device, s.compute_batch, desc,
                                  progress, batches)

    def sample_clip(self, x2d: np.ndarray) -> np.ndarray:
        """H hypotheses per frame for a whole clip of any length: x2d (N, J, 2) normalised input
        keypoints -> (N, K, H, J_out, 3) metres, root-relative; every frame from the first
        window that covers it."""
        s = self.sampling
        out = np.zeros((len(x2d), s.iterations, s.hypotheses, self.model.cfg.joints, 3), np.float32)
        for g, _, hyps in self.sample_windows([x2d], progress=False):
            hyps[..., ROOT, :] = 0
            hyps = hyps.permute(0, 3, 1, 2, 4, 5).cpu().numpy()           # (n, F, K, H, J, 3)
            for frames, new, window in zip(g.windows, g.new, hyps):        # window by window: no copy of the group
                out[frames[new]] = window[new]
            del hyps, window                                               # freed before the next group is sampled
        return out
