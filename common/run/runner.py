"""The one flow of the entry scripts (main.py, main_3dhp.py, main_in_the_wild.py): with a run's
configuration, settle -r, build the data set its registration names (common.run.registry),
read the test sequences, then evaluate --evaluate's checkpoint (and run the data set's
after-evaluation hook) or train. The scripts keep only their own flags and extras."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import RunConfig
from ..datasets.base import Dataset, Selection, Sequence
from .registry import Evaluated, Registration, lookup
from .distributed import init_from_env
from .experiment import load_for_evaluation, load_resume, run_evaluation, run_training
from ..evaluation.report import Report
from .train import Trainer


@dataclass
class Outcome:
    """What run_experiment did: the configuration it ran (with -r's data flags), the device it
    was given, the data set and its test sequences; after training the training sequences and
    the trainer; after evaluation the report and per-sequence results (None on the processes
    that do not write, under torchrun)."""

    config: RunConfig
    device: torch.device
    dataset: Dataset
    test: list[Sequence]
    train: list[Sequence] | None = None
    trainer: Trainer | None = None
    report: Report | None = None
    results: list | None = None

    @property
    def out_dir(self) -> Path:
        """The -c folder: checkpoints and result tables."""
        return Path(self.config.checkpoint)


def run_experiment(config: RunConfig, device, dataset: str | None = None, args: Any = None) -> Outcome:
    """Train, resume or evaluate on a registered data set: `dataset` names it (None: the -d
    flag's, after -r took the run's data flags); args: the command line's namespace, for the
    data set's own flags."""
    config, resumed = settle_resume(config, dataset)
    entry = lookup(config.dataset if dataset is None else dataset)
    data = entry.build(config, args)
    selection = entry.selection(config, args)
    outcome = Outcome(config, device, data, data.test_sequences(selection))
    if config.evaluate:
        return evaluate(outcome, entry, args)
    return train(outcome, selection, resumed)


def settle_resume(config: RunConfig, dataset: str | None = None) -> tuple[RunConfig, dict | None]:
    """-r (when training) on a data set its data flags choose: the run's data flags and the
    loaded checkpoint, before the data is read (experiment.load_resume). Otherwise the
    configuration as it is; run_training loads the checkpoint itself."""
    if not config.resume or config.evaluate or not lookup(config.dataset if dataset is None else dataset).data_flags:
        return config, None
    return load_resume(config)


def evaluate(outcome: Outcome, entry: Registration, args: Any = None) -> Outcome:
    """--evaluate: load the checkpoint onto this process's device (under torchrun its rank's),
    write the result tables, then the registration's after-evaluation hook where they were
    written."""
    _, device = init_from_env(outcome.device)
    model, checkpoint, config = load_for_evaluation(outcome.config, device)
    outcome.config = config                                 # with the resolved path and the file's architecture
    outcome.report, outcome.results = run_evaluation(
        config, model, outcome.test, outcome.dataset.layout, device, outcome.out_dir,
        name=f"eval_{Path(config.evaluate).stem}", checkpoint=checkpoint, dataset=outcome.dataset,
        **entry.evaluation)
    if outcome.results is not None and entry.after_evaluation is not None:
        entry.after_evaluation(Evaluated(config, args, outcome.dataset, outcome.test, outcome.report,
                                         outcome.results, outcome.out_dir))
    return outcome


def train(outcome: Outcome, selection: Selection, resumed: dict | None = None) -> Outcome:
    """Train (or continue -r) on the selected training sequences, validating on the test ones."""
    outcome.train = outcome.dataset.train_sequences(selection)
    outcome.trainer = run_training(outcome.config, outcome.train, outcome.test, outcome.dataset.layout,
                                   outcome.device, resumed=resumed, dataset=outcome.dataset)
    return outcome
