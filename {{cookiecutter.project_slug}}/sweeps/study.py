"""The Optuna study a sweep shares among its workers, and what it reports: the table of trials and best-config.json.

The study lives in a storage that every worker opens: by default a journal file in the experiment folder
(``saved/<name>/sweep.journal``: processes on one machine, or on machines that share that folder), or any
database URL Optuna takes (``sqlite:///sweep.db``, ``postgresql://...``, ``mysql://...``: many machines).
"""

import json
import logging
import os
import shutil
import socket
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from logger.run_summary import format_table
from parse_config import ObjectSpec
from sweeps.space import SweepSpec
from trainer.checkpoint import process_gone
from trainer.monitor import Monitor
from utils.errors import NonFiniteLossError, TrainingStopped, UsageError
from utils.registry import build

logger = logging.getLogger(__name__)

JOURNAL = "sweep.journal"
BEST_CONFIG = "best-config.json"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what counts towards --trials
WORKER = "worker"  # a trial's user attribute: {"host": ..., "pid": ...} of the process that runs it
REFUSED = "refused"  # the study's user attribute: the one line of a trial whose values train.py refused
# A database's heartbeat: a trial whose worker stopped beating for GRACE seconds (on any machine) is failed.
HEARTBEAT, GRACE = 60, 300


class WithoutOurTracebacks(logging.Filter):
    """Optuna logs a failed trial's exception with its traceback; ours (a stop signal, a NaN loss) already say
    everything in their one line. A trial that fails on a UsageError (its values refused, or a disk, folder or
    tracker) ends the sweep with its own error line, which names the trial: Optuna's two lines about it ("Trial N
    failed with parameters...", "... with value None") would only repeat it."""

    def __init__(self) -> None:
        super().__init__()
        self.usage_failures: list[str] = []  # "Trial N" of each trial that failed on a UsageError

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, UsageError):
            self.usage_failures.append(record.getMessage().partition(" failed")[0])
            return False
        if any(record.getMessage() == f"{trial} failed with value None." for trial in self.usage_failures):
            return False
        if isinstance(error, TrainingStopped | NonFiniteLossError):
            record.exc_info = None
        return True


def route_optuna_logs() -> None:
    """Optuna's messages through the root logger, like ours: to the console and the current trial's train.log."""
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    reporter = logging.getLogger("optuna.study._optimize")  # where Optuna reports failed trials
    if not any(isinstance(existing, WithoutOurTracebacks) for existing in reporter.filters):
        reporter.addFilter(WithoutOurTracebacks())


def storage_for(url: str | None, experiment_dir: Path, create: bool) -> Any:
    """The journal file in ``experiment_dir`` without a URL (made if ``create``); otherwise the database at ``url``."""
    if url is None and not create and not (experiment_dir / JOURNAL).is_file():
        raise UsageError(
            f"no sweep has run here yet ({experiment_dir / JOURNAL} does not exist); run sweep.py --trials N"
        )
    if url is None:
        experiment_dir.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(experiment_dir / JOURNAL))
        return optuna.storages.JournalStorage(backend)
    if "://" not in url:
        raise UsageError(f"--storage {url!r}: expected a database URL such as sqlite:///sweep.db or postgresql://...")
    missing = missing_sqlite_file(url)
    if missing is not None and not create:  # opening it would create the file, only to say it holds nothing
        raise UsageError(f"--storage {url!r}: {missing} does not exist, so it holds no study to show; "
                         "run sweep.py --trials N with this --storage first")  # fmt: skip
    try:
        with warnings.catch_warnings():  # the heartbeat is marked experimental; it is the way to catch dead workers
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT, grace_period=GRACE)
    except Exception as err:  # a driver that is not installed, a server that cannot be reached...
        raise UsageError(f"--storage {url!r}: cannot open it ({' '.join(str(err).split())[:300]})") from None


def missing_sqlite_file(url: str) -> str | None:
    """The file an ``sqlite:///FILE`` URL names, if it does not exist; None for any other URL."""
    from sqlalchemy.engine import make_url  # Optuna's RDBStorage is built on SQLAlchemy
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:  # RDBStorage says what is wrong with it
        return None
    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file:")  # file: URIs hold their own options
    if parsed.get_backend_name() != "sqlite" or in_memory or Path(database).is_file():
        return None
    return database


