"""The Python API: lift 2D keypoints to 3D with a trained model, and evaluate a checkpoint on a
data set, without the command line.

    import d3dp
    lifter = d3dp.Lifter.from_checkpoint("best_epoch.bin", device="cpu")
    result = lifter.lift(keypoints, image_size=(1920, 1080), hypotheses=5, iterations=5, seed=0)
    result.j_agg, result.p_agg, result.hypotheses, result.trajectory; result.save("out.npz")

    report = d3dp.evaluate_checkpoint("best_epoch.bin", d3dp.H36MDataset("data", "cpn_ft_h36m_dbb"),
                           num_proposals=5, sampling_timesteps=5, batch_size=4)
    print(report.text()); report.headline()    # metres

Both run exactly the code of the entry scripts (main_in_the_wild.py --keypoints-file and
main.py --evaluate): the same settings and seed give the same numbers. Bad input raises the
same one-line errors (ValueError subclasses) the command line prints.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .run.calibration import stored_calibration
from .run.config import RunConfig
from .datasets.base import Dataset, Sequence
from .geometry.skeleton import Layout
from .model.device import choose_device
from .geometry.coco import input_layout
from .run.experiment import evaluate_model, load_for_evaluation
from .inference.core import InferenceCore
from .in_the_wild import lifting
from .in_the_wild.inputs import checked_image_size, input_layout_of
from .in_the_wild.keypoints import Keypoints2D, keypoints_from_array
from .in_the_wild.result import PeopleResult, WildResult
from .in_the_wild.root_depth import training_focal
from .evaluation.report import Report
from .uncertainty.factors import check_coverage

LiftResult = WildResult


def _quiet(*_args, **_kwargs) -> None:
    pass


class Lifter:
    """A trained denoiser ready to lift one person's 2D keypoints to 3D poses (JPMA without
    ground truth: an estimated root trajectory and a pinhole camera). It samples through one
    InferenceCore (common.inference.core) built from the run configuration; each call's settings
    (hypotheses, iterations, seed, flip, batch) replace the run's for that call only."""

    def __init__(self, core: InferenceCore, checkpoint: dict, layout_source: str, virtual_camera: bool = True):
        self.core, self.checkpoint, self.layout_source = core, checkpoint, layout_source
        # The 2D is lifted as a camera with the training cameras' focal length would see it (exact
        # for a pinhole camera; the 3D is unchanged), so a person filmed with another lens looks
        # as the model learnt people to look; off: the 2D as it is.
        self.virtual_focal = training_focal(checkpoint) if virtual_camera else None

    @property
    def model(self):
        return self.core.model

    @property
    def run(self) -> RunConfig:
        return self.core.run

    @property
    def device(self):
        return self.core.device

    @property
    def layout(self) -> str:
        """The model's 2D input layout: 'coco' or 'h36m'."""
        return self.core.layout.input_name

    @classmethod
    def from_checkpoint(cls, path, device: str = "cpu", layout: str | None = None, log=_quiet,
                        virtual_camera: bool = True, **settings) -> "Lifter":
        """Load our checkpoint or the authors' .bin. layout overrides the 2D layout the checkpoint
        records ('coco' or 'h36m'; the authors' files record none). virtual_camera=False lifts
        the 2D as it is instead of as the training cameras would see it (--no-virtual-camera).
        settings: RunConfig fields of the diffusion and speed (timestep, scale, eta, heads,
        max_batch_hypotheses, amp, engine)."""
        run = RunConfig(evaluate=str(path), checkpoint=str(Path(path).parent), **settings)
        return cls.from_config(run, choose_device(device), layout or "auto", log, virtual_camera)

    @classmethod
    def from_config(cls, run: RunConfig, device, layout: str = "auto", log=_quiet,
                    virtual_camera: bool = True) -> "Lifter":
        """The lifter of a run configuration (its --evaluate checkpoint), as the command line
        builds it: windows per sampling group --eval-batch, else -b; no torch.compile (lifting
        runs are short)."""
        model, checkpoint, run = load_for_evaluation(run, device)
        name, why = input_layout_of(checkpoint, layout)
        core = InferenceCore.from_run(run, model, device, input_layout(name), compile_auto=False, log=log,
                                      group=run.eval_batch or run.pbest_clips(), compute_batch=0)
        return cls(core, checkpoint, why, virtual_camera)

    def _prepare(self, hypotheses, iterations, seed, flip, batch, focal) -> tuple:
        """(the call's core, its LiftOptions): settings left unset are the run's, as the command
        line's are; the uncertainty factors the checkpoint holds for H hypotheses."""
        core = self.core.replace(hypotheses=None if hypotheses is None else _positive(hypotheses, "hypotheses"),
                                 iterations=None if iterations is None else _positive(iterations, "iterations"),
                                 seed=seed, flip=flip, group=batch or None)
        h = core.sampling.hypotheses
        options = lifting.LiftOptions(
            focal=focal, virtual_focal=self.virtual_focal, coverage=check_coverage(self.run.coverage),
            calibration=stored_calibration(self.checkpoint, self.run.evaluate, h, self.core.log))
        return core, options

    def lift_keypoints(self, keypoints: Keypoints2D, image_size, hypotheses: int | None = None,
                       iterations: int | None = None, seed: int | None = None, focal: float | None = None,
                       flip: bool | None = None, batch: int | None = None) -> LiftResult:
        """Lift keypoints as a keypoint file gives them (common.in_the_wild.keypoints; COCO-17 or
        Human3.6M-17 by their `layout`), mapped to the model's layout. Unset settings come from
        the run configuration."""
        core, options = self._prepare(hypotheses, iterations, seed, flip, batch, focal)
        return lifting.lift_keypoints(core, keypoints, checked_image_size(image_size), options)

    def lift(self, keypoints, image_size, hypotheses: int = 5, iterations: int = 5, seed: int | None = None,
             focal: float | None = None, flip: bool | None = None, batch: int | None = None,
             threshold: float = 0.3, max_missing: float = 0.5, frame_ids=None, layout: str | None = None) -> LiftResult:
        """3D poses for one person's 2D keypoints.

        keypoints: (N, 17, 2) or (N, 17, 3) pixels (third channel: detector confidence), NaN
        where nothing was detected, in the joint order `layout` names: 'coco' (COCO-17, what
        detectors give) or 'h36m' (Human3.6M-17); None: the model's input layout (`self.layout`).
        COCO-17 is mapped for a Human3.6M-input model; Human3.6M-17 for a COCO-input model is
        refused. Missing and low-confidence (< threshold) joints are interpolated over time, as
        for keypoint files. image_size: (width, height) pixels; focal: pixels (default as the
        command line's --focal). Returns a LiftResult: poses {mode: (N, 17, 3)} (j_agg, p_agg
        for short) and hypotheses (N, K, H, 17, 3) in metres, camera space, root-relative,
        Human3.6M-17; trajectory (N, 3).
        """
        kp = keypoints_from_array(keypoints, frame_ids, threshold, max_missing, source="keypoints",
                                  layout=layout or self.layout)
        return self.lift_keypoints(kp, image_size, hypotheses, iterations, seed, focal, flip, batch)

    def lift_video(self, path, hypotheses: int | None = None, iterations: int | None = None,
                   seed: int | None = None, focal: float | None = None, flip: bool | None = None,
                   batch: int | None = None, detector="auto", threshold: float = 0.3, max_gap: int = 30,
                   max_missing: float = 0.5, max_frames: int | None = None, progress: bool = False,
                   person: int | str | None = None, min_frames: int = 30) -> PeopleResult:
        """3D poses of the people in a video file: decode it (PyAV), detect 2D keypoints in every
        frame (`detector`: a name of common.in_the_wild.detectors or a Detector; the default
        finds several people when LiteRT is installed), link the detections into people and lift
        each, exactly as `main_in_the_wild.py --video` does. person: None, everyone followed
        through at least min_frames frames; 'longest'; or an id (1, 2, ... in order of
        appearance). Unset settings come from the run configuration (the command line's
        defaults). Returns a PeopleResult: `people` (one LiftResult each, with `person_id`,
        `video`: every frame's detections, `source`: the person's 2D and interpolation counts),
        `longest`, `person(id)`, `warnings`, `timings` (seconds per step), `save(path)`."""
        core, options = self._prepare(hypotheses, iterations, seed, flip, batch, focal)
        return lifting.lift_video(core, path, options, detector=detector, threshold=threshold, max_gap=max_gap,
                                  max_missing=max_missing, max_frames=max_frames, progress=progress, person=person,
                                  min_frames=_positive(min_frames, "min_frames"))

    def live(self, source, hypotheses: int | None = None, iterations: int | None = None, seed: int | None = None,
             focal: float | None = None, flip: bool | None = None, detector="auto", threshold: float = 0.3,
             max_gap: int = 30, pose_mode: str | None = None, smoothing=None, fps: float | None = None,
             torch_threads: int | str | None = "auto"):
        """Lift one person live from a camera or a stream, as `main_in_the_wild.py --live` does:
        a LiveStream (common.in_the_wild.live) to iterate over, closed when done (it is a context
        manager), giving a LiveFrame per lifted frame: always the newest frame, from the causal
        window of the last F frames. source: a camera index ('0'), a device, a URL, a FIFO, '-'
        or a video file (played in real time), or a live_source.Source; smoothing: a causal filter
        ('one-euro[:...]' or a filters.Filter); torch_threads: torch's threads while it is open
        ('auto': half the CPU cores, the detector has the rest). Unset settings come from the run
        configuration (H=1 K=1 unless it says otherwise: live sampling must keep up with the camera)."""
        from .in_the_wild import live
        from .in_the_wild.filters import Filter
        from .inference.aggregation import SHOWN_MODE

        core, options = self._prepare(hypotheses, iterations, seed, flip, None, focal)
        if isinstance(smoothing, str):
            smoothing = Filter.parse(smoothing)
        return live.LiveStream(core, source, options, detector=detector, threshold=threshold, max_gap=max_gap,
                               pose_mode=pose_mode or SHOWN_MODE, smoothing=smoothing, fps=fps,
                               torch_threads=torch_threads)


