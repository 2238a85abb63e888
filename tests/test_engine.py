"""The optional OpenVINO engine: same samples as PyTorch in float32, chosen only when it pays,
never needed. Tests that run it skip where OpenVINO is not installed."""
import pytest
import torch

from common.model.denoiser import Denoiser, DenoiserConfig
from common.model.diffusion import DDIMSampler, Diffusion, FlipTTA
from common.model.device import AUTO_COMPILE_MIN_FLOPS, compile_wanted
from common.model.engine import AUTO_COMPILE_SAMPLING_FLOPS, AUTO_MIN_FLOPS, choose_engine, for_sampling, openvino_available, openvino_runs_bf16
from common.geometry.skeleton import H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT, flip_pose

OPENVINO = pytest.mark.skipif(not openvino_available(), reason="OpenVINO is not installed (optional)")


def tiny_model():
    torch.manual_seed(0)
    model = Denoiser(DenoiserConfig(frames=9, channels=32, depth=2, heads=4, drop_path=0.0))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def test_auto_picks_openvino_only_for_long_cpu_work(monkeypatch):
    monkeypatch.setattr("common.model.engine.openvino_available", lambda: True)
    assert choose_engine("auto", "cpu", AUTO_MIN_FLOPS) == "openvino"
    assert choose_engine("auto", "cpu", AUTO_MIN_FLOPS / 2) == "eager"
    assert choose_engine("auto", "cpu", AUTO_MIN_FLOPS, compiled=True) == "eager"
    assert choose_engine("auto", "cuda", AUTO_MIN_FLOPS) == "eager"
    assert choose_engine("eager", "cpu", AUTO_MIN_FLOPS) == "eager"
    monkeypatch.setattr("common.model.engine.openvino_available", lambda: False)
    assert choose_engine("auto", "cpu", 1e30) == "eager"
    with pytest.raises(ValueError, match="pip install openvino"):
        choose_engine("openvino", "cpu")
    with pytest.raises(ValueError, match="not known"):
        choose_engine("tensorrt", "cpu")


def test_short_work_keeps_the_model_itself():
    model = tiny_model()
    assert for_sampling(model, "auto", "cpu", work_flops=1e6) is model


@OPENVINO
def test_openvino_sampling_equals_pytorch_and_bf16_stays_close():
    model = tiny_model()
    g = torch.Generator().manual_seed(1)
    x2d = torch.randn(3, 9, 17, 2, generator=g) * 0.3
    noise = [torch.randn(3, 4, 9, 17, 3, generator=g) for _ in range(3)]
    flip = FlipTTA(flip_pose(x2d, H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT), H36M_JOINTS_LEFT, H36M_JOINTS_RIGHT)
    sampler = DDIMSampler(Diffusion(), 3, max_batch_hypotheses=5)       # chunks of different shapes
    ref = sampler.sample(model, x2d, 4, flip=flip, noise=noise)
    logged = []
    for amp, tol in ((None, 1e-5), ("bf16", 0.5)):
        converted = for_sampling(model, "openvino", "cpu", amp=amp, log=logged.append)
        out = sampler.sample(converted, x2d, 4, flip=flip, noise=noise)
        assert out.shape == ref.shape and out.dtype == torch.float32
        deviation = float((out - ref).abs().max())
        assert deviation < tol, (amp, deviation)
        if amp and openvino_runs_bf16():            # bf16 really ran, and stays close on average
            assert deviation > 1e-5 and float((out - ref).abs().mean()) < 0.1, float((out - ref).abs().mean())
        elif amp:                                   # a CPU without bf16 instructions: float32, and it says so
            assert deviation < 1e-5 and converted.precision == "f32"
    assert "OpenVINO (f32)" in logged[0]
    if openvino_runs_bf16():
        assert "OpenVINO (bf16)" in logged[1]
    else:
        assert "OpenVINO (f32) (bf16 was asked for, but this CPU has no bfloat16 instructions" in logged[1]
    with pytest.raises(ValueError, match="--amp bf16"):
        for_sampling(model, "openvino", "cpu", amp="fp16")


def test_compile_auto_only_for_long_training(monkeypatch):
    monkeypatch.setattr("common.model.device.compiler_available", lambda device: True)
    assert compile_wanted("auto", "cpu", AUTO_COMPILE_MIN_FLOPS)
    assert not compile_wanted("auto", "cpu", AUTO_COMPILE_MIN_FLOPS / 10)
    assert compile_wanted("on", "cpu", 0) and not compile_wanted("off", "cpu", 1e30)
    monkeypatch.setattr("common.model.device.compiler_available", lambda device: False)
    assert not compile_wanted("auto", "cpu", 1e30)          # no compiler: eager, never a crash


def test_auto_compiles_long_cpu_sampling_when_openvino_is_absent(monkeypatch):
    monkeypatch.setattr("common.model.engine.openvino_available", lambda: False)
    monkeypatch.setattr("common.model.engine.compiler_available", lambda device: True)
    long = AUTO_COMPILE_SAMPLING_FLOPS
    assert choose_engine("auto", "cpu", long, compile_auto=True) == "compile"
    assert choose_engine("auto", "cpu", long / 2, compile_auto=True) == "eager"    # warm-up not repaid
    assert choose_engine("auto", "cpu", long) == "eager"                           # --compile off
    assert choose_engine("auto", "cuda", long, compile_auto=True) == "eager"
    monkeypatch.setattr("common.model.engine.compiler_available", lambda device: False)
    assert choose_engine("auto", "cpu", long, compile_auto=True) == "eager"
    monkeypatch.setattr("common.model.engine.compiler_available", lambda device: True)
    model, logged = tiny_model(), []
    compiled = for_sampling(model, "auto", "cpu", long, compile_auto=True, log=logged.append)
    assert compiled is not model and compiled._orig_mod is model and "torch.compile" in logged[0]
