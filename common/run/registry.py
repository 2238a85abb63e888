"""The data sets the entry scripts know by name (common.run.runner runs them).

A registration says how to build a data set from a run's configuration and its command line's
parsed flags, which of its sequences the flags select, and what its evaluation does besides
the result tables (keyword overrides of experiment.run_evaluation, a hook after it). A new
data set is its module (a common.datasets.base.Dataset subclass) and one `register(...)` line,
here for a built-in one or anywhere before the run:

    register("my_set", lambda config, args: MySet(config.data_dir))

`main.py -d my_set` then trains and evaluates it. A -d name that is not registered names files
in Human3.6M's format (data_3d_<name>.npz, as `-d synthetic` does), read by the 'h36m' entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .config import RunConfig, split_list
from ..evaluation.mpi_inf_3dhp import export_evaluation, format_summary, score_prediction_files
from ..datasets.base import Dataset, Selection
from ..datasets.h36m import H36MDataset
from ..datasets.mpi_inf_3dhp import TEST_NPZ, MPIINF3DHPDataset

FILE_FORMAT = "h36m"   # the registration of -d names not registered: Human3.6M-format files


@dataclass(frozen=True)
class Evaluated:
    """What an after-evaluation hook gets: the run, its command line's flags (None from the
    API), the data set and its evaluated sequences, the report and the per-sequence results
    (with the per-frame poses the registration's evaluation overrides asked for), and the
    folder the tables went to."""

    config: RunConfig
    args: Any
    dataset: Dataset
    sequences: list
    report: Any
    results: list
    out_dir: Path


def flag_selection(config: RunConfig, args) -> Selection:
    """The sequences the data flags select (-str, -ste, -a, --subset, --downsample)."""
    return config.selection()


@dataclass(frozen=True)
class Registration:
    """How the runner builds and evaluates one data set.

    build(config, args) -> Dataset: args is the command line's namespace (its own flags), or None.
    selection(config, args) -> Selection: the sequences to train and test on.
    evaluation: keywords for experiment.run_evaluation (e.g. keep={"poses"} for a hook that exports them).
    after_evaluation(Evaluated): runs on the process that wrote the tables, after them.
    data_flags: the data flags (-d -k -str -a --subset --downsample) choose this data, so a
    resumed run (-r) takes them from its checkpoint before the data is read.
    """

    name: str
    build: Callable[[RunConfig, Any], Dataset]
    selection: Callable[[RunConfig, Any], Selection] = flag_selection
    evaluation: Mapping[str, Any] = field(default_factory=dict)
    after_evaluation: Callable[[Evaluated], None] | None = None
    data_flags: bool = True


_REGISTRY: dict[str, Registration] = {}


def register(name: str, build: Callable[[RunConfig, Any], Dataset], **options) -> Registration:
    """Register (or replace) the data set called name; options: the other Registration fields."""
    entry = Registration(name, build, **options)
    _REGISTRY[name] = entry
    return entry


def unregister(name: str) -> None:
    """Forget a registration (a test's, say); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def registered() -> list[str]:
    """The registered names, sorted."""
    return sorted(_REGISTRY)


def lookup(name: str) -> Registration:
    """The registration of a data set name; a name not registered is a data set in
    Human3.6M's file format (FILE_FORMAT)."""
    return _REGISTRY.get(name) or _REGISTRY[FILE_FORMAT]


def build_dataset(config: RunConfig, args=None, name: str | None = None) -> Dataset:
    """The data set of a run: `name`'s registration, by default the -d flag's."""
    return lookup(config.dataset if name is None else name).build(config, args)


# ------------------------------------------------------------------ built-in data sets

def h36m_format(config: RunConfig, args) -> H36MDataset:
    """Human3.6M, or any set in its file format (-d synthetic): data_3d_<-d>.npz, data_2d_<-d>_<-k>.npz."""
    return H36MDataset(config.data_dir, config.keypoints, config.dataset)


def mpi_inf_3dhp(config: RunConfig, args) -> MPIINF3DHPDataset:
    """MPI-INF-3DHP: training from --data-dir, tests from its data_test_3dhp_ori.npz when there,
    else from --raw-dir (the official test release), else from --data-dir itself."""
    data_dir = Path(config.data_dir)
    raw_dir = getattr(args, "raw_dir", "")
    test_source = data_dir / TEST_NPZ if (data_dir / TEST_NPZ).is_file() else Path(raw_dir or data_dir)
    return MPIINF3DHPDataset(data_dir, test_source, calibrated_camera=getattr(args, "calibrated_camera", False))


def mpi_inf_3dhp_selection(config: RunConfig, args) -> Selection:
    """MPI-INF-3DHP's test sequences by --test-sequences (TS1,TS5; * for all); training takes all."""
    return Selection(subjects_test=split_list(getattr(args, "test_sequences", "*")))


def score_mpi_inf_3dhp(done: Evaluated) -> None:
    """Write the MATLAB scorer's .mat files and score them in Python against the exact ground
    truth of --raw-dir (else the test data evaluated); print the summary."""
    files = export_evaluation(done.results, done.out_dir)
    print(f"wrote {', '.join(f.name for f in files)} to {done.out_dir}")
    raw_dir = getattr(done.args, "raw_dir", "")
    gt_source = Path(raw_dir) if raw_dir else done.dataset.test_source
    scores = score_prediction_files(files, gt_source, done.out_dir / "3dhp_scores")
    print(format_summary(scores))
    print(f"CSV tables in {done.out_dir / '3dhp_scores'}")


register(FILE_FORMAT, h36m_format)
register("mpi_inf_3dhp", mpi_inf_3dhp, selection=mpi_inf_3dhp_selection, evaluation={"keep": {"poses"}},
         after_evaluation=score_mpi_inf_3dhp, data_flags=False)
