"""Draw one Human3.6M sequence: evaluate a checkpoint on it, animate the 2D input, the H hypotheses
and the J-Agg pose beside the ground truth, and plot its errors per sampling iteration.

    python main_draw.py -k cpn_ft_h36m_dbb -b 2 -c checkpoint -gpu 0 --nolog --evaluate h36m_best_epoch.bin \
        -num_proposals 5 -sampling_timesteps 5 --render --viz-subject S11 --viz-action SittingDown --viz-camera 1
    python main_draw.py -d synthetic -k det -c checkpoint/demo --evaluate best_epoch.bin \
        -num_proposals 5 -sampling_timesteps 5 --render --viz-subject S9 --viz-action Walking --viz-camera 0

Writes <out>.mp4 (or .gif without PyAV and ffmpeg) with --render, and always <out>_errors.png (the four
aggregation modes against the iteration k) and <out>_hypotheses.png (one frame, all hypotheses),
where <out> is --viz-output (default plot/<dataset>/<subject>_<action>_cam<k>).
"""
from __future__ import annotations


from ..run.arguments import build_draw_parser, resolve_device
from ..run.config import RunConfig
from ..run.draw import DrawView, draw_sequence
from ..run.experiment import entry_point


def run(argv=None) -> int:
    args = build_draw_parser(__doc__.splitlines()[0]).parse_args(argv)
    written = draw_sequence(RunConfig.from_args(args), DrawView.from_args(args), resolve_device(args))
    print("wrote " + ", ".join(str(p) for p in written) + ("" if args.render else " (--render for the animation)"))
    return 0


def main(argv=None) -> int:
    return entry_point(lambda: run(argv))

