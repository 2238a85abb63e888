"""Device placement: the attention kernel chosen per device, compiled models, and the CUDA fast
path (exercised where a GPU exists, skipped cleanly elsewhere)."""
import copy
import shutil

import numpy as np
import pytest
import torch

from common.denoiser import DenoiserConfig
from common.device import fused_attention_for, prepare_model, to_device
from conftest import random_inputs, sample_poses, tiny_model

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_attention_kernel_is_chosen_per_device():
    assert not fused_attention_for(DenoiserConfig(frames=27), "cpu")
    assert fused_attention_for(DenoiserConfig(frames=243), "cpu")
    assert fused_attention_for(DenoiserConfig(frames=27), "cuda")
    model = tiny_model()
    model.set_fused_attention(True)
    prepare_model(model, "cpu")
    assert not any(getattr(m, "fused", False) for m in model.modules())


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="torch.compile on CPUs needs a C++ compiler")
def test_compiled_denoiser_matches_eager():
    model = tiny_model()
    x2d, noise = random_inputs(b=1, h=2)
    t = torch.tensor([500])
    compiled = prepare_model(copy.deepcopy(model), "cpu", compile_model=True)   # frozen weights on CPUs
    with torch.no_grad():
        assert (compiled(x2d, noise[0], t) - model(x2d, noise[0], t)).abs().max() < 1e-5


# ----------------------------------------------------------------------------- CUDA only
@CUDA
def test_cuda_fast_path_matches_cpu():
    model = tiny_model()
    x2d, noise = random_inputs()
    cpu = sample_poses(model, x2d, noise)
    gpu_model = prepare_model(copy.deepcopy(model).to("cuda"), "cuda")
    gpu = sample_poses(gpu_model, x2d.to("cuda"), [n.to("cuda") for n in noise], max_batch_hypotheses=0)
    assert (cpu - gpu.cpu()).abs().max() < 1e-4


@CUDA
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_amp_sampling(dtype):
    model = prepare_model(tiny_model().to("cuda"), "cuda")
    x2d, noise = random_inputs()
    x2d, noise = x2d.to("cuda"), [n.to("cuda") for n in noise]
    full = sample_poses(model, x2d, noise)
    mixed = sample_poses(model, x2d, noise, amp_dtype=dtype)
    assert mixed.dtype == torch.float32 and (full - mixed).abs().max() < 0.05


@CUDA
def test_cuda_compile_and_pinned_copies():
    model = prepare_model(tiny_model().to("cuda"), "cuda", compile_model=True)
    x2d, noise = random_inputs()
    out = sample_poses(model, x2d.to("cuda"), [n.to("cuda") for n in noise])
    ref = sample_poses(tiny_model(), x2d, noise)
    assert (out.cpu() - ref).abs().max() < 1e-4
    t = to_device(np.ones((2, 3), np.float32), "cuda")
    assert t.is_cuda and float(t.sum()) == 6.0
