"""The run configuration: every setting of a training or evaluation run, typed, in one object.

Entry scripts build it once from their flags (`RunConfig.from_args`); the Python API builds it
from keywords (`RunConfig(num_proposals=5, ...)`). Library code reads it and never changes it:
a step that settles a value (the checkpoint's architecture, a resumed run's hyper-parameters)
returns a new one (`dataclasses.replace`).

Field names are the flags' argparse names, so a checkpoint's stored `args` dict (which the
authors' scripts and ours write) maps onto the fields one to one. `flag` metadata names the
command-line flag in messages; `resume` marks the run hyper-parameters a resumed run takes from
its checkpoint unless the command line gives them (True), and the data flags it always takes
from it ("data").
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..datasets.base import Selection
from ..model.denoiser import ARCHITECTURE_FIELDS, DenoiserConfig


def _flag(name: str, default, resume: bool | str = False, **kw):
    return field(default=default, metadata={"flag": name, "resume": resume}, **kw)


def split_list(text: str) -> list[str] | None:
    """'S1,S5' -> ['S1', 'S5']; '*' or '' -> None (no filter)."""
    if text in ("*", ""):
        return None
    return [s.strip() for s in text.split(",") if s.strip()]


@dataclass(frozen=True)
class RunConfig:
    # data
    dataset: str = _flag("-d", "h36m", resume="data")
    keypoints: str = _flag("-k", "cpn_ft_h36m_dbb", resume="data")
    data_dir: str = _flag("--data-dir", "data")
    subjects_train: str = _flag("-str", "S1,S5,S6,S7,S8", resume="data")
    subjects_test: str = _flag("-ste", "S9,S11")
    actions: str = _flag("-a", "*", resume="data")
    subset: float = _flag("--subset", 1.0, resume="data")
    downsample: int = _flag("--downsample", 1, resume="data")
    # run
    checkpoint: str = _flag("-c", "checkpoint")
    log: str = _flag("-l", "log/default")
    nolog: bool = _flag("--nolog", False)
    resume: str = _flag("-r", "")
    overwrite: bool = _flag("--overwrite", False)
    no_progress: bool = _flag("--no-progress", False)
    evaluate: str = _flag("--evaluate", "")
    checkpoint_frequency: int = _flag("-cf", 20, resume=True)
    seed: int = _flag("--seed", 1, resume=True)
    # model (None: the checkpoint's, or DenoiserConfig's default for a new run)
    number_of_frames: int | None = _flag("-f", None)
    cs: int | None = _flag("-cs", None)
    dep: int | None = _flag("-dep", None)
    heads: int = _flag("--heads", 8)
    drop_path: float = _flag("--drop-path", 0.1)
    # diffusion
    timestep: int = _flag("-timestep", 1000, resume=True)
    scale: float = _flag("-scale", 1.0, resume=True)
    num_proposals: int = _flag("-num_proposals", 1)
    sampling_timesteps: int = _flag("-sampling_timesteps", 1)
    eta: float = _flag("--eta", 1.0)
    # training
    epochs: int = _flag("-e", 400, resume=True)
    batch_size: int = _flag("-b", 1024, resume=True)
    stride: int = _flag("-s", 243, resume=True)
    learning_rate: float = _flag("-lr", 6e-5, resume=True)
    lr_decay: float = _flag("-lrd", 0.993, resume=True)
    weight_decay: float = _flag("-wd", 0.1, resume=True)
    data_augmentation: bool = _flag("-no-da", True, resume=True)
    view_augment: float = _flag("--view-augment", 0.0, resume=True)
    bone_augment: float = _flag("--bone-augment", 0.0, resume=True)
    time_warp: float = _flag("--time-warp", 0.0, resume=True)
    val_proposals: int = _flag("--val-proposals", 1, resume=True)
    val_timesteps: int = _flag("--val-timesteps", 1, resume=True)
    no_eval: bool = _flag("--no-eval", False, resume=True)
    # evaluation
    test_time_augmentation: bool = _flag("-no-tta", True)
    p2: bool = _flag("--p2", False)
    by_subject: bool = _flag("--by-subject", False)
    pbest_group: int | None = _flag("--pbest-group", None)
    pbest_valid_frames: bool = _flag("--pbest-valid-frames", False)
    exact_frames: bool = _flag("--exact-frames", False)
    eval_batch: int = _flag("--eval-batch", 0)
    # per-joint uncertainty
    coverage: float = _flag("--coverage", 0.9)
    calibrate: bool = _flag("--calibrate", False)
    save_predictions: str = _flag("--save-predictions", "")
    # speed
    max_batch_hypotheses: int = _flag("--max-batch-hypotheses", 0)
    amp: str | None = _flag("--amp", None)
    compile: str = _flag("--compile", "auto")
    engine: str = _flag("--engine", "auto")
    tf32: bool = _flag("--tf32", False)
    deterministic: bool = _flag("--deterministic", False)
    # which fields the command line gave explicitly (a resumed run tells them from defaults)
    given: frozenset = field(default=frozenset(), compare=False)

    @classmethod
    def from_args(cls, args) -> "RunConfig":
        """The configuration of an argparse namespace (extra attributes are ignored; missing
        ones keep their defaults)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"given"}
        values = {n: getattr(args, n) for n in names if hasattr(args, n)}
        return cls(**values, given=frozenset(getattr(args, "given", ())) & names)

    @classmethod
    def flag(cls, name: str) -> str:
        """The command-line flag of a field, for messages."""
        return cls.__dataclass_fields__[name].metadata.get("flag", name)

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The plain values stored in a checkpoint as its 'args'."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k != "given" and isinstance(v, (int, float, str, bool))}

    # ------------------------------------------------------------------ derived settings

    def pbest_clips(self) -> int:
        """Clips of one sequence per P-Best group in evaluation: --pbest-group, else -b."""
        group = self.pbest_group or self.batch_size
        if group < 1:
            raise ValueError(f"-b {self.batch_size}: evaluation needs at least 1 clip per P-Best group")
        return group

    def training_clips(self) -> int:
        """Clips per training batch: -b frames // -s frames per clip, as the authors' scripts count."""
        clips = self.batch_size // self.stride
        if clips < 1:
            raise ValueError(f"-b {self.batch_size} -s {self.stride} gives {clips} clips per training batch "
                             f"(b // s): give -b at least -s (the authors' default is -b 1024 -s 243, 4 clips), "
                             f"or -s 1 to count -b in clips")
        return clips

    def selection(self) -> Selection:
        """Which sequences the data flags select."""
        return Selection(split_list(self.subjects_train), split_list(self.subjects_test), split_list(self.actions),
                         self.subset, self.downsample)

    def architecture_given(self) -> dict:
        """The architecture fields set explicitly (DenoiserConfig names -> values)."""
        given = {name: getattr(self, attr) for name, (attr, _) in ARCHITECTURE_FIELDS.items()}
        return {k: v for k, v in given.items() if v is not None}

    def with_architecture(self, cfg: DenoiserConfig | None = None) -> "RunConfig":
        """-f/-cs/-dep left unset taken from cfg (a loaded checkpoint's), else the defaults."""
        base = cfg or DenoiserConfig()
        return self.replace(**{attr: getattr(base, name) for name, (attr, _) in ARCHITECTURE_FIELDS.items()
                               if getattr(self, attr) is None})

    def model_config(self, input_name: str = "h36m") -> DenoiserConfig:
        """The denoiser of a new run on 2D input of layout `input_name`: COCO-17 input is mapped
        onto the output joints inside the model (common.model.denoiser.INPUT_MAPS)."""
        return DenoiserConfig(**self.with_architecture().architecture_given(), heads=self.heads,
                              drop_path=self.drop_path, input_map="coco_to_h36m" if input_name == "coco" else "")


# The run hyper-parameters a resumed run takes from its checkpoint unless typed (field -> flag),
# and the data flags it always takes from it (a typed one that differs is refused).
RESUME_FIELDS = {f.name: f.metadata["flag"] for f in dataclasses.fields(RunConfig) if f.metadata.get("resume") is True}
DATA_FIELDS = {f.name: f.metadata["flag"] for f in dataclasses.fields(RunConfig) if f.metadata.get("resume") == "data"}
