"""Where a run's epochs are logged: ``trainer.loggers`` names the trackers (``BACKENDS``), each told every
finished epoch (before its checkpoint) and, at the end, whether the run finished. metrics.csv is always kept;
a backend's module is imported only when asked for, and mlflow and wandb exist only if the project was baked so."""

import importlib.util
import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from utils.errors import UsageError


class Backend(NamedTuple):
    """How ``trainer.loggers`` opens one tracker: ``module.class_name.for_run(run_dir, config, start_epoch)``."""

    module: str
    class_name: str
    packages: tuple[str, ...]  # what that module needs, and how to install them
    install: str
    remote: bool  # talks to a server and may not start: opened before the local ones, which change the run folder


# Every name trainer.loggers accepts. To add a tracker: a class in logger/ with add_epoch, close and for_run, and
# a row here.
BACKENDS = {
    "csv": Backend("logger.metrics_csv", "MetricsCsv", (), "", remote=False),
    "tensorboard": Backend(
        "logger.visualization", "TensorboardWriter", ("tensorboard",), "pip install tensorboard", remote=False
    ),
    # mlflow-skinny leaves out what its SQLite store (the default tracking URI) needs
    "mlflow": Backend(
        "logger.mlflow_tracker", "MlflowTracker", ("mlflow", "sqlalchemy", "alembic"), "pip install -e .", remote=True
    ),
    "wandb": Backend("logger.wandb_tracker", "WandbTracker", ("wandb",), "pip install -e .", remote=True),
}


class Tracker(Protocol):
    def add_epoch(self, epoch: int, epoch_metrics: dict[str, float], seconds: float) -> None: ...

    def close(self, finished: bool) -> None: ...


def check_installed(names: list[str]) -> None:
    """One line for the first backend in ``names`` that this project lacks, or whose package is missing:
    how to get it, or how to run without it (a resumed run may drop a tracker: --set trainer.loggers)."""
    for name in names:
        tracker_module, _, packages, install, _ = BACKENDS[name]
        without = _without(names, name)
        if importlib.util.find_spec(tracker_module) is None:
            file = tracker_module.replace(".", "/") + ".py"
            raise UsageError(
                f"trainer.loggers: {name!r} was not generated in this project (no {file}); "
                f"add it with: cruft update --variables-to-update '{json.dumps({name: True})}', {without}"
            )
        for package in packages:
            if importlib.util.find_spec(package) is None:
                raise UsageError(f"trainer.loggers: {name!r} needs the {package} package; {install}, {without}")


def open_trackers(config: dict[str, Any], run_dir: Path, start_epoch: int) -> list[Tracker]:
    """The trackers ``config["trainer"]`` asks for, writing to ``run_dir`` (under torchrun, train.py opens them
    on rank 0 only). ``start_epoch``: the epoch this (resumed) run starts at. One that fails to start (W&B
    without a login, an unreachable MLflow server) is one line, after closing those opened."""
    names = config["trainer"]["loggers"]
    trackers: list[Tracker] = []
    # Remote ones first (they may not start: Backend.remote); metrics.csv last, as a resume's drops rows on opening.
    opening = sorted(dict.fromkeys([*names, "csv"]), key=lambda name: (not BACKENDS[name].remote, name == "csv"))
    for name in opening:
        backend = BACKENDS[name]
        try:
            tracker_class = getattr(importlib.import_module(backend.module), backend.class_name)
            trackers.append(tracker_class.for_run(run_dir, config, start_epoch))
        except BaseException as err:  # a Ctrl-C while a server answers slowly too: close what is open
            close_all(trackers, finished=False)
            if not isinstance(err, Exception):
                raise
            reason = " ".join(str(err).split()) or type(err).__name__
            raise UsageError(f"trainer.loggers: {name!r} could not start ({reason}); {_without(names, name)}") from None
    return trackers


@contextmanager
def closed_on_error(trackers: list[Tracker]) -> Iterator[None]:
    """Close ``trackers`` as unfinished if the block fails (the run then never trains)."""
    try:
        yield
    except BaseException:
        close_all(trackers, finished=False)
        raise


def close_all(trackers: list[Tracker], finished: bool) -> None:
    """Close every tracker, even when one fails to (its error is raised after the others are closed)."""
    with ExitStack() as closing:
        for tracker in trackers:
            closing.callback(tracker.close, finished)


def forget_run(run_dir: Path) -> None:
    """``run_dir`` is being removed (a new run that never saved a checkpoint): delete what a tracker keeps of
    it elsewhere (an MLflow run); the rest lives inside the folder."""
    if (run_dir / "mlflow.json").is_file():
        from logger.mlflow_tracker import delete_recorded_run

        delete_recorded_run(run_dir)


def _without(names: list[str], name: str) -> str:
    return f"or run without it: --set trainer.loggers='{json.dumps([other for other in names if other != name])}'"
