"""When does converting the denoiser for OpenVINO repay itself? Eager PyTorch against OpenVINO
(conversion timed apart) on whole-clip sampling, for the demo and the CPU-preset model sizes.

    python -m benchmarks.engine_threshold [--threads 1] [--windows 20]

Prints, per model and (H, K), the denoiser work in FLOPs (DenoiserConfig.flops), the eager
and OpenVINO sampling times, the conversion time and the largest deviation. Conversion pays
when eager time x (1 - 1/speed-up) exceeds it; engine.AUTO_MIN_FLOPS is set from this.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from common.model.denoiser import Denoiser, DenoiserConfig
from common.model.diffusion import DDIMSampler, Diffusion
from common.model.engine import OpenVINODenoiser, openvino_available
from common.inference.core import InferenceCore

MODELS = {"demo": dict(frames=27, channels=64, depth=2), "cpu preset": dict(frames=27, channels=128, depth=4)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--windows", type=int, default=20, help="clip length in model windows")
    args = p.parse_args(argv)
    if not openvino_available():
        print("OpenVINO is not installed (pip install -r requirements-engine.txt)")
        return 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{args.threads} thread(s), a clip of {args.windows} windows, flip on")
    print(f"{'model':12}{'H':>3}{'K':>3}{'FLOPs':>10}{'eager s':>9}{'openvino s':>12}{'speed-up':>10}"
          f"{'convert s':>11}{'max dev':>9}")
    for name, size in MODELS.items():
        cfg = DenoiserConfig(**size)
        model = Denoiser(cfg).eval()
        x2d = np.random.default_rng(0).normal(size=(cfg.frames * args.windows, 17, 2)).astype(np.float32) * 0.3
        for h, k in ((1, 1), (5, 5)):
            sampler = DDIMSampler(Diffusion(), k)
            start = time.perf_counter()
            eager = InferenceCore.of_sampler(model, sampler, hypotheses=h, group=4).sample_clip(x2d)
            t_eager = time.perf_counter() - start
            start = time.perf_counter()
            converted = OpenVINODenoiser(model, threads=args.threads)
            t_convert = time.perf_counter() - start
            start = time.perf_counter()
            fast = InferenceCore.of_sampler(converted, sampler, hypotheses=h, group=4).sample_clip(x2d)
            t_ov = time.perf_counter() - start
            flops = cfg.flops(args.windows * h, k, True)
            print(f"{name:12}{h:3}{k:3}{flops:10.1e}{t_eager:9.2f}{t_ov:12.2f}{t_eager / t_ov:9.1f}x"
                  f"{t_convert:11.2f}{np.abs(eager - fast).max():9.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
