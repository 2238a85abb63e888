"""The benchmark runs end to end on a tiny config and reports consistent numbers."""
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import benchmark
from common.benchmark import NaiveDenoiser, denoiser_flops
from common.denoiser import Denoiser, DenoiserConfig


def test_flop_count_matches_pytorchs_counter():
    cfg = DenoiserConfig(frames=9, channels=32, depth=2, heads=4, drop_path=0.0)
    model = NaiveDenoiser(Denoiser(cfg)).eval()        # explicit attention: its matmuls are counted
    x2d, x3d, t = torch.randn(2, 9, 17, 2), torch.randn(2, 3, 9, 17, 3), torch.tensor([1, 2])
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x2d, x3d, t)
    counted = counter.get_total_flops()
    blocks = denoiser_flops(cfg, 2 * 3)
    # the counter also sees the embedding, head and timestep MLP, which the analytic count leaves out
    extra = 2 * (5 * 32 + 32 * 3) * 2 * 3 * 9 * 17 + 2 * 2 * (32 * 64 + 64 * 32)
    assert counted == blocks + extra


def test_benchmark_reports_side_by_side(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert benchmark.main(["-f", "9", "-cs", "32", "-dep", "1", "-num_proposals", "2", "-sampling_timesteps", "2",
                           "--batch", "2", "--train-batch", "2", "--repeats", "2", "--train-steps", "2",
                           "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sampling frames/s" in text and "training clips/s" in text and "speed-up" in text
    r = json.loads(out.read_text())
    assert r["max_abs_difference_m"] < 1e-5
    assert r["matmul_peak_gflops"] > 0
    for section, unit, work in (("sampling", "frames_per_s", 2 * 9), ("training", "clips_per_s", 2 * 2)):
        s = r[section]
        assert s["naive"]["repeats"] == s["fast"]["repeats"] == 2
        assert abs(s["speedup"] - s["naive"]["median_s"] / s["fast"]["median_s"]) < 1e-12
        for path in ("naive", "fast"):
            p = s[path]
            assert abs(p[unit] - work / p["median_s"]) < 1e-6 * p[unit]
            assert p["min_s"] <= p["median_s"] <= p["max_s"]
            assert abs(p["fraction_of_peak"] - p["gflops"] / r["matmul_peak_gflops"]) < 1e-9
            assert p["peak_memory_mib"] is None or p["peak_memory_mib"] >= 0
    assert r["config"]["frames"] == 9 and r["config"]["hypotheses"] == 2