def engine_parts(spec: SweepSpec, label: str) -> tuple[Any, Any]:
    """(pruner, sampler) that sweep.json names, built now so a wrong name or argument is one line."""
    pruner_spec = ObjectSpec(spec.pruner["type"], spec.pruner.get("args", {}))
    pruner = build(pruner_spec, f"{label}: pruner", optuna.pruners, optuna.pruners.BasePruner)
    sampler = None
    if spec.sampler is not None:
        sampler_spec = ObjectSpec(spec.sampler["type"], spec.sampler.get("args", {}))
        sampler = build(sampler_spec, f"{label}: sampler", optuna.samplers, optuna.samplers.BaseSampler)
    return pruner, sampler


def open_study(storage: Any, name: str, metric: Monitor, pruner: Any, sampler: Any, create: bool,
               named: bool = True) -> optuna.Study:  # fmt: skip
    """The study ``name`` in ``storage``, created on first use if ``create``; a later command continues it.
    ``named``: the name came from --study (otherwise from the config's name, which a refusal says)."""
    if not create and name not in optuna.get_all_study_names(storage):
        known = ", ".join(optuna.get_all_study_names(storage)) or "none yet"
        which = f"--study {name!r}" if named else f"study {name!r} (the config's name; --study NAME picks another)"
        raise UsageError(f"{which}: no such study to show (studies: {known}); run sweep.py --trials N first")
    direction = "minimize" if metric.mode == "min" else "maximize"
    study = optuna.create_study(
        storage=storage, study_name=name, direction=direction, pruner=pruner, sampler=sampler, load_if_exists=True
    )
    if study.direction.name.lower() != direction:
        raise UsageError(f"study {name!r} was created to {study.direction.name.lower()}; use another --study name")
    return study


def this_worker() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def fail_abandoned_trials(study: optuna.Study) -> None:
    """Mark failed the trials left running by a process of this machine that has ended (a kill -9, an
    out-of-memory kill), so that the study stops counting them as in progress. A database's heartbeat
    does the same for every machine; a journal file shared by several machines relies on this alone."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER)  # none on trials of a template version that did not record it
        if worker is not None and process_gone(worker["pid"], worker["host"]):
            study.tell(trial.number, state=TrialState.FAIL)
            run_dir = trial.user_attrs.get("run_dir")
            resume = f"; its run folder resumes with: python train.py -r {run_dir}" if run_dir else ""
            logger.warning("Trial %d was left running by process %s, which has ended: marked failed%s",
                           trial.number, worker["pid"], resume)  # fmt: skip


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def summary_table(study: optuna.Study, keys: list[str]) -> str:
    """One line per trial: number, state, the searched values, the best monitored value, the run folder."""
    header = ["trial", "state", *keys, "value", "run folder"]
    trials = study.get_trials(deepcopy=False)
    return format_table([dict(zip(header, _row(trial, keys), strict=True)) for trial in trials], header)


def _row(trial: FrozenTrial, keys: list[str]) -> list[str]:
    values = [_short(trial.params[key]) if key in trial.params else "-" for key in keys]
    best = trial.user_attrs.get("best")
    value = trial.value if trial.value is not None else best
    shown = "-" if value is None else f"{value:.4g}"
    return [str(trial.number), trial.state.name.lower(), *values, shown, trial.user_attrs.get("run_dir", "-")]


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)


def write_best_config(study: optuna.Study, experiment_dir: Path, default_name: str) -> Path | None:
    """Copy the best finished trial's config.json (its overrides applied) to ``experiment_dir/best-config.json``,
    or, for a study other than the default one (named ``default_name``), to best-config-<study>.json."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        return None
    best = study.best_trial
    source = Path(best.user_attrs.get("run_dir", "")) / "config.json"
    if not source.is_file():
        logger.warning("The best trial's run folder (%s) is gone; %s not written", source.parent, BEST_CONFIG)
        return None
    experiment_dir.mkdir(parents=True, exist_ok=True)
    own = "" if study.study_name == default_name else f"-{study.study_name}"
    target = experiment_dir / BEST_CONFIG.replace(".json", f"{own}.json")
    shutil.copyfile(source, target)
    return target
