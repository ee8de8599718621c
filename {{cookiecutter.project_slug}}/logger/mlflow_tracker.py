"""MLflow (``"mlflow"`` in ``trainer.loggers``; mlflow-skinny is a dependency with the mlflow answer).

One MLflow run per run folder, in the experiment named after the config's ``name``: the flattened
config as params, every epoch's metrics at step = epoch, and ``best.pth`` and ``config.json`` as
artifacts when the run ends (finished or stopped). The MLflow run's id is kept in ``mlflow.json`` in the
run folder, so a resumed run continues the same MLflow run.
"""

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from logger.runs import run_artifacts
from logger.visualization import flat_settings

logger = logging.getLogger(__name__)

ID_FILE = "mlflow.json"
DEFAULT_URI = "sqlite:///mlflow.db"  # MLflow's own default: a database in the folder you run from
BATCH = 100  # MLflow takes at most 100 params in one call


def tracking_uri(configured: str | None) -> str:
    """``trainer.tracking_uri``, else the MLFLOW_TRACKING_URI environment variable, else DEFAULT_URI."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


@contextmanager
def failing_fast(uri: str) -> Iterator[None]:
    """While a run starts, a server that does not answer or a database that cannot be written fails at once,
    instead of after minutes of MLflow's retries (once started, a run keeps them, for a server that blinks)."""
    database = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if database is not None and not os.access(database if database.exists() else database.parent, os.W_OK):
        raise RuntimeError(f"the tracking database {str(database)!r} cannot be written")
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    unset = [name for name in quick if name not in os.environ]  # settings of the user's own are kept
    os.environ.update({name: quick[name] for name in unset})
    try:
        yield
    finally:
        for name in unset:
            os.environ.pop(name, None)


def read_record(run_dir: Path) -> dict[str, str] | None:
    """``run_dir``'s mlflow.json: the id of the MLflow run it logs to, and the tracking URI of the store that
    run is in; None before the run folder's first MLflow run."""
    path = Path(run_dir) / ID_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def delete_recorded_run(run_dir: Path) -> None:
    """Delete the MLflow run that ``run_dir`` (a run folder train.py is removing) logged to, so that none is
    left pointing at nothing; a store that cannot be reached now is left as it is, with a warning."""
    record = read_record(run_dir)
    if record is None:
        return
    try:
        MlflowClient(tracking_uri=record["tracking_uri"]).delete_run(record["run_id"])
    except Exception as err:  # a server that went away: the run stays, KILLED
        logger.warning("MLflow run %s was not deleted (%s)", record["run_id"], " ".join(str(err).split()))


def create_store(configured_uri: str | None, experiment_name: str) -> None:
    """Create the tracking store's tables and the experiment now: processes that start at once (sweep.py
    --jobs) would each try to, and collide ("duplicate column name", "already exists")."""
    uri = tracking_uri(configured_uri)
    with failing_fast(uri):
        client = MlflowClient(tracking_uri=uri)
        if client.get_experiment_by_name(experiment_name) is None:
            client.create_experiment(experiment_name)


class MlflowTracker:
    def __init__(self, run_dir: Path, config: dict[str, Any], configured_uri: str | None, start_epoch: int) -> None:
        self.run_dir = Path(run_dir)
        record = read_record(self.run_dir)
        # A resume continues its MLflow run in the store it is in, whatever the tracking URI settings say now.
        self.uri = (record or {}).get("tracking_uri") or tracking_uri(configured_uri)
        self.status_before: str | None = None  # a continued run's status, until this process logs an epoch
        with failing_fast(self.uri):
            self.client = MlflowClient(tracking_uri=self.uri)
            self.run_id = self._continue_or_create(config["name"], record)
            self._log_params(flat_settings(config))
            self.replayed = self._logged_from(start_epoch)
        logger.info("MLflow: run %s in %s", self.run_id, self.uri)

    @classmethod
    def for_run(cls, run_dir: Path, config: dict[str, Any], start_epoch: int) -> "MlflowTracker":
        return cls(run_dir, config, config["trainer"]["tracking_uri"], start_epoch)

    def _logged_from(self, start_epoch: int) -> set[int]:
        """Epochs from ``start_epoch`` on that the MLflow run already holds: logged by a process killed
        before their checkpoint was saved (kill -9), and replayed now. MLflow cannot delete a point, so
        they are not logged twice; the replay repeats the same batches from the same state."""
        history = self.client.get_metric_history(self.run_id, "seconds")  # logged with every epoch
        return {point.step for point in history if point.step >= start_epoch}

    def _continue_or_create(self, experiment_name: str, record: dict[str, str] | None) -> str:
        """The MLflow run this run folder's ``record`` names (set running again), or a new one."""
        if record is not None:
            run_id = record["run_id"]
            self.status_before = self.client.get_run(run_id).info.status
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        experiment = self.client.get_experiment_by_name(experiment_name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(experiment_name)
        run_id = self.client.create_run(experiment_id, run_name=self.run_dir.name).info.run_id
        (self.run_dir / ID_FILE).write_text(json.dumps({"run_id": run_id, "tracking_uri": self.uri}), encoding="utf-8")
        return run_id

    def _log_params(self, settings: dict[str, float | str]) -> None:
        """Params cannot change in MLflow: a resume that changed settings logs only the new keys
        (config-resume-N.json, an artifact, records the changes)."""
        logged = self.client.get_run(self.run_id).data.params
        params = [Param(key, str(value)) for key, value in settings.items() if key not in logged]
        for first in range(0, len(params), BATCH):
            self.client.log_batch(self.run_id, params=params[first : first + BATCH])

    def add_epoch(self, epoch: int, epoch_metrics: dict[str, float], seconds: float) -> None:
        self.status_before = None
        if epoch in self.replayed:
            return
        now = int(time.time() * 1000)
        values = {**epoch_metrics, "seconds": seconds}
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, epoch) for k, v in values.items()])

    def close(self, finished: bool) -> None:
        if not finished and self.status_before is not None:  # a resume that never trained: as it was
            self.client.update_run(self.run_id, status=self.status_before)
            return
        for path in run_artifacts(self.run_dir):
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status="FINISHED" if finished else "KILLED")
