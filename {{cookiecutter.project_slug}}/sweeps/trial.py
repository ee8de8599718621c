"""One sweep trial: an ordinary training run (train.py's own ``train``) with the sampled settings as overrides.

The trial reports its monitored metric to Optuna after every saved epoch, as one of the Trainer's stop
rules: when the pruner says stop, the run ends there exactly as an early stop does (checkpoints,
metrics.csv and train.log complete), and the trial is marked pruned. A trial's value is the best value
of the metric over its epochs, the one its best.pth holds.
"""

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from sweeps.space import SweepSpec
from sweeps.study import FINISHED, REFUSED, WORKER, this_worker
from trainer.monitor import Monitor
from utils.errors import ConfigRefused, NonFiniteLossError, UsageError, usage_message

logger = logging.getLogger(__name__)

# train.py's train, given its argv and a watcher; returns the run folder.
TrainRun = Callable[[list[str], Any], Path]


class TrialRefused(ConfigRefused):
    """The one line of a trial whose values train.py refused (the study's REFUSED holds it too): it names them."""


class TrialWatcher:
    """What train.py's ``train`` calls back: the run folder once it exists, then every saved epoch's metrics."""

    def __init__(self, trial: optuna.Trial, metric: str, sampled: dict[str, Any]) -> None:
        self.trial, self.sampled = trial, sampled
        self.monitor = Monitor.parse(metric)  # keeps the best value, as trainer.monitor does
        self.pruned = False

    def run_started(self, run_dir: Path) -> None:
        self.trial.set_user_attr("run_dir", str(run_dir))
        logger.info("Sweep trial %d: %s", self.trial.number, describe(self.sampled))  # in the trial's own train.log

    def __call__(self, epoch: int, epoch_metrics: dict[str, float]) -> str | None:
        name = self.monitor.metric
        if name not in epoch_metrics:
            raise ConfigRefused(f"sweep metric {name!r} is not measured; choose one of {', '.join(epoch_metrics)}")
        value = epoch_metrics[name]
        if self.monitor.update(epoch_metrics):
            self.trial.set_user_attr("best", self.monitor.best)
        self.trial.report(value, epoch)
        if not self.trial.should_prune():
            return None
        self.pruned = True
        return f"pruned by the sweep at epoch {epoch} ({name} {value:.4g})"


def describe(sampled: dict[str, Any]) -> str:
    return ", ".join(f"{key}={json.dumps(value)}" for key, value in sampled.items())


def make_objective(
    train_run: TrainRun, base_argv: list[str], spec: SweepSpec, metric: str, space_label: str
) -> Callable[..., float]:
    """Optuna's objective: sample the space, train with it, return the best value (or raise TrialPruned). A
    trial whose config train.py refuses raises TrialRefused, naming its values and ``space_label`` (sweep.json);
    any other UsageError (a disk, a folder, a tracker) is its own line, saying how to continue the study."""

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER, this_worker())  # so that a later command can tell if this process died
        sampled = {param.key: param.suggest(trial) for param in spec.params}
        argv = [*base_argv, *(arg for key, value in sampled.items() for arg in ("--set", f"{key}={json.dumps(value)}"))]
        watcher = TrialWatcher(trial, metric, sampled)
        try:
            train_run(argv, watcher)
        except ConfigRefused as err:  # the same values would be refused again: the sweep ends, with this one line
            refusal = f"sweep trial {trial.number} ({describe(sampled)}, from {space_label}) was refused: "
            refusal += usage_message(err)
            trial.study.set_user_attr(REFUSED, refusal)  # the other workers stop after their trial (run_trials)
            raise TrialRefused(refusal) from None
        except UsageError as err:  # not the values (a disk, a folder, a tracker): once fixed, the study goes on
            failed = f"sweep trial {trial.number} is marked failed"
            raise UsageError(f"{usage_message(err)}; {failed}: fix that and run the same command to continue") from err
        if watcher.pruned:
            raise optuna.TrialPruned()
        return watcher.monitor.best

    return objective


def run_trials(study: optuna.Study, objective: Callable[..., float], count: int, total: int) -> None:
    """Run ``count`` trials in this process, fewer if the study reaches ``total`` finished trials first (other
    machines share it) or another worker's trial was refused; a trial whose loss became NaN fails and the
    sweep goes on; one that train.py refuses (TrialRefused), or that fails on another UsageError, ends it."""
    enough = optuna.study.MaxTrialsCallback(total, states=FINISHED)
    study.optimize(objective, n_trials=count, catch=(NonFiniteLossError,), callbacks=[enough, stop_if_refused])


def stop_if_refused(study: optuna.Study, trial: FrozenTrial) -> None:
    if study.user_attrs.get(REFUSED):
        study.stop()
