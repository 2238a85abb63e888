"""Device placement: the attention kernel chosen per device, compiled models, and the CUDA fast
path (exercised where a GPU exists, skipped cleanly elsewhere)."""
import copy
import os
import shutil

import numpy as np
import pytest
import torch

from common.model.denoiser import DenoiserConfig
from common.model.device import fused_attention_for, prepare_model, to_device
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


# ----------------------------------------------------------------------------- numerics and transfers
@pytest.fixture
def restore_numerics():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
             torch.backends.cudnn.deterministic)
    yield
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, deterministic,
     torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) = saved
    torch.use_deterministic_algorithms(deterministic)


def test_tf32_and_deterministic_flags_set_the_process_numerics(restore_numerics, monkeypatch):
    from common.run.arguments import build_parser, resolve_device

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    resolve_device(build_parser("t").parse_args(["--device", "cpu"]))
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.are_deterministic_algorithms_enabled()
    resolve_device(build_parser("t").parse_args(["--device", "cpu", "--tf32", "--deterministic"]))
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_to_host_copies_several_tensors_in_one_transfer(monkeypatch):
    from common.model.device import to_host

    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, 1, 2, dtype=torch.float64) / 3,
               "c": torch.zeros(0, 4)}
    copies = []
    real_cpu = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k: copies.append(self.shape) or real_cpu(self))
    out = to_host(tensors)
    assert len(copies) == 1
    for name, t in tensors.items():
        assert out[name].dtype == np.float32 and out[name].shape == tuple(t.shape)
        np.testing.assert_array_equal(out[name], t.float().numpy())


def test_the_automatic_chunk_size_on_a_gpu_ignores_the_free_memory(monkeypatch):
    """The same model on the same kind of GPU splits its work alike whatever is free at the
    moment (mem_get_info is never asked)."""
    from types import SimpleNamespace

    from common.model import chunking

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: pytest.fail("asked for the free memory"))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=80 * 2 ** 30))
    cfg = DenoiserConfig(frames=243, channels=512, depth=8)
    per = 16 * cfg.activation_bytes() + 2 * cfg.attention_score_bytes()
    assert chunking.auto_hypothesis_limit(cfg, "cuda:0") == int(0.25 * 80 * 2 ** 30) // per
    assert chunking.auto_hypothesis_limit(cfg, "cuda:1") == chunking.auto_hypothesis_limit(cfg, "cuda:0")
