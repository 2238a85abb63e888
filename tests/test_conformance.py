"""Replays conformance set A (produced by the authors' code, carried in tests/fixtures/) through the
conformance command."""
import subprocess
import sys
from pathlib import Path

from common.run.conformance import run_conformance

ROOT = Path(__file__).resolve().parents[1]


def test_every_quantity_of_set_a_within_tolerance(fixture_a):
    _, _, folder = fixture_a
    checks = run_conformance(folder)
    assert len(checks) == 19
    failed = [(c.quantity, c.deviation, c.tolerance) for c in checks if not c.ok]
    assert not failed


def test_tolerances_per_quantity(fixture_a):
    checks = {c.quantity: c.tolerance for c in run_conformance(fixture_a[2])}
    assert checks["denoiser_out"] == checks["denoiser_train_out"] == 1e-5
    assert checks["betas"] == 1e-10 and checks["ddim_flip_out"] == 1e-4
    assert checks["err2_j_agg"] == 1e-5 and checks["mpjpe"] == 1e-6


def test_command_exits_nonzero_on_a_deviating_folder(fixture_a, tmp_path):
    import json
    import shutil
    import numpy as np

    _, vectors, folder = fixture_a
    for name in ("config.json", "checkpoint.bin"):
        shutil.copy(folder / name, tmp_path / name)
    arrays = {k: v.numpy() for k, v in vectors.items()}
    arrays["err_j_agg"] = arrays["err_j_agg"] + 1e-3   # a wrong reference value
    np.savez(tmp_path / "vectors.npz", **arrays)
    ok = subprocess.run([sys.executable, "-m", "common.run.conformance"], cwd=ROOT,   # default: the carried set A
                        capture_output=True, text=True)
    bad = subprocess.run([sys.executable, "-m", "common.run.conformance", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True)
    assert ok.returncode == 0 and "d3dp_reference_A" in ok.stdout and "all 19 quantities" in ok.stdout, ok.stdout + ok.stderr
    assert bad.returncode == 1 and "FAILED: err_j_agg" in bad.stdout
    assert json.loads((folder / "config.json").read_text())["frames"] > 0


def test_conformance_holds_with_chunked_calls(fixture_a):
    _, _, folder = fixture_a
    checks = run_conformance(folder, max_batch_hypotheses=1)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
