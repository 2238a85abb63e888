"""MPI-INF-3DHP: prepare the data, train D3DP, or evaluate a checkpoint, export the MATLAB
scorer's .mat files and score them in Python.

    python main_3dhp.py --prepare --raw-dir /path/to/mpi_inf_3dhp     # -> data/*_3dhp_ori.npz
    python main_3dhp.py -c checkpoint -gpu 0 --nolog
    python main_3dhp.py -c checkpoint -gpu 0 --nolog --evaluate 3dhp_best_epoch.bin \
        -num_proposals 5 -sampling_timesteps 5 -b 4

By default evaluation and the .mat files follow the authors' script: P-Best groups of 2 clips
(their fixed value; -b sets the training batch only), the authors' test cameras for J-Agg, the
end-aligned last window's poses written over the overlap, and the .mat P-Best chosen over all
frames of a group; --pbest-group, --calibrated-camera and --pbest-valid-frames change that.
"""
from __future__ import annotations

from pathlib import Path

from ..run.arguments import build_parser, resolve_device
from ..run.config import RunConfig
from ..datasets.mpi_inf_3dhp import prepare_3dhp
from ..run.experiment import entry_point
from ..run.runner import run_experiment

AUTHORS_PBEST_GROUP = 2  # the authors' 3DHP evaluation takes the clips of a sequence 2 at a time


def parser():
    p = build_parser(__doc__.splitlines()[0])
    g = p.add_argument_group("MPI-INF-3DHP")
    g.add_argument("--prepare", action="store_true",
                   help="convert the official release in --raw-dir into data/data_{train,test}_3dhp_ori.npz")
    g.add_argument("--raw-dir", default="",
                   help="the official release (S*/Seq*, TS*/annot_data.mat); also the exact ground truth for scoring")
    g.add_argument("--test-sequences", default="*", help="test sequences, e.g. TS1,TS5 (* for all present)")
    g.add_argument("--calibrated-camera", action="store_true",
                   help="J-Agg reprojects with fy = fx x the calibrated pixel aspect (fits the 2D annotations "
                        "better) instead of the authors' fx = fy")
    g.add_argument("--pbest-valid-frames", action="store_true",
                   help="the .mat files' P-Best picks its hypothesis over the valid frames only (as the printed "
                        "P-Best does) instead of over all frames of the group, as the authors' export does")
    p.set_defaults(pbest_group=AUTHORS_PBEST_GROUP)
    return p


def run(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.prepare:
        return prepare(args)
    device = resolve_device(args)
    run_experiment(RunConfig.from_args(args), device, "mpi_inf_3dhp", args)   # .mat files and scores after --evaluate
    return 0


def prepare(args) -> int:
    """--prepare: convert the official release in --raw-dir into the processed files in --data-dir."""
    if not args.raw_dir:
        raise ValueError("--prepare needs --raw-dir: the folder of the official MPI-INF-3DHP release")
    for split, path in prepare_3dhp(args.raw_dir, Path(args.data_dir)).items():
        print(f"wrote {split} data to {path}")
    return 0


def main(argv=None) -> int:
    return entry_point(lambda: run(argv))

