"""Running fast on the device at hand: attention kernel choice, mixed precision, compilation,
and host-to-device copies. None of these changes a result beyond float rounding (autocast
changes it by the precision of its dtype; see README 'Speed')."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil

import numpy as np
import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# Up to this clip length the explicit attention kernel beats PyTorch's CPU
# scaled_dot_product_attention (17-joint and short temporal sequences, head size 16-64);
# at F = 243 the fused kernel is faster (benchmarks/README.md). GPUs always use the fused one.
CPU_FUSED_ATTENTION_MIN_FRAMES = 82


def fused_attention_for(cfg, device) -> bool:
    """Whether the denoiser should use the fused attention kernel on this device."""
    return torch.device(device).type != "cpu" or cfg.frames >= CPU_FUSED_ATTENTION_MIN_FRAMES


def prepare_model(model, device, compile_model: bool = False):
    """Pick the attention kernel for the device; optionally wrap in torch.compile.
    The returned module is what to call; `model` keeps its parameters (save that one)."""
    model.set_fused_attention(fused_attention_for(model.cfg, device))
    if not compile_model:
        return model
    if torch.device(device).type == "cpu":
        configure_cpu_compile()
    return torch.compile(model)


# `--compile auto` compiles training runs of at least this many FLOPs (forward and backward;
# about 40 minutes of eager training at the CPU preset's 45 GFLOP/s on 2 cores, 20x the demo).
# Measured there: compiling the training step took 49 s for a 1.86x faster step on an idle
# AMD EPYC, and 1-5 minutes for 1.1-1.2x on a loaded Intel Xeon; both repay it well within
# such a run (benchmarks/README.md).
AUTO_COMPILE_MIN_FLOPS = 1e14


def compiler_available(device) -> bool:
    """Whether torch.compile can generate code for the device: a C++ compiler for CPUs,
    Triton for GPUs."""
    if torch.device(device).type == "cpu":
        return bool(shutil.which("g++") or shutil.which("c++"))
    return importlib.util.find_spec("triton") is not None


def compile_wanted(setting, device, work_flops: float | None = None) -> bool:
    """--compile on/off, or auto: compile when the work is long enough and a compiler exists."""
    if setting in (True, "on"):
        return True
    if setting in (None, False, "off"):
        return False
    return (work_flops or 0) >= AUTO_COMPILE_MIN_FLOPS and compiler_available(device)


def configure_cpu_compile() -> None:
    """Inductor settings measured to be fastest for the denoiser on CPUs: weights frozen
    into prepacked GEMMs for inference graphs, and no rewriting of the explicit attention into
    the CPU SDPA kernel (slower at these lengths). Sampling 1.23x instead of 1.09x faster than
    eager in one forward of the CPU preset; training unchanged (benchmarks/README.md)."""
    import torch._inductor.config as inductor   # heavy: loads TorchInductor, only when compiling on CPUs

    inductor.freezing = True
    inductor.pattern_matcher = False


def amp_dtype(name: str | None) -> torch.dtype | None:
    """--amp value -> autocast dtype (None: full float32)."""
    if name is None:
        return None
    if name not in AMP_DTYPES:
        raise ValueError(f"--amp {name!r} is not known: use one of {', '.join(AMP_DTYPES)}")
    return AMP_DTYPES[name]


def autocast(device, dtype: torch.dtype | None):
    """torch.autocast on the device's type with dtype, or a no-op context for None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def to_device(array: np.ndarray, device) -> torch.Tensor:
    """numpy -> tensor on device; through pinned memory and an asynchronous copy on GPUs, so
    the host prepares the next batch while the device works."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    device = torch.device(device)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def configure_numerics(tf32: bool = False, deterministic: bool = False) -> None:
    """Process-wide numerics of a run. tf32: float32 matrix products (and cuDNN convolutions) in
    TensorFloat-32 on GPUs that have it; off, they are full float32 (the reference numbers).
    deterministic: only deterministic kernels (an op without one raises), cuBLAS with a fixed
    workspace, no cuDNN autotuning: on one GPU model and software stack, a rerun or a resumed
    run repeats bit for bit. Neither changes anything on CPUs, which are deterministic already."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # read when cuBLAS starts
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def choose_device(name: str | None = "", gpu: str = "0") -> torch.device:
    """The device to run on: `name` ('cpu', 'cuda', 'cuda:N') when given; else cuda:<gpu> when
    CUDA is present (the authors' -gpu), the CPU otherwise."""
    if name:
        try:
            device = torch.device(name)
        except RuntimeError as e:
            raise ValueError(f"device {name!r} is not a device name: use cpu, cuda or cuda:N") from e
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {name} was asked for, but CUDA is not available here: use cpu")
        return device
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(str(gpu).split(',')[0])}")
    return torch.device("cpu")


def to_host(tensors: dict) -> dict:
    """Several tensors copied to the host as float32 numpy arrays in one transfer (one wait
    for the device instead of one per tensor); name -> array of the tensor's shape."""
    if not tensors:
        return {}
    flat = torch.cat([t.detach().float().reshape(-1) for t in tensors.values()]).cpu().numpy()
    out, start = {}, 0
    for name, t in tensors.items():
        out[name] = flat[start:start + t.numel()].reshape(tuple(t.shape))
        start += t.numel()
    return out
