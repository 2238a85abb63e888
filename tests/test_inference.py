"""The inference core: built once from the run, every sampler and sampling setting in one place."""
import numpy as np
import pytest
import torch

from common.geometry.coco import input_layout
from common.run.config import RunConfig
from common.model.diffusion import DDIMSampler, Diffusion
from common.model.engine import OpenVINODenoiser, openvino_available
from common.inference.core import InferenceCore, Sampling
from conftest import tiny_model


def test_the_core_takes_every_sampler_and_sampling_setting_from_the_run():
    run = RunConfig(timestep=500, scale=2.0, eta=0.5, max_batch_hypotheses=7, amp="bf16", num_proposals=4,
                    sampling_timesteps=3, test_time_augmentation=False, batch_size=6, eval_batch=12, seed=9)
    core = InferenceCore.from_run(run, tiny_model(), "cpu", input_layout("h36m"), engines=False)
    assert core.sampling == Sampling(hypotheses=4, iterations=3, flip=False, group=6, compute_batch=12, seed=9)
    _, sampler = core.prepared(windows=1)
    assert (sampler.diffusion.timesteps, sampler.diffusion.scale, sampler.eta) == (500, 2.0, 0.5)
    assert (sampler.iterations, sampler.max_batch_hypotheses, sampler.amp_dtype) == (3, 7, torch.bfloat16)
    assert Sampling.of_run(run, hypotheses=2, seed=None).hypotheses == 2      # None keeps the run's value


def test_replace_changes_only_what_it_is_given_and_keeps_the_model():
    core = InferenceCore.from_run(RunConfig(num_proposals=5, sampling_timesteps=2), tiny_model(), "cpu",
                                  input_layout("coco"), engines=False)
    other = core.replace(hypotheses=2, seed=None, group=3)
    assert other.model is core.model and other.layout == core.layout and other._converted is core._converted
    assert (other.sampling.hypotheses, other.sampling.iterations, other.sampling.group) == (2, 2, 3)
    assert core.sampling.hypotheses == 5                                        # the original is unchanged
    x2d = np.random.default_rng(0).normal(size=(11, 17, 2)).astype(np.float32) * 0.3
    assert other.sample_clip(x2d).shape == (11, 2, 2, 17, 3)


def test_a_core_around_a_hand_built_sampler_keeps_its_iterations():
    sampler = DDIMSampler(Diffusion(), 2)
    core = InferenceCore.of_sampler(tiny_model(), sampler, hypotheses=3)
    assert core.sampling.iterations == 2 and core.prepared(1)[1] is not sampler     # a copy: the caller's stays
    with pytest.raises(ValueError, match="2 iterations"):
        core.replace(iterations=4)
    with pytest.raises(ValueError, match="differs"):
        InferenceCore.of_sampler(tiny_model(), sampler, iterations=3)


@pytest.mark.skipif(not openvino_available(), reason="OpenVINO is not installed")
def test_openvino_is_converted_once_and_its_sampler_has_no_autocast():
    run = RunConfig(engine="openvino", amp="bf16", num_proposals=2, sampling_timesteps=1)
    notes = []
    core = InferenceCore.from_run(run, tiny_model(), "cpu", input_layout("h36m"), log=notes.append)
    model, sampler = core.prepared(windows=2)
    assert isinstance(model, OpenVINODenoiser) and sampler.amp_dtype is None
    again, _ = core.replace(hypotheses=3).prepared(windows=2)
    assert again is model and len(notes) == 1                                  # converted once for both
