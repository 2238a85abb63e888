"""The command-line flags shared by every entry script (names follow the authors' scripts).
The entry scripts turn the parsed flags into a RunConfig (common/run/config.py) at once."""
from __future__ import annotations

import argparse
import math

import torch

from ..model.denoiser import DenoiserConfig
from ..model.device import choose_device, configure_numerics


_DEFAULT_MODEL = DenoiserConfig()   # the architecture of a new run unless -f/-cs/-dep say otherwise


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose namespaces record which flags the command line gave
    (args.given, a set of destination names), so a resumed run can tell them from defaults."""

    def parse_known_args(self, args=None, namespace=None):
        parsed, extra = super().parse_known_args(args, namespace)
        defaults = {a: a.default for a in self._actions}
        try:
            for action in self._actions:
                action.default = argparse.SUPPRESS
            given = vars(super().parse_known_args(args, None)[0])
        finally:
            for action, default in defaults.items():
                action.default = default
        parsed.given = set(given) - {"given"}
        self._check_combinations(parsed)
        return parsed, extra

    def _check_combinations(self, args) -> None:
        """Flags whose valid range depends on another flag."""
        cs, heads = getattr(args, "cs", None), getattr(args, "heads", None)
        if cs is not None and heads and cs % heads:
            self.error(f"-cs {cs} is not a multiple of --heads {heads}: the channels are split evenly between the "
                       f"attention heads; give -cs a multiple of {heads} (e.g. {heads * max(1, round(cs / heads))})")
        timesteps = getattr(args, "timestep", None)
        for name, flag in (("sampling_timesteps", "-sampling_timesteps"), ("val_timesteps", "--val-timesteps")):
            value = getattr(args, name, None)
            if timesteps and value is not None and value > timesteps:
                self.error(f"{flag} {value} is more than -timestep {timesteps}: DDIM takes at most one iteration "
                           f"per diffusion timestep; give {flag} between 1 and {timesteps}")

    def error(self, message: str):
        """One line, `error: ...`, exit code 2 (argparse prints its whole usage first)."""
        self.exit(2, f"error: {message} ({self.prog} --help lists the flags)\n")


def number(kind=int, low=None, high=None, *, low_open: bool = False, high_open: bool = False, what: str = ""):
    """An argparse type: text -> int or float, refused (with the valid range in the message)
    when it does not parse, is not finite, or lies outside [low, high] (open ends with
    low_open / high_open). what: what the value is, for the message (e.g. 'hypotheses H')."""
    noun = "an integer" if kind is int else "a number"
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high}")
    valid = f"{noun}{' ' if bounds else ''}{' and '.join(bounds)}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or (kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{text!r} is not {'a finite number' if kind is float else noun}: "
                                             f"{what + ' is ' if what else 'give '}{valid}")
        if (low is not None and (value <= low if low_open else value < low)) or \
                (high is not None and (value >= high if high_open else value > high)):
            raise argparse.ArgumentTypeError(f"{text} is out of range: {what + ' must be ' if what else 'give '}{valid}")
        return value

    parse.__name__ = valid
    return parse


positive_int = number(int, 1)
non_negative_int = number(int, 0)
positive_float = number(float, 0, low_open=True)
non_negative_float = number(float, 0)
finite_float = number(float)
# numpy's RandomState takes seeds in [0, 2**32); torch's generators take them too.
SEED = number(int, 0, 2 ** 32 - 1, what="the seed")


def gpu_list(text: str) -> str:
    """-gpu: a CUDA device index, or a comma-separated list of them (the first is used)."""
    if not all(part.strip().isdigit() for part in text.split(",")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a CUDA device index: give an integer >= 0 such as 0 "
                                         f"(or a list such as 0,1), or --device cpu")
    return text


def subject_list(text: str) -> str:
    """-str / -ste: a comma-separated list of subjects (or * for all); empty is an error."""
    if not text.replace(",", "").strip():
        raise argparse.ArgumentTypeError("empty subject list: name the subjects, e.g. S9,S11 (or * for all)")
    return text


def build_parser(description: str = "D3DP: diffusion-based 3D human pose estimation") -> argparse.ArgumentParser:
    p = Parser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    g = p.add_argument_group("data")
    g.add_argument("-d", "--dataset", default="h36m", help="dataset name: reads data/data_3d_<dataset>.npz")
    g.add_argument("-k", "--keypoints", default="cpn_ft_h36m_dbb",
                   help="2D detections: reads data/data_2d_<dataset>_<keypoints>.npz")
    g.add_argument("--data-dir", default="data", help="folder holding the dataset files")
    g.add_argument("-str", "--subjects-train", type=subject_list, default="S1,S5,S6,S7,S8", help="training subjects, comma-separated")
    g.add_argument("-ste", "--subjects-test", type=subject_list, default="S9,S11", help="test subjects, comma-separated")
    g.add_argument("-a", "--actions", default="*",
                   help="actions to use, comma-separated, * for all: an action is kept when its name starts with "
                        "one of them (-a Walk keeps Walking and WalkDog, -a Sitting keeps Sitting and SittingDown)")
    g.add_argument("--subset", type=number(float, 0, 1, low_open=True), default=1.0,
                   help="fraction of each training sequence to use (a deterministic contiguous part); training only")
    g.add_argument("--downsample", type=positive_int, default=1,
                   help="use every n-th frame of the training sequences and, in evaluation, of the test sequences "
                        "(before cutting windows); Human3.6M-format data")

    g = p.add_argument_group("run")
    g.add_argument("-c", "--checkpoint", default="checkpoint", help="folder for checkpoints and result logs")
    g.add_argument("-l", "--log", default="log/default", help="TensorBoard log folder")
    g.add_argument("--nolog", action="store_true", help="no TensorBoard logging")
    g.add_argument("-r", "--resume", default="", metavar="NAME",
                   help="resume training from the checkpoint <-c folder>/NAME (or the path NAME): the architecture "
                        "and the run's hyper-parameters come from the file unless given explicitly")
    g.add_argument("--overwrite", action="store_true",
                   help="start a new training run in a -c folder that holds an earlier run's checkpoints; "
                        "they are moved to a time-stamped subfolder, not deleted")
    g.add_argument("--no-progress", action="store_true",
                   help="no progress bars (they are off anyway when stderr is not a terminal)")
    g.add_argument("--evaluate", default="", metavar="NAME",
                   help="evaluate the checkpoint <-c folder>/NAME (or the path NAME), ours or the authors'")
    g.add_argument("-cf", "--checkpoint-frequency", type=non_negative_int, default=20,
                   help="keep a checkpoint every n epochs (0: none besides latest and best)")
    g.add_argument("-gpu", type=gpu_list, default="0", help="CUDA device index (as in the authors' scripts); "
                                             "falls back to the CPU when CUDA is unavailable")
    g.add_argument("--device", default="", help="cpu, cuda or cuda:N (overrides -gpu)")
    g.add_argument("--seed", type=SEED, default=1, help="random seed")
    g.add_argument("--demo", action="store_true", help="train and evaluate a small model on a built-in "
                                                       "synthetic data set (no downloads)")

    g = p.add_argument_group("model")
    g.add_argument("-f", "--number-of-frames", type=positive_int, default=None,
                   help=f"clip length F (default {_DEFAULT_MODEL.frames}; with --evaluate: the file's)")
    g.add_argument("-cs", "--cs", type=positive_int, default=None,
                   help=f"channel size C (default {_DEFAULT_MODEL.channels}; with --evaluate: the file's)")
    g.add_argument("-dep", "--dep", type=positive_int, default=None,
                   help=f"depth D, spatial/temporal block pairs (default {_DEFAULT_MODEL.depth}; "
                        f"with --evaluate: the file's)")
    g.add_argument("--heads", type=positive_int, default=8, help="attention heads")
    g.add_argument("--drop-path", type=number(float, 0, 1, high_open=True), default=0.1, help="stochastic depth rate of the last block")

    g = p.add_argument_group("diffusion")
    g.add_argument("-timestep", "--timestep", type=positive_int, default=1000, help="diffusion timesteps T")
    g.add_argument("-scale", "--scale", type=positive_float, default=1.0, help="scale of poses in diffusion")
    g.add_argument("-num_proposals", "--num-proposals", dest="num_proposals", type=number(int, 1, what="H, the number of hypotheses,"), default=1,
                   help="hypotheses H at evaluation")
    g.add_argument("-sampling_timesteps", "--sampling-timesteps", dest="sampling_timesteps", type=number(int, 1, what="K, the number of DDIM iterations,"),
                   default=1,
                   help="DDIM iterations K at evaluation")
    g.add_argument("--eta", type=number(float, 0, 1), default=1.0, help="DDIM eta")

    g = p.add_argument_group("training")
    g.add_argument("-e", "--epochs", type=positive_int, default=400, help="training epochs")
    g.add_argument("-b", "--batch-size", type=positive_int, default=1024,
                   help="training: frames per batch, a batch holds b // s clips; evaluation: clips of one "
                        "sequence per P-Best group (see --pbest-group)")
    g.add_argument("-s", "--stride", type=positive_int, default=243,
                   help="training: the frames per clip -b is divided by (a batch holds b // s clips; -s 1 makes "
                        "-b a number of clips)")
    g.add_argument("-lr", "--learning-rate", type=positive_float, default=6e-5)
    g.add_argument("-lrd", "--lr-decay", type=positive_float, default=0.993, help="learning-rate factor after each epoch")
    g.add_argument("-wd", "--weight-decay", type=non_negative_float, default=0.1)
    g.add_argument("-no-da", "--no-data-augmentation", dest="data_augmentation", action="store_false",
                   help="no horizontal-flip training augmentation")
    g.add_argument("--view-augment", type=number(float, 0, 90), default=0.0, metavar="DEG",
                   help="see every training clip from a camera turned about the person by up to DEG degrees "
                        "of pitch and DEG/2 of roll, the 2D re-projected (Human3.6M-layout 2D; 0: off, as the "
                        "authors; the demo uses 20)")
    g.add_argument("--bone-augment", type=number(float, 0, 0.5), default=0.0, metavar="FRACTION",
                   help="give every training clip other body proportions: each bone group (thighs, shins, "
                        "upper arms, ..., left and right alike) lengthened or shortened by up to FRACTION, the 2D "
                        "re-projected (Human3.6M-layout 2D; 0: off, as the authors)")
    g.add_argument("--time-warp", type=number(float, 0, 1), default=0.0, metavar="FRACTION",
                   help="play every training clip at another speed, between 1/(1+FRACTION) and 1+FRACTION times "
                        "(log-uniform), 3D and 2D interpolated between frames (0: off, as the authors)")
    g.add_argument("--val-proposals", type=positive_int, default=1, help="hypotheses of the per-epoch validation")
    g.add_argument("--val-timesteps", type=positive_int, default=1, help="DDIM iterations of the per-epoch validation")
    g.add_argument("--no-eval", action="store_true", help="skip the per-epoch validation")

    g = p.add_argument_group("evaluation")
    g.add_argument("-no-tta", "--no-test-time-augmentation", dest="test_time_augmentation", action="store_false",
                   help="no flip test-time augmentation")
    g.add_argument("--p2", action="store_true", help="also report protocol 2 (P-MPJPE)")
    g.add_argument("--by-subject", action="store_true",
                   help="also print, per test subject, every action's numbers and the subject's plain mean over "
                        "its actions (JSON: 'subjects' rows S9/Directions and S9)")
    g.add_argument("--pbest-group", type=positive_int, default=None, metavar="N",
                   help="clips of one sequence per P-Best group in evaluation (None: -b)")
    g.add_argument("--exact-frames", action="store_true",
                   help="count every frame once (the authors' protocol counts the overlap of the last window twice)")
    g.add_argument("--eval-batch", type=non_negative_int, default=0,
                   help="clips per denoiser call in evaluation (0: one P-Best group); changes speed, not results")

    g = p.add_argument_group("per-joint uncertainty (from the spread of the hypotheses; needs -num_proposals >= 2)")
    g.add_argument("--coverage", type=number(float, 0, 1, low_open=True, high_open=True, what="coverage"), default=0.9,
                   metavar="P",
                   help="the probability that the true joint lies within a joint's uncertainty radius")
    g.add_argument("--calibrate", action="store_true",
                   help="fit the per-joint uncertainty factors: when training, at the end, on every other recording "
                        "of the validation set, stored in best_epoch.bin and latest_epoch.bin; with --evaluate, on "
                        "every other recording of the evaluated set, written to <-c>/<name>_calibrated.bin")
    g.add_argument("--save-predictions", default="", metavar="FILE.npz",
                   help="with --evaluate: write every sequence's per-frame J-Agg and P-Agg poses, uncertainty "
                        "radius, ground truth and frame numbers (mm, root-relative) to FILE.npz")

    g = p.add_argument_group("speed (results change only by float rounding, except with --amp)")
    g.add_argument("--max-batch-hypotheses", type=non_negative_int, default=0, metavar="N",
                   help="clip-hypotheses per denoiser call when sampling; larger batches are split "
                        "(0: automatic, cache-sized on the CPU, a quarter of the GPU memory on a GPU)")
    g.add_argument("--amp", choices=("bf16", "fp16"), default=None,
                   help="reduced precision for the denoiser: torch.autocast (for GPUs; slower on CPUs "
                        "without AMX), or with OpenVINO its bf16 inference precision; changes results slightly")
    g.add_argument("--compile", nargs="?", const="on", default="auto", choices=("auto", "on", "off"),
                   help="run the denoiser through torch.compile (--compile = on); auto: for training runs "
                        "long enough to repay the compilation (about a minute), and for long evaluations on a "
                        "CPU without OpenVINO, where a compiler is present")
    g.add_argument("--engine", choices=("auto", "eager", "openvino"), default="auto",
                   help="what runs the denoiser when evaluating: eager PyTorch, or OpenVINO (optional "
                        "package; with --amp bf16 in bfloat16); auto: OpenVINO on a CPU when it is "
                        "installed and the work repays its conversion (else torch.compile under --compile auto for long "
                        "work), else PyTorch")
    g.add_argument("--tf32", action="store_true",
                   help="on NVIDIA GPUs, float32 matrix products in TensorFloat-32 (faster on Ampere and newer; "
                        "about 3 significant digits per product, so results differ slightly); no effect on CPUs")
    g.add_argument("--deterministic", action="store_true",
                   help="deterministic GPU kernels only (torch.use_deterministic_algorithms, cuBLAS workspace "
                        "config), so that reruns and resumed runs on a GPU repeat bit for bit; slower")
    return p


def add_viz_arguments(parser, limit_help: str = "draw (and evaluate) only the first N frames; None: all"):
    """The animation flags of main_draw.py and main_in_the_wild.py (VideoPose3D's names)."""
    g = parser.add_argument_group("visualisation")
    g.add_argument("--render", action="store_true", help="write the animation")
    g.add_argument("--viz-output", default="", metavar="FILE",
                   help="animation file, .mp4 (needs PyAV or ffmpeg, else a .gif is written) or .gif")
    g.add_argument("--viz-limit", type=positive_int, default=None, metavar="N", help=limit_help)
    g.add_argument("--viz-downsample", type=positive_int, default=1, metavar="N", help="animate every N-th frame")
    g.add_argument("--viz-size", type=positive_float, default=5.0, help="size of each panel, inches (100 dpi)")
    g.add_argument("--viz-azimuth", type=finite_float, default=-70.0,
                   help="view azimuth of the 3D panels, degrees (-90 looks from the camera)")
    return g


def build_draw_parser(description: str = "Draw one Human3.6M sequence") -> argparse.ArgumentParser:
    """The flags of main_draw.py: the shared set, the animation flags and the sequence to draw."""
    p = build_parser(description)
    g = add_viz_arguments(p)
    g.add_argument("--viz-subject", default="S11", help="subject to draw")
    g.add_argument("--viz-action", default="SittingDown",
                   help="action: an exact name ('SittingDown 2') or a group (its first sequence)")
    g.add_argument("--viz-camera", type=non_negative_int, default=1, help="camera index, 0-3")
    g.add_argument("--viz-video", default="", metavar="FILE", help="video of that camera to draw the 2D "
                                                                  "input on (read with PyAV or ffmpeg)")
    g.add_argument("--viz-no-ground-truth", action="store_true", help="leave out the ground truth")
    g.add_argument("--viz-frame", type=non_negative_int, default=None, metavar="I",
                   help="frame of the hypotheses still; None: the middle one")
    g.add_argument("--viz-export", default="", metavar="FILE.npz",
                   help="also save hypotheses, aggregated poses, ground truth and 2D input to this file")
    return p


def resolve_device(args) -> torch.device:
    """--device wins; else -gpu N selects cuda:N when CUDA is present, the CPU otherwise. The
    numerics flags (--tf32, --deterministic) are applied here, before any work."""
    device = choose_device(args.device, args.gpu)
    configure_numerics(getattr(args, "tf32", False), getattr(args, "deterministic", False))
    return device
