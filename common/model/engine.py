"""Optional inference engine for sampling on the CPU: the denoiser converted to OpenVINO.

OpenVINO is not a requirement (`pip install openvino`); without it everything runs in
PyTorch. In float32 the converted denoiser gives PyTorch's outputs to float rounding (about
1e-6); with precision="bf16" OpenVINO runs the matmuls in bfloat16 (much faster where the
CPU has bf16 instructions, with an error of the order of 1e-2 per coordinate of one call).
Only inference is converted: training always runs in PyTorch.
"""
from __future__ import annotations

import importlib.util
import time
import warnings

import torch

from .device import compiler_available, prepare_model

ENGINES = ("auto", "eager", "openvino")   # "compile": what auto may choose when OpenVINO is absent

# `--engine auto` converts for OpenVINO when the denoiser work of an evaluation or a lifted clip
# exceeds this many FLOPs (about 5-13 s of eager sampling with the demo's model on one busy
# core): OpenVINO ran 1.5-2.2x faster than eager PyTorch and converted in 1-6 s
# (benchmarks/engine_threshold.py), which pays from about 1e11 FLOPs for the demo's model and
# 4e11-6e11 for the CPU preset's; shorter runs stay in eager PyTorch.
AUTO_MIN_FLOPS = 2e11
# torch.compile's warm-up is longer (10-50 s): without OpenVINO, compile only from here
# (about 100 s of eager sampling).
AUTO_COMPILE_SAMPLING_FLOPS = 1e13


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def openvino_runs_bf16() -> bool:
    """Whether OpenVINO can run bfloat16 on this CPU (bf16 instructions: AVX-512 BF16 or AMX);
    elsewhere a bf16 precision hint runs float32."""
    import openvino as ov   # optional: OpenVINO (the engine extra)

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVINODenoiser:
    """A Denoiser converted to OpenVINO for sampling: called like the module on CPU tensors
    (x2d (B, F, J, 2), x3d (B, H, F, J, 3), t (B,)), any B and H. `warmup_s` is the time the
    conversion and compilation took."""

    def __init__(self, model, precision: str = "f32", threads: int | None = None):
        import openvino as ov   # optional: OpenVINO (the engine extra)

        if precision not in ("f32", "bf16"):
            raise ValueError(f"OpenVINO precision {precision!r} is not known: use f32 or bf16")
        start = time.perf_counter()
        self.cfg = model.cfg
        f, j = model.cfg.frames, model.cfg.joints
        example = (torch.zeros(1, f, j, 2), torch.zeros(1, 2, f, j, 3), torch.zeros(1, dtype=torch.long))
        was_training = model.training
        model.eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")          # tracer warnings about the shape assertion
            converted = ov.convert_model(model, example_input=example,
                                         input=[[-1, f, j, 2], [-1, -1, f, j, 3], [-1]])
        model.train(was_training)
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": threads or torch.get_num_threads()}
        self.compiled = ov.Core().compile_model(converted, "CPU", config)
        # What OpenVINO runs in: a CPU without bfloat16 instructions (AVX2 only) runs bf16 as f32.
        self.requested_precision = precision
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.request = self.compiled.create_infer_request()
        self.warmup_s = time.perf_counter() - start

    def eval(self):
        return self

    def __call__(self, x2d: torch.Tensor, x3d: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x2d.device.type != "cpu":
            raise ValueError("the OpenVINO engine runs on the CPU: use --engine eager on other devices")
        self.request.infer((x2d.float().contiguous().numpy(), x3d.float().contiguous().numpy(), t.numpy()))
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())


def choose_engine(engine: str, device, work_flops: float | None = None, compiled: bool = False,
                  compile_auto: bool = False) -> str:
    """How to run the denoiser for sampling: `engine` unless it is "auto". Auto, on a CPU, for
    work long enough to repay a warm-up and a model not already compiled (--compile on): OpenVINO
    when it is installed, else torch.compile when compile_auto (--compile auto) and a compiler
    exists; otherwise, and on other devices, eager PyTorch."""
    if engine not in ENGINES:
        raise ValueError(f"--engine {engine!r} is not known: use one of {', '.join(ENGINES)}")
    if engine != "auto":
        if engine == "openvino" and not openvino_available():
            raise ValueError("--engine openvino needs OpenVINO: pip install openvino (or use --engine eager)")
        return engine
    work = work_flops or 0
    if torch.device(device).type != "cpu" or compiled or work < AUTO_MIN_FLOPS:
        return "eager"
    if openvino_available():
        return "openvino"
    if compile_auto and work >= AUTO_COMPILE_SAMPLING_FLOPS and compiler_available(device):
        return "compile"
    return "eager"


def for_sampling(model, engine: str, device, work_flops: float | None = None, amp: str | None = None,
                 compiled: bool = False, compile_auto: bool = False, log=print):
    """The model to sample with on `device` for --engine/--amp/--compile: `model` itself (eager
    or already compiled PyTorch), model through torch.compile, or its OpenVINO conversion
    (bf16 precision under --amp bf16)."""
    chosen = choose_engine(engine, device, work_flops, compiled, compile_auto)
    if chosen == "compile":
        log("sampling through torch.compile (a long evaluation; the first calls compile the model)")
        return prepare_model(model, device, compile_model=True)
    if chosen != "openvino":
        return model
    if torch.device(device).type != "cpu":
        raise ValueError("--engine openvino runs on the CPU: add --device cpu, or use --engine eager")
    if amp not in (None, "bf16"):
        raise ValueError(f"--amp {amp} is not available with OpenVINO: use --amp bf16, or --engine eager")
    converted = OpenVINODenoiser(getattr(model, "_orig_mod", model), precision="bf16" if amp == "bf16" else "f32")
    note = (f" (bf16 was asked for, but this CPU has no bfloat16 instructions OpenVINO can use, so it runs "
            f"{converted.precision}: the same numbers as without --amp)"
            if converted.precision != converted.requested_precision else "")
    log(f"sampling with OpenVINO ({converted.precision}){note}; conversion took {converted.warmup_s:.1f} s")
    return converted
