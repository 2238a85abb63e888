"""How well the per-joint uncertainty holds on real motion: the MPI-INF-3DHP TS5 annotations.

Only one real labelled sequence is at hand (TS5, 320 frames), so it is cut in time: a small
model is trained on frames 0-159, and `main_3dhp.py --evaluate --calibrate` is run on frames
160-319, a set of one recording, so the factors are fitted on its first half (160-239) and
the coverage and rank correlation are reported on its second half (240-319), frames neither
the model nor the factors saw.

    python -m benchmarks.uncertainty_ts5 --raw-dir /path/to/mpi_inf_3dhp_test_set [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from common.cli import mpi_inf_3dhp as main_3dhp
from common.datasets.mpi_inf_3dhp import TEST_NPZ, TRAIN_NPZ, read_test_entries

TRAIN_FRAMES = 160
MODEL = ["-f", "27", "-cs", "64", "-dep", "2", "--heads", "4", "--drop-path", "0"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--raw-dir", required=True, help="folder holding TS5/annot_data.mat")
    p.add_argument("--work", default="", help="working folder (default: a temporary one)")
    p.add_argument("--epochs", type=int, default=80)
    p.add_argument("--coverage", type=float, default=0.9)
    args = p.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="d3dp_ts5_"))
    raw = work / "raw"
    if not raw.exists():
        shutil.copytree(Path(args.raw_dir) / "TS5", raw / "TS5")
    data = work / "data"
    if main_3dhp.main(["--prepare", "--raw-dir", str(raw), "--data-dir", str(data)]):
        return 2
    entry = read_test_entries(data)["TS5"]
    first = {k: v[:TRAIN_FRAMES] for k, v in entry.items()}
    second = {k: v[TRAIN_FRAMES:] for k, v in entry.items()}
    np.savez(data / TRAIN_NPZ, data={"S1 Seq1": [{0: {"data_3d": first["data_3d"], "data_2d": first["data_2d"]}}]})
    np.savez(data / TEST_NPZ, data={"TS5": second})
    ck = work / "ck"
    common = ["--data-dir", str(data), "-c", str(ck), "--nolog", "--seed", "1"] + MODEL
    if not (ck / "latest_epoch.bin").is_file():
        if main_3dhp.main(common + ["-e", str(args.epochs), "-lr", "2e-3", "-lrd", "0.98", "-b", "4", "-s", "1",
                                    "--no-eval"]):
            return 2
    if main_3dhp.main(common + ["--evaluate", "latest_epoch.bin", "-num_proposals", "5", "-sampling_timesteps", "5",
                                "--calibrate", "--overwrite", "--coverage", str(args.coverage),
                                "--save-predictions", str(work / "ts5_predictions.npz")]):
        return 2
    block = json.loads((ck / "eval_latest_epoch.json").read_text())["calibration"]
    held = block["held_out"]
    print(f"\nTS5 frames {TRAIN_FRAMES + 80}-319 ({held['frames']} valid frames; model trained on 0-{TRAIN_FRAMES - 1}, "
          f"factors fitted on {TRAIN_FRAMES}-{TRAIN_FRAMES + 79}): observed coverage {100 * held['coverage']:.1f}% at "
          f"stated {100 * block['coverage_stated']:.0f}%, rank correlation {held['rank_correlation']:.3f}, "
          f"J-Agg error {held['mean_error_mm']:.1f} mm, mean radius {held['mean_radius_mm']:.1f} mm")
    print(f"files in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
