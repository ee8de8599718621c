"""trainer.loggers with "mlflow" (the mlflow answer): the MLflow run gets the params, one point per epoch and
the files, a resume continues it, and a missing package is one line before any run folder exists. Offline."""

import json
import os
from pathlib import Path

import pytest

import train
from logger.visualization import TensorboardWriter
from tests.hostile import (
    EXTRA,
    hide_package,
    only_run,
    run_main,
    run_train,
    small_config,
    stopped_then_resumed,
    tracked_config,
    write_config,
)
from tests.tiny import TINY
from utils.errors import UsageError


@pytest.fixture
def uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An SQLite tracking store in ``tmp_path``, set as MLFLOW_TRACKING_URI (what trainer.tracking_uri null takes)."""
    monkeypatch.chdir(tmp_path)  # the SQLite store keeps its artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def test_mlflow_run_has_params_one_point_per_epoch_and_files_after_a_stop_and_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], uri: str
) -> None:
    mlflow = pytest.importorskip("mlflow")
    run_dir = stopped_then_resumed(capsys, tracked_config(tmp_path, ["mlflow"]), tmp_path / "saved")
    run_id = json.loads((run_dir / "mlflow.json").read_text())["run_id"]
    client = mlflow.MlflowClient(tracking_uri=uri)
    [only] = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert only.info.run_id == run_id, "the resume continued the same MLflow run"
    assert only.info.status == "FINISHED" and only.info.run_name == run_dir.name
    assert only.data.params["optimizer.args.lr"] == "0.02" and only.data.params["trainer.loggers"] == '["mlflow"]'
    history = client.get_metric_history(run_id, "val_loss")
    assert [point.step for point in history] == [1, 2, 3], "one point per epoch, none repeated"
    assert {"best.pth", "config.json"} <= {item.path for item in client.list_artifacts(run_id)}


def test_mlflow_keeps_one_point_for_an_epoch_replayed_after_a_kill(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], uri: str
) -> None:
    # What kill -9 between logging epoch 3 and saving its checkpoint leaves: MLflow holds epoch 3, last.pth
    # holds epoch 2. The resume trains epoch 3 again; MLflow must not get a second point for it.
    mlflow = pytest.importorskip("mlflow")
    config_path = tracked_config(tmp_path, ["mlflow"])
    assert run_train(capsys, "-c", config_path, "--set", "trainer.epochs=2", modules=EXTRA).code == 0
    run_dir = only_run(tmp_path / "saved")
    run_id = json.loads((run_dir / "mlflow.json").read_text())["run_id"]
    client = mlflow.MlflowClient(tracking_uri=uri)
    for name in ("seconds", "val_loss"):
        client.log_metric(run_id, name, 0.5, step=3)  # epoch 3, logged by the killed process
    assert run_train(capsys, "-r", run_dir, "--set", "trainer.epochs=3", modules=EXTRA).code == 0
    for name in ("seconds", "val_loss"):
        assert [point.step for point in client.get_metric_history(run_id, name)] == [1, 2, 3], name


@pytest.mark.parametrize("package", ["mlflow", "sqlalchemy", "alembic"])  # the last two: its SQLite store
def test_without_a_package_it_needs_it_is_one_line_before_any_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, package: str
) -> None:
    hide_package(monkeypatch, package)
    result = run_train(capsys, "-c", tracked_config(tmp_path, ["csv", "mlflow"]), modules=EXTRA)
    assert result.code == 2
    assert result.error_line() == (
        f"error: trainer.loggers: 'mlflow' needs the {package} package; pip install -e ., "
        """or run without it: --set trainer.loggers='["csv"]'"""
    )
    assert not (tmp_path / "saved").exists()


def test_parallel_sweep_workers_share_a_new_tracking_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], uri: str
) -> None:
    """Two workers starting at once used to create the database's tables both, and one failed."""
    mlflow = pytest.importorskip("mlflow")
    sweep = pytest.importorskip("sweep", reason="sweep.py comes with the sweeps answer")
    config_path = write_config(tmp_path / "config.json", small_config(tmp_path / "saved", loggers=["csv", "mlflow"]))
    write_config(
        tmp_path / "sweep.json", {"space": {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.05}}}
    )
    result = run_main(capsys, sweep.main, "-c", config_path, "--trials", 2, "--jobs", 2, modules=TINY)
    assert result.code == 0, result.err
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert sorted(run.info.status for run in runs) == ["FINISHED", "FINISHED"]


