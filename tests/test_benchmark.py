"""The benchmark runs end to end on a tiny config and reports consistent numbers."""
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import benchmark
from benchmarks.benchmark import NaiveDenoiser
from common.denoiser import Denoiser, DenoiserConfig
from common.engine import openvino_available, sampling_flops


def test_flop_count_matches_pytorchs_counter():
    cfg = DenoiserConfig(frames=9, channels=32, depth=2, heads=4, drop_path=0.0)
    model = NaiveDenoiser(Denoiser(cfg)).eval()        # explicit attention: its matmuls are counted
    x2d, x3d, t = torch.randn(2, 9, 17, 2), torch.randn(2, 3, 9, 17, 3), torch.tensor([1, 2])
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x2d, x3d, t)
    counted = counter.get_total_flops()
    blocks = sampling_flops(cfg, 2 * 3, iterations=1, flip=False)
    # the counter also sees the embedding, head and timestep MLP, which the analytic count leaves out
    extra = 2 * (5 * 32 + 32 * 3) * 2 * 3 * 9 * 17 + 2 * 2 * (32 * 64 + 64 * 32)
    assert counted == blocks + extra
    assert sampling_flops(cfg, 6, iterations=3, flip=True) == 6 * blocks


def test_benchmark_reports_side_by_side(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert benchmark.main(["-f", "9", "-cs", "32", "-dep", "1", "-num_proposals", "2", "-sampling_timesteps", "2",
                           "--batch", "2", "--train-batch", "2", "--repeats", "2", "--train-steps", "2",
                           "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sampling" in text and "training" in text and "vs authors (est.)" in text and "AVX-512" in text
    r = json.loads(out.read_text())
    assert r["matmul_peak_gflops"] > 0
    expected = {"stand-in", "eager"} | ({"openvino", "openvino-bf16"} if openvino_available() else set())
    assert set(r["sampling"]["variants"]) == expected
    assert set(r["training"]["variants"]) == {"stand-in", "eager"}
    for section, unit, work in (("sampling", "frames_per_s", 2 * 9), ("training", "clips_per_s", 2 * 2)):
        variants = r[section]["variants"]
        base = variants["stand-in"]["median_s"]
        for name, p in variants.items():
            assert p["repeats"] == 2
            assert abs(p[unit] - work / p["median_s"]) < 1e-6 * p[unit]
            assert abs(p["ratio"] - base / p["median_s"]) < 1e-9
            assert p["min_s"] <= p["median_s"] <= p["max_s"] and p["warmup_s"] >= 0
            assert abs(p["fraction_of_peak"] - p["gflops"] / r["matmul_peak_gflops"]) < 1e-9
            assert p.get("peak_memory_mib") is None or p["peak_memory_mib"] >= 0
    deviation = {name: p["max_deviation_m"] for name, p in r["sampling"]["variants"].items()}
    assert deviation["stand-in"] == 0 and deviation["eager"] < 1e-5
    if openvino_available():
        assert deviation["openvino"] < 1e-5 < deviation["openvino-bf16"] < 0.2
    assert r["config"]["frames"] == 9 and r["config"]["hypotheses"] == 2
    assert r["command"].startswith("python -m benchmarks.benchmark -f 9")
