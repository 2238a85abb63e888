"""A mode added to common.inference.aggregation.MODES, and nowhere else, reaches every output: the printed
and JSON tables (both protocols), the MPI-INF-3DHP .mat files and their scores,
--save-predictions, --viz-export, the in-the-wild .npz and the Python API's result. The mode
here returns poses of its own (the per-coordinate median of the hypotheses), not a choice
among them, so that path is covered too.

The check edits a copy of the package (one file: inference/aggregation.py) and runs the entry points on
it in a child process, as a developer adding a mode would."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

MEDIAN_MODE = '''

def choose_median(c: Candidates) -> torch.Tensor:
    """Median (test mode): the per-coordinate median of the hypotheses, poses of its own."""
    return c.hyps.median(dim=HYP_DIM).values


'''

SCRIPT = '''
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, sys.argv[2])
from conftest import synthetic_as_h36m
from test_distributed_eval import write_3dhp_test_file
from test_main_in_the_wild import alphapose_json

from common.api import Lifter
from common.model.checkpoint import atomic_save, make_checkpoint
from common.cli import draw, h36m, in_the_wild, mpi_inf_3dhp
from common.model.denoiser import Denoiser, DenoiserConfig

out = Path(sys.argv[1])
torch.manual_seed(0)
model = Denoiser(DenoiserConfig(frames=9, channels=16, depth=1, heads=2, drop_path=0.0))
with torch.no_grad():
    for p in model.parameters():
        p.add_(torch.randn_like(p) * 0.05)
ckpt = out / "tiny.bin"
atomic_save(make_checkpoint(model), ckpt)
synthetic_as_h36m(out / "h36m", frames_per_sequence=20)
flags = ["-f", "9", "-cs", "16", "-dep", "1", "--heads", "2", "--nolog", "-num_proposals", "3",
         "-sampling_timesteps", "2", "--no-progress"]
assert h36m.main(["--data-dir", str(out / "h36m"), "--evaluate", str(ckpt), *flags, "-b", "2", "--p2",
                  "-a", "Walking", "-c", str(out / "h36m_eval"),
                  "--save-predictions", str(out / "h36m_eval" / "pred.npz")]) == 0
write_3dhp_test_file(out / "3dhp", {"TS1": 20, "TS5": 7})
assert mpi_inf_3dhp.main(["--data-dir", str(out / "3dhp"), "--evaluate", str(ckpt), *flags,
                          "-c", str(out / "3dhp_eval")]) == 0
assert draw.main(["--data-dir", str(out / "h36m"), "--evaluate", str(ckpt), *flags, "-b", "2",
                  "--viz-subject", "S9", "--viz-action", "Walking", "--viz-camera", "0",
                  "--viz-export", str(out / "viz.npz"), "--viz-output", str(out / "viz.gif"), "--viz-limit", "2"]) == 0
rng = np.random.default_rng(3)
pixels = 500 + np.cumsum(rng.normal(scale=2, size=(12, 17, 2)), axis=0) + rng.normal(scale=60, size=(1, 17, 2))
alphapose_json(out / "kp.json", pixels)
assert in_the_wild.main(["--evaluate", str(ckpt), *flags, "--keypoints-file", str(out / "kp.json"),
                         "--width", "1000", "--height", "1000", "--input-layout", "coco",
                         "--output", str(out / "wild.npz")]) == 0
result = Lifter.from_checkpoint(ckpt, layout="coco", heads=2).lift(pixels.astype(np.float32), (1000, 1000),
                                                                    hypotheses=3, iterations=2)
np.savez(out / "api.npz", median=result.poses["Median"], hypotheses=result.hypotheses)
'''


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("median_mode")
    package = tmp / "code" / "common"
    shutil.copytree(ROOT / "common", package, ignore=shutil.ignore_patterns("__pycache__"))
    source = (package / "inference" / "aggregation.py").read_text()
    registry = re.search(r"^MODES = \{[^}]*\}", source, re.M).group(0)
    assert '"J-Agg": choose_j_agg' in registry
    source = source.replace("# The aggregation modes, in the order of every table.", MEDIAN_MODE.strip("\n") +
                            "\n\n\n# The aggregation modes, in the order of every table.")
    (package / "inference" / "aggregation.py").write_text(source.replace(registry, registry[:-1] + ', "Median": choose_median}'))
    (tmp / "run.py").write_text(SCRIPT)
    out = tmp / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, str(tmp / "run.py"), str(out), str(ROOT / "tests")], cwd=tmp / "code",
                          capture_output=True, text=True, timeout=600, env={"PYTHONPATH": str(tmp / "code"),
                                                                           "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_the_new_mode_reaches_the_tables_of_both_protocols(outputs):
    out, printed = outputs
    tables = json.loads((out / "h36m_eval" / "eval_tiny.json").read_text())
    for protocol in ("p1", "p2"):
        assert list(tables["actions"][protocol]) == ["J-Agg", "P-Agg", "P-Best", "J-Best", "T-Agg", "Median"]
    median, j_agg = tables["actions"]["p1"]["Median"]["Average"], tables["actions"]["p1"]["J-Agg"]["Average"]
    assert np.isfinite(median).all() and median != j_agg
    assert "Median" in (out / "h36m_eval" / "eval_tiny.log").read_text()


def test_the_new_mode_reaches_the_3dhp_mat_files_and_their_scores(outputs):
    from common.evaluation.mpi_inf_3dhp import read_3dhp_mat

    out, printed = outputs
    pred = read_3dhp_mat(out / "3dhp_eval" / "inference_data_Median.mat")
    assert set(pred) == {"TS1", "TS5"} and pred["TS1"].shape == (3, 17, 20, 2)
    summary = (out / "3dhp_eval" / "3dhp_scores" / "summary.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in summary[1:]] == [m for m in ("P_Agg", "P_Best", "J_Best", "J_Agg", "T_Agg", "Median")
                                                          for _ in (1, 2)]       # the authors' four first
    assert (out / "3dhp_eval" / "3dhp_scores" / "Median_k2_sequencewise.csv").is_file()


def test_the_new_mode_reaches_saved_predictions_the_viz_export_and_lifting(outputs):
    out, _ = outputs
    with np.load(out / "h36m_eval" / "pred.npz", allow_pickle=False) as d:
        key = d["sequences"][0]
        assert d[f"{key}/median"].shape == d[f"{key}/j_agg"].shape
        assert not np.array_equal(d[f"{key}/median"], d[f"{key}/j_agg"])
    with np.load(out / "viz.npz", allow_pickle=False) as d:
        assert {"j_agg", "p_agg", "p_best", "j_best", "median"} <= set(d.files) and "Median" in d["modes"]
    with np.load(out / "wild.npz", allow_pickle=False) as d:
        assert {"j_agg", "p_agg", "median"} <= set(d.files) and "p_best" not in d.files    # no ground truth there
        np.testing.assert_array_equal(d["median"], np.median(d["hypotheses"][:, -1], axis=1))
    with np.load(out / "api.npz") as d:
        np.testing.assert_array_equal(d["median"], np.median(d["hypotheses"][:, -1], axis=1))
