"""Motion capture -> a training set in the Human3.6M file format.

    python prepare_motion.py motion/deepmimic --name mocap --held-out '*jog*,*kick*'
    python prepare_motion.py my_bvh_folder --name lab --joint-map mixamo --merge synthetic
    python main.py -d lab -k det -c checkpoint/lab      # trains on S1 S5 S6 S7 S8, reports on S9 S11

Reads every motion file under the folder (.bvh, CMU .amc with its .asf, DeepMimic .txt/.json,
.npy/.npz joint positions), turns each into Human3.6M-17 joints on the floor at 50 fps, and
writes data_3d_<name>.npz and data_2d_<name>_{gt,det}.npz into --data-dir. The held-out files
go to the test subjects S9 and S11, the others to the training subjects S1 S5 S6 S7 S8.
"""
from __future__ import annotations

import argparse

from tqdm import tqdm

from ..datasets.mocap.positions import AXES, UNITS
from ..datasets.mocap.readers import motion_files, read_motion
from ..datasets.mocap.motion import TRAINING_FPS
from ..datasets.mocap.training_set import MAX_SECONDS, TEST_SUBJECTS, deal, write_motion_set
from ..run.arguments import positive_float
from ..run.experiment import entry_point


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="\n".join(__doc__.splitlines()[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="folder of motion files (searched recursively)")
    p.add_argument("--data-dir", default="data", help="where the set's files are written (default data)")
    p.add_argument("--name", default="mocap", help="the set's name: -d NAME in main.py (default mocap)")
    p.add_argument("--held-out", default="", metavar="PATTERNS",
                   help="comma-separated file-name patterns (e.g. '*jog*,walk_3.bvh') kept out of training: "
                        "they become the test subjects S9 and S11")
    p.add_argument("--merge", default="", metavar="NAME",
                   help="also write the subjects and actions of the set NAME in --data-dir (e.g. synthetic)")
    p.add_argument("--max-seconds", type=positive_float, default=MAX_SECONDS,
                   help=f"cut longer motions into pieces of at most this long, each re-centred under the cameras "
                        f"(default {MAX_SECONDS:g})")
    p.add_argument("--joint-map", default=None, metavar="NAME|FILE.json",
                   help="BVH joint names -> Human3.6M joints: cmu, mixamo, rigify or a JSON file "
                        "(default: recognised from the names)")
    p.add_argument("--fps", type=positive_float, default=None,
                   help="frame rate of position arrays without an 'fps' entry, and of .amc files (default 120)")
    p.add_argument("--units", choices=sorted(UNITS), default="m", help="unit of position arrays (default m)")
    p.add_argument("--up", choices=AXES, default="z-up", help="vertical axis of position arrays (default z-up)")
    p.add_argument("--seed", type=int, default=0, help="seed of the detector-like 2D noise (default 0)")
    return p


def run(argv=None) -> int:
    args = build_parser().parse_args(argv)
    files = motion_files(args.folder)
    if not files:
        raise ValueError(f"{args.folder}: no motion files (.bvh .amc .txt .json .npy .npz) found")
    motions = [read_motion(f, args.joint_map, args.fps, args.units, args.up)
               for f in tqdm(files, desc="reading motion", unit="file", disable=len(files) < 5)]
    held_out = [p.strip() for p in args.held_out.split(",") if p.strip()]
    takes = deal(motions, held_out, args.max_seconds)
    paths = write_motion_set(takes, args.data_dir, args.name, args.seed, args.merge or None)
    seconds = {"train": 0.0, "test": 0.0}
    for t in takes:
        seconds["test" if t.subject in TEST_SUBJECTS else "train"] += len(t.joints) / TRAINING_FPS
    print(f"{len(files)} motion files -> {len(takes)} sequences: {seconds['train']:.1f} s for training (S1 S5 S6 S7 S8), "
          f"{seconds['test']:.1f} s held out (S9 S11)" + (f", with the subjects of {args.merge}" if args.merge else ""))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    print(f"train: python main.py -d {args.name} -k det --data-dir {args.data_dir}")
    return 0


def main(argv=None) -> int:
    return entry_point(lambda: run(argv))
