"""trainer.loggers: names this project does not know or was generated without are one line before any run
folder exists. (MLflow and W&B themselves: test_mlflow.py and test_wandb.py, with their answers.)"""

import json
from pathlib import Path

import pytest

import logger.runs
import logger.trackers
import trainer.settings
from logger.metrics_csv import MetricsCsv
from logger.runs import new_resume_record, read_config, run_status
from logger.visualization import TensorboardWriter
from tests.hostile import EXTRA, assert_unchanged, hide_package, only_run, run_train, snapshot, tracked_config


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_a_tracker_the_project_was_generated_without_is_one_line_saying_how_to_add_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    hide_package(monkeypatch, f"logger.{name}_tracker")  # as in a project generated with the answer no
    result = run_train(capsys, "-c", tracked_config(tmp_path, ["csv", name]), modules=EXTRA)
    assert result.code == 2
    assert result.error_line() == (
        f"error: trainer.loggers: {name!r} was not generated in this project (no logger/{name}_tracker.py); "
        f"add it with: cruft update --variables-to-update '{json.dumps({name: True})}', "
        """or run without it: --set trainer.loggers='["csv"]'"""
    )
    assert not (tmp_path / "saved").exists()


def test_tensorboard_without_its_package_is_one_line_saying_how_to_install_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hide_package(monkeypatch, "tensorboard")  # as in a project generated with the answer no
    result = run_train(capsys, "-c", tracked_config(tmp_path, ["csv", "tensorboard"]), modules=EXTRA)
    assert result.code == 2
    assert result.error_line() == (
        "error: trainer.loggers: 'tensorboard' needs the tensorboard package; pip install tensorboard, "
        """or run without it: --set trainer.loggers='["csv"]'"""
    )
    assert not (tmp_path / "saved").exists()


def test_an_unknown_tracker_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_train(capsys, "-c", tracked_config(tmp_path, ["neptune"]), modules=EXTRA)
    assert result.code == 2 and "trainer.loggers: expected a list of csv, tensorboard, mlflow, wandb" in result.err


def test_a_resumed_run_may_drop_a_tracker_the_project_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = tracked_config(tmp_path, ["csv"])
    assert run_train(capsys, "-c", config_path, "--set", "trainer.epochs=1", modules=EXTRA).code == 0
    run_dir = only_run(tmp_path / "saved")
    hide_package(monkeypatch, "logger.wandb_tracker")
    more = ["-r", run_dir, "--set", "trainer.epochs=2"]
    refused = run_train(capsys, *more, "--set", 'trainer.loggers=["csv", "wandb"]', modules=EXTRA)
    assert refused.code == 2 and """--set trainer.loggers='["csv"]'""" in refused.error_line()
    resumed = run_train(capsys, *more, "--set", 'trainer.loggers=["csv"]', modules=EXTRA)
    assert resumed.code == 0 and "continuing at epoch 2" in resumed.err, resumed.err


def test_a_tracker_that_cannot_start_is_one_line_closes_the_others_and_leaves_no_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = []

    def no_login(*args: object, **kwargs: object) -> None:  # as W&B without a login, or an unreachable server
        raise RuntimeError("No API key configured.\nUse `wandb login` to log in.")

    monkeypatch.setattr(MetricsCsv, "for_run", no_login)  # opened last: TensorBoard is open by then
    monkeypatch.setattr(TensorboardWriter, "close", lambda self, finished: closed.append(finished))
    result = run_train(capsys, "-c", tracked_config(tmp_path, ["csv", "tensorboard"]), modules=EXTRA)
    assert result.code == 2
    assert result.error_line() == (
        "error: trainer.loggers: 'csv' could not start (No API key configured. Use `wandb login` to log in.); "
        """or run without it: --set trainer.loggers='["tensorboard"]'"""
    )
    assert closed == [False], "TensorBoard, opened first, is closed as unfinished"
    assert list((tmp_path / "saved").glob("*/*")) == [], "the run folder made for it is gone"


def test_a_resume_refused_by_a_tracker_that_cannot_start_leaves_the_run_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It used to record config-resume-1.json and the error in train.log first: plot.py --summary then
    called the finished run failed, at 1 of 2 epochs."""
    config_path = tracked_config(tmp_path, ["csv", "tensorboard"])
    assert run_train(capsys, "-c", config_path, "--set", "trainer.epochs=1", modules=EXTRA).code == 0
    run_dir = only_run(tmp_path / "saved")
    before = snapshot(run_dir)

    def unreachable(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the server cannot be reached")

    monkeypatch.setattr(TensorboardWriter, "for_run", unreachable)
    refused = run_train(capsys, "-r", run_dir, "--set", "trainer.epochs=2", modules=EXTRA)
    assert refused.code == 2 and "'tensorboard' could not start (the server cannot be reached)" in refused.error_line()
    assert_unchanged(before, snapshot(run_dir))
    assert run_status(run_dir, read_config(run_dir)) == "finished"


def test_a_tracker_keeps_the_run_files_and_every_resume_record_in_order_but_no_copies(tmp_path: Path) -> None:
    names = ["best.pth", "config.json", "config-resume-10.json", "config-resume-3.json", "config-resume-3 (copy).json"]
    for name in names:
        (tmp_path / name).write_text("{}", encoding="utf-8")
    second = new_resume_record(tmp_path, 3)  # a second resume at epoch 3 never overwrites the first's record
    assert second.name == "config-resume-3-2.json" and not second.exists()
    second.write_text("{}", encoding="utf-8")
    kept = [path.name for path in logger.runs.run_artifacts(tmp_path)]
    records = ["config-resume-3.json", "config-resume-3-2.json", "config-resume-10.json"]
    assert kept == ["best.pth", "config.json", *records]


class RecordingTracker:
    """A tracker of the user's own, for the test below: what it was given, by class."""

    opened: list[int] = []
    epochs: list[int] = []
    closed: list[bool] = []

    @classmethod
    def for_run(cls, run_dir: Path, config: dict, start_epoch: int) -> "RecordingTracker":
        cls.opened.append(start_epoch)
        return cls()

    def add_epoch(self, epoch: int, epoch_metrics: dict[str, float], seconds: float) -> None:
        self.epochs.append(epoch)

    def close(self, finished: bool) -> None:
        self.closed.append(finished)


def test_a_tracker_of_your_own_is_one_row_in_backends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the README says it takes: a class with add_epoch, close and for_run, and a row in BACKENDS."""
    row = logger.trackers.Backend("tests.test_trackers", "RecordingTracker", (), "", remote=False)
    monkeypatch.setitem(logger.trackers.BACKENDS, "recording", row)
    monkeypatch.setattr(trainer.settings, "LOGGERS", tuple(logger.trackers.BACKENDS))
    for name in ("opened", "epochs", "closed"):
        monkeypatch.setattr(RecordingTracker, name, [])
    assert run_train(capsys, "-c", tracked_config(tmp_path, ["recording"]), modules=EXTRA).code == 0
    assert (RecordingTracker.opened, RecordingTracker.epochs, RecordingTracker.closed) == ([1], [1, 2, 3], [True])
    assert read_config(only_run(tmp_path / "saved"))["trainer"]["loggers"] == ["recording"]
