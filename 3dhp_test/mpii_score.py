"""Score MPI-INF-3DHP predictions exactly like the dataset's MATLAB test utilities.

python 3dhp_test/mpii_score.py --pred inference_data_J_Agg.mat [more .mat or folders] --gt-dir TEST_SET [--out DIR]
"""
import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common.evaluation.mpi_inf_3dhp import format_summary, prediction_files, score_prediction_files  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pred", nargs="+", required=True,
                        help="prediction .mat files (inference_data_<MODE>.mat) or folders holding them")
    parser.add_argument("--gt-dir", required=True,
                        help="the official test set: a folder with TS*/annot_data.mat (or a processed test npz)")
    parser.add_argument("--out", default=str(REPO / "3dhp_test" / "results"), help="folder for the CSV tables")
    args = parser.parse_args(argv)
    try:
        results = score_prediction_files(prediction_files(args.pred), args.gt_dir, args.out)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(format_summary(results))
    print(f"tables written to {args.out}")


if __name__ == "__main__":
    main()
