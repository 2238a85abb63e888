"""Long inputs stay within memory: lifting keeps no whole-sequence temporaries beyond its
outputs (numpy allocations traced with tracemalloc), and the long-input benchmark runs."""
import tracemalloc

import numpy as np

from common.in_the_wild.lifting import aggregate_without_ground_truth
from common.in_the_wild.root_depth import default_intrinsics


def _jpma_working_bytes(frames: int) -> int:
    """Peak numpy memory of JPMA without ground truth above its inputs and outputs."""
    rng = np.random.default_rng(0)
    hyps = (0.2 * rng.standard_normal((frames, 1, 2, 17, 3))).astype(np.float32)
    hyps[..., 0, :] = 0
    target = (0.1 * rng.standard_normal((frames, 17, 2))).astype(np.float32)
    confidence = np.ones((frames, 17), np.float32)
    cam = default_intrinsics(1000, 1000)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        poses, traj = aggregate_without_ground_truth(hyps, target, cam, confidence)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert all(np.isfinite(p).all() for p in poses.values()) and traj.shape == (frames, 1, 3)
    return peak - before - sum(p.nbytes for p in poses.values()) - traj.nbytes


def test_jpma_without_ground_truth_needs_no_more_memory_for_a_longer_clip():
    short, long = _jpma_working_bytes(8_000), _jpma_working_bytes(64_000)
    # Eight times the frames, the same working set: fitting the trajectory of the whole clip
    # at once (float64 systems of every frame) took about 2.2 kB per frame (140 MB here).
    assert long < short + 1_000_000, (short, long)
    assert long < 4_000_000


def test_long_input_benchmark_measures_lifting_and_evaluation(tmp_path):
    from benchmarks.long_input import measure

    row = measure(300, hypotheses=2, iterations=1, batch=4, evaluate=True, out_dir=tmp_path)
    assert row["frames"] == 300 and row["lift_outputs_mb"] > 0 and row["file_mb"] >= row["lift_outputs_mb"] * 0.9
    assert row["lift_peak_mb"] >= row["start_mb"] and row["eval_j_agg_mm"] > 0
