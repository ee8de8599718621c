"""trainer.loggers: MLflow and W&B get the params, one point per epoch and the files, and a resume continues the
same tracker run; a backend that is not installed is one line before any run folder exists. All offline."""

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hostile import EXTRA, hide_package, interrupt_on_forward, only_run, run_train, small_config, write_config

STOPPED = 130  # 128 + SIGINT


def tracked_config(folder: Path, loggers: list[str], **trainer_settings: Any) -> Path:
    """The small config (2 steps per epoch, 3 epochs) on the self-interrupting model, logging to ``loggers``."""
    config = small_config(folder / "saved", epochs=3, loggers=loggers, **trainer_settings)
    config["arch"]["type"] = "InterruptingNet"
    return write_config(folder / "config.json", config)


def stopped_then_resumed(capsys: pytest.CaptureFixture[str], config_path: Path, save_dir: Path) -> Path:
    """Train, stopped by Ctrl-C at epoch 2's first step, then resume to the end; the run folder."""
    with interrupt_on_forward(3):
        assert run_train(capsys, "-c", config_path, modules=EXTRA).code == STOPPED
    run_dir = only_run(save_dir)
    assert run_train(capsys, "-r", run_dir, modules=EXTRA).code == 0
    return run_dir


def test_mlflow_run_has_params_one_point_per_epoch_and_files_after_a_stop_and_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)  # the SQLite store keeps its artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
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
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What kill -9 between logging epoch 3 and saving its checkpoint leaves: MLflow holds epoch 3, last.pth
    # holds epoch 2. The resume trains epoch 3 again; MLflow must not get a second point for it.
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
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


def wandb_records(path: Path) -> Iterator[Any]:
    """The protobuf records of a W&B ``.wandb`` file (a LevelDB-style log: 32 KiB blocks of chunks with
    a 7-byte header: checksum, length, type; types 1 and 4 end a record), after the file's 7-byte header."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, position, pending, block = path.read_bytes(), 7, b"", 32768
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def wandb_history(run_dir: Path) -> list[dict[str, Any]]:
    """Every logged row of every W&B run folder under ``run_dir/wandb``, by step."""
    rows = []
    for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        for record in wandb_records(path):
            if record.WhichOneof("record_type") == "history":
                items = record.history.item
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items})
    return sorted(rows, key=lambda row: row["_step"])


def test_wandb_offline_writes_the_metrics_in_the_run_folder_and_a_resume_keeps_the_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = stopped_then_resumed(capsys, tracked_config(tmp_path, ["wandb"]), tmp_path / "saved")
    run_id = json.loads((run_dir / "wandb.json").read_text())["run_id"]
    folders = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and all(folder.name.split("-")[-1] in (run_id, "1") for folder in folders)
    assert all((folder / f"run-{run_id}.wandb").is_file() for folder in folders), "one W&B run id throughout"
    deadline = time.monotonic() + 20  # W&B's own process may still be writing the last records
    while len(history := wandb_history(run_dir)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert all(row["lr"] == 0.02 and row["val_loss"] > 0 for row in history)


def test_a_tracker_that_is_not_installed_is_one_line_before_any_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hide_package(monkeypatch, "mlflow")
    result = run_train(capsys, "-c", tracked_config(tmp_path, ["csv", "mlflow"]), modules=EXTRA)
    assert result.code == 2
    expected = "error: trainer.loggers: 'mlflow' needs the mlflow package; " + 'pip install -e ".[mlflow]"'
    assert result.error_line() == expected
    assert not (tmp_path / "saved").exists()


def test_an_unknown_tracker_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_train(capsys, "-c", tracked_config(tmp_path, ["neptune"]), modules=EXTRA)
    assert result.code == 2 and "trainer.loggers: expected a list of csv, tensorboard, mlflow, wandb" in result.err