def test_a_resume_continues_the_mlflow_run_where_it_is_whatever_the_uri_says_now(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resume from a shell without MLFLOW_TRACKING_URI looked for the run in ./mlflow.db: 'not found'."""
    mlflow = pytest.importorskip("mlflow")
    config_path = tracked_config(tmp_path, ["mlflow"])
    assert run_train(capsys, "-c", config_path, "--set", "trainer.epochs=1", modules=EXTRA).code == 0
    run_dir = only_run(tmp_path / "saved")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    resumed = run_train(capsys, "-r", run_dir, "--set", "trainer.epochs=2", modules=EXTRA)
    assert resumed.code == 0, resumed.err
    run_id = json.loads((run_dir / "mlflow.json").read_text())["run_id"]
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert [point.step for point in client.get_metric_history(run_id, "val_loss")] == [1, 2]
    assert not (tmp_path / "elsewhere.db").exists()


@pytest.mark.parametrize(
    ("tracking_uri", "reason"),
    [
        ("http://127.0.0.1:9", "Connection refused"),  # nothing listens on the discard port
        ("sqlite:///{tmp}/readonly/mlflow.db", "the tracking database '{tmp}/readonly/mlflow.db' cannot be written"),
    ],
)
def test_a_store_that_cannot_be_reached_is_one_line_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tracking_uri: str, reason: str
) -> None:
    """MLflow retried for minutes first, printing a line per try (255 s for the server, 117 s for the file)."""
    pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "readonly").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: "readonly" not in str(path) and real_access(path, mode))
    uri = tracking_uri.format(tmp=tmp_path)
    config_path = tracked_config(tmp_path, ["mlflow"])
    result = run_train(capsys, "-c", config_path, "--set", f"trainer.tracking_uri={json.dumps(uri)}", modules=EXTRA)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: trainer.loggers: 'mlflow' could not start ("), lines
    assert reason.format(tmp=tmp_path) in lines[0]


def test_a_new_run_that_fails_to_start_leaves_no_mlflow_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its run folder is removed; its MLflow run stayed, KILLED, pointing at nothing (as when W&B, opened
    after MLflow, could not log in)."""
    mlflow = pytest.importorskip("mlflow")

    def full_disk(*args: object) -> None:
        raise UsageError("cannot write 'train.log': No space left on device; free some space")

    monkeypatch.setattr(train, "record_start", full_disk)
    assert run_train(capsys, "-c", tracked_config(tmp_path, ["mlflow"]), modules=EXTRA).code == 2
    assert list((tmp_path / "saved").glob("*/*")) == [], "no run folder"
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert client.search_runs([client.get_experiment_by_name("tiny").experiment_id]) == [], "no active MLflow run"


def test_a_resume_refused_by_a_later_tracker_leaves_the_mlflow_run_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow opens first (it may not start); it had set the finished run RUNNING, then closed it KILLED."""
    mlflow = pytest.importorskip("mlflow")
    config_path = tracked_config(tmp_path, ["mlflow", "tensorboard"])
    assert run_train(capsys, "-c", config_path, "--set", "trainer.epochs=1", modules=EXTRA).code == 0
    run_dir = only_run(tmp_path / "saved")

    def unreachable(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the server cannot be reached")

    monkeypatch.setattr(TensorboardWriter, "for_run", unreachable)
    assert run_train(capsys, "-r", run_dir, "--set", "trainer.epochs=2", modules=EXTRA).code == 2
    run_id = json.loads((run_dir / "mlflow.json").read_text())["run_id"]
    assert mlflow.MlflowClient(tracking_uri=uri).get_run(run_id).info.status == "FINISHED"