def _positive(value: int, name: str) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name}={value!r}: give a whole number of at least 1")
    return int(value)


def evaluate_checkpoint(checkpoint, dataset: Dataset | list[Sequence], device: str = "cpu",
                        layout: Layout | None = None, log=_quiet, **settings) -> Report:
    """Evaluate a checkpoint (ours or the authors') on a data set's test sequences, as
    `main.py --evaluate` does, and return the Report the command line prints (report.text(),
    report.to_json(), report.headline() in metres).

    dataset: a Dataset (its test sequences by the selection flags in settings: subjects_test,
    actions, downsample) or a list of Sequences with their `layout`. settings: RunConfig fields
    by their flag names (num_proposals, sampling_timesteps, batch_size, pbest_group, p2,
    exact_frames, seed, ...).
    """
    run = RunConfig(evaluate=str(checkpoint), checkpoint=str(Path(checkpoint).parent), **settings)
    device = choose_device(device)
    if isinstance(dataset, Dataset):
        sequences, layout = dataset.test_sequences(run.selection()), layout or dataset.layout
    else:
        sequences = list(dataset)
        if layout is None:
            raise ValueError("evaluate() on a list of sequences needs their joint layout: pass layout=")
    model, _, run = load_for_evaluation(run, device)
    _, _, results = evaluate_model(run, model, sequences, layout, device, log)
    return Report(results, by_subject=run.by_subject)


def read_result(path) -> dict[str, np.ndarray]:
    """A saved LiftResult (.npz) as plain arrays (no pickles)."""
    with np.load(path, allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}
