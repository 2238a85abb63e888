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

from ..arguments import build_parser, resolve_device
from ..config import RunConfig, split_list
from ..datasets.base import Selection
from ..datasets.mpi_inf_3dhp import TEST_NPZ, MPIINF3DHPDataset, prepare_3dhp
from ..distributed import init_from_env
from ..experiment import entry_point, load_for_evaluation, run_evaluation, run_training
from ..mpi_inf_3dhp_eval import export_evaluation, format_summary, score_prediction_files

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
    data_dir = Path(args.data_dir)
    if args.prepare:
        if not args.raw_dir:
            raise ValueError("--prepare needs --raw-dir: the folder of the official MPI-INF-3DHP release")
        for split, path in prepare_3dhp(args.raw_dir, data_dir).items():
            print(f"wrote {split} data to {path}")
        return 0
    device = resolve_device(args)
    config = RunConfig.from_args(args)
    test_source = data_dir / TEST_NPZ if (data_dir / TEST_NPZ).is_file() else Path(args.raw_dir or data_dir)
    dataset = MPIINF3DHPDataset(data_dir, test_source, calibrated_camera=args.calibrated_camera)
    test = dataset.test_sequences(Selection(subjects_test=split_list(args.test_sequences)))
    out_dir = Path(config.checkpoint)

    if config.evaluate:
        _, device = init_from_env(device)              # under torchrun: this process's device
        model, checkpoint, config = load_for_evaluation(config, device)
        _, results = run_evaluation(config, model, test, dataset.layout, device, out_dir,
                                    name=f"eval_{Path(config.evaluate).stem}", checkpoint=checkpoint,
                                    keep_poses=True, dataset=dataset)
        if results is None:                            # under torchrun, rank 0 writes and scores
            return 0
        files = export_evaluation(results, out_dir)
        print(f"wrote {', '.join(f.name for f in files)} to {out_dir}")
        gt_source = Path(args.raw_dir) if args.raw_dir else test_source
        scores = score_prediction_files(files, gt_source, out_dir / "3dhp_scores")
        print(format_summary(scores))
        print(f"CSV tables in {out_dir / '3dhp_scores'}")
        return 0

    train = dataset.train_sequences(Selection())
    run_training(config, train, test, dataset.layout, device, dataset=dataset)
    return 0


def main(argv=None) -> int:
    return entry_point(lambda: run(argv))

