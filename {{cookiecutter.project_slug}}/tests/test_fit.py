"""Trainer.fit's bookkeeping: the monitor, early stopping, which checkpoints it writes, and resuming.

Most tests replace ``run_epoch`` with a script of validation losses, so they count epochs exactly
without training; the last two train the tiny model for real.
"""

import math
import signal
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import torch

import trainer.checkpoint
from base.base_trainer import BaseTrainer
from tests.tiny import tiny_config
from trainer.checkpoint import Checkpointer, create_run_dir
from trainer.monitor import Monitor
from utils.checkpoint import load_checkpoint
from utils.errors import TrainingStopped, UsageError

MakeTrainer = Callable[[dict[str, Any]], BaseTrainer]
# What every checkpoint holds: the state to continue from, and what describes it. A stop part way
# through an epoch adds "mid_epoch".
STATE_KEYS = {"model", "optimizer", "lr_scheduler", "grad_scaler", "monitor", "rng"}
CHECKPOINT_KEYS = STATE_KEYS | {
    "arch",
    "epoch",
    "metrics",
    "config",
    "classes",
    "world_size",
    "data_layout",
    "input_shape",
}


@pytest.mark.parametrize(
    ("text", "mode", "metric"),
    [("min val_loss", "min", "val_loss"), ("max  val_accuracy", "max", "val_accuracy"), ("off", "off", "")],
)
def test_monitor_parse(text: str, mode: str, metric: str) -> None:
    monitor = Monitor.parse(text)
    assert (monitor.mode, monitor.metric, monitor.enabled) == (mode, metric, mode != "off")


@pytest.mark.parametrize("text", ["", "min", "lowest loss", "min loss extra", "off loss"])
def test_monitor_parse_rejects_other_text(text: str) -> None:
    with pytest.raises(UsageError, match="trainer.monitor"):
        Monitor.parse(text)


@pytest.mark.parametrize(
    ("text", "values", "improved", "best"),
    [
        ("min loss", [1.0, 1.0, 2.0, 0.5, math.nan], [True, False, False, True, False], 0.5),
        ("max loss", [1.0, 1.0, 0.5, 2.0, math.nan], [True, False, False, True, False], 2.0),
    ],
)
def test_monitor_update_keeps_the_best_and_counts_epochs_since(
    text: str, values: list[float], improved: list[bool], best: float
) -> None:
    monitor = Monitor.parse(text)
    assert [monitor.update({"loss": value, "other": 0.0}) for value in values] == improved
    assert (monitor.best, monitor.epochs_without_improvement) == (best, 1)
    assert not monitor.patience_exhausted(2) and monitor.patience_exhausted(1)
    assert not monitor.patience_exhausted(0), "0 turns early stopping off"


def test_monitor_off_never_improves() -> None:
    monitor = Monitor.parse("off")
    assert not monitor.update({"loss": 0.0}) and not monitor.patience_exhausted(1)


def test_monitor_state_is_taken_only_for_the_same_metric() -> None:
    saved = Monitor.parse("min val_loss")
    saved.update({"val_loss": 0.5})
    saved.update({"val_loss": 0.7})
    same, other = Monitor.parse("min val_loss"), Monitor.parse("max val_loss")
    assert same.load_state_dict(saved.state_dict()) and same == saved
    assert not other.load_state_dict(saved.state_dict())
    assert (other.best, other.epochs_without_improvement) == (-math.inf, 0)


def test_monitor_must_be_measured(make_trainer: MakeTrainer, config: dict[str, Any]) -> None:
    config["data_loader"]["args"]["validation_split"] = 0
    with pytest.raises(UsageError, match=r"trainer\.monitor: 'val_loss' is not measured; choose one of loss, accuracy"):
        make_trainer(config)


class Script:
    """Stands in for ``Trainer.run_epoch``: reports ``val_losses[epoch - 1]`` as the epoch's validation
    loss, trains nothing, and records which epochs ran."""

    def __init__(self, trainer: BaseTrainer, val_losses: list[float]) -> None:
        self.trainer, self.val_losses, self.epochs_run = trainer, val_losses, []

    def __call__(self, epoch: int, checkpoints: Checkpointer) -> tuple[dict[str, float], bool]:
        self.epochs_run.append(epoch)
        epoch_metrics = {"loss": 1.0, "val_loss": self.val_losses[epoch - 1], "lr": 0.02}
        return epoch_metrics, self.trainer.monitor.update(epoch_metrics)


def scripted_trainer(
    make_trainer: MakeTrainer, save_dir: Path, val_losses: list[float], **settings: Any
) -> BaseTrainer:
    trainer = make_trainer(tiny_config(save_dir, epochs=len(val_losses), **settings))
    trainer.run_epoch = Script(trainer, val_losses)  # type: ignore[method-assign]
    return trainer


def fit(trainer: BaseTrainer, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = Checkpointer(run_dir, trainer.settings.save_period, trainer.settings.keep_last)
    trainer.fit(checkpoints, [])


def epochs_run(trainer: BaseTrainer) -> list[int]:
    return trainer.run_epoch.epochs_run  # type: ignore[attr-defined]


def saved_epoch(path: Path) -> int:
    return load_checkpoint(path)["epoch"]


def periodic(run_dir: Path) -> list[str]:
    return sorted(path.name for path in run_dir.glob("epoch-*.pth"))


@pytest.mark.parametrize(
    ("val_losses", "early_stop", "expected_epochs", "best_epoch"),
    [
        ([1.0, 0.8, 0.9, 0.85, 0.7, 0.6], 2, [1, 2, 3, 4], 2),
        ([1.0, 1.1, 0.9, 1.0, 1.0, 0.5], 2, [1, 2, 3, 4, 5], 3),
        ([1.0, 1.1, 1.2, 1.3], 0, [1, 2, 3, 4], 1),
    ],
    ids=["stops-after-2-flat-epochs", "improvement-resets-counter", "zero-turns-it-off"],
)
def test_early_stop_counts_exactly(
    make_trainer: MakeTrainer,
    tmp_path: Path,
    val_losses: list[float],
    early_stop: int,
    expected_epochs: list[int],
    best_epoch: int,
) -> None:
    trainer = scripted_trainer(make_trainer, tmp_path, val_losses, early_stop=early_stop, save_period=100)
    fit(trainer, tmp_path)
    assert epochs_run(trainer) == expected_epochs
    assert saved_epoch(tmp_path / "last.pth") == expected_epochs[-1], "the final state is always saved"
    assert saved_epoch(tmp_path / "best.pth") == best_epoch, "best.pth does not wait for save_period"
    assert periodic(tmp_path) == []


def test_periodic_checkpoints_follow_save_period(make_trainer: MakeTrainer, tmp_path: Path) -> None:
    fit(scripted_trainer(make_trainer, tmp_path, [1.0, 0.9, 0.8, 0.7, 0.6], save_period=2, keep_last=0), tmp_path)
    assert periodic(tmp_path) == ["epoch-2.pth", "epoch-4.pth"]
    assert saved_epoch(tmp_path / "epoch-4.pth") == 4


def test_keep_last_prunes_old_periodic_checkpoints(make_trainer: MakeTrainer, tmp_path: Path) -> None:
    losses = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    fit(scripted_trainer(make_trainer, tmp_path, losses, save_period=1, keep_last=2), tmp_path)
    assert periodic(tmp_path) == ["epoch-10.pth", "epoch-11.pth"]  # by number, not by name
    assert saved_epoch(tmp_path / "best.pth") == 11 and saved_epoch(tmp_path / "last.pth") == 11


def test_resume_restores_the_monitors_best_and_counter(make_trainer: MakeTrainer, tmp_path: Path) -> None:
    fit(scripted_trainer(make_trainer, tmp_path, [1.0, 0.8, 0.9], early_stop=3), tmp_path)
    resumed = scripted_trainer(make_trainer, tmp_path, [1.0, 0.8, 0.9, 0.95, 0.99, 0.5], early_stop=3)
    resumed.load_state_dict(load_checkpoint(tmp_path / "last.pth"), tmp_path / "last.pth")
    assert (resumed.start_epoch, resumed.monitor.best, resumed.monitor.epochs_without_improvement) == (4, 0.8, 1)
    fit(resumed, tmp_path)
    assert epochs_run(resumed) == [4, 5], "two more flat epochs reach early_stop=3"


@pytest.mark.parametrize(("early_stop", "epochs_resumed"), [(2, []), (3, [4]), (0, [4, 5, 6])])
def test_an_early_stopped_run_resumes_only_with_more_patience(
    make_trainer: MakeTrainer, tmp_path: Path, caplog: pytest.LogCaptureFixture, early_stop: int,
    epochs_resumed: list[int],
) -> None:  # fmt: skip
    losses = [1.0, 1.1, 1.2, 1.3, 1.4, 0.5]
    fit(scripted_trainer(make_trainer, tmp_path, losses, early_stop=2), tmp_path)
    assert saved_epoch(tmp_path / "last.pth") == 3, "stopped after two epochs without improvement"
    resumed = scripted_trainer(make_trainer, tmp_path / "resumed", losses, early_stop=early_stop)
    resumed.load_state_dict(load_checkpoint(tmp_path / "last.pth"), tmp_path / "last.pth")
    caplog.clear()
    fit(resumed, tmp_path / "resumed")
    assert epochs_run(resumed) == epochs_resumed
    said = "Nothing to do: the run stopped early, val_loss has not improved for 2 epochs"
    assert (said in caplog.text) == (epochs_resumed == []), caplog.text
    assert ("--set trainer.early_stop=N (now 2; 0 turns it off)" in caplog.text) == (epochs_resumed == [])


def test_fit_removes_temp_files_of_a_killed_save(make_trainer: MakeTrainer, tmp_path: Path) -> None:
    (tmp_path / ".last.pth.abc123.tmp").write_bytes(b"half a checkpoint")
    fit(scripted_trainer(make_trainer, tmp_path, [1.0]), tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["best.pth", "epoch-1.pth", "last.pth"]


class FrozenDatetime(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> "FrozenDatetime":
        return cls(2024, 1, 2, 3, 4, 5)


def test_create_run_dir_twice_in_one_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trainer.checkpoint, "datetime", FrozenDatetime)
    first = create_run_dir(tmp_path, "exp")
    second = create_run_dir(tmp_path, "exp")
    assert first.is_dir() and second.is_dir()
    assert first.parent == second.parent == tmp_path / "exp"
    assert (first.name, second.name) == ("20240102-030405", "20240102-030405-2")


def test_fit_trains_and_checkpoints_everything(
    make_trainer: MakeTrainer, config: dict[str, Any], tmp_path: Path
) -> None:
    config["trainer"].update(epochs=2, save_period=1)
    config["lr_scheduler"] = {"type": "StepLR", "args": {"step_size": 1, "gamma": 0.5}}
    trainer = make_trainer(config)
    fit(trainer, tmp_path)
    first, last = load_checkpoint(tmp_path / "epoch-1.pth"), load_checkpoint(tmp_path / "last.pth")
    assert last.keys() == CHECKPOINT_KEYS
    assert (last["arch"], last["epoch"], last["config"]) == ("TinyConvNet", 2, trainer.recorded_config)
    assert set(last["metrics"]) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert last["metrics"]["loss"] < first["metrics"]["loss"] and last["metrics"]["val_accuracy"] > 0.9, "it learns"
    assert (first["metrics"]["lr"], last["metrics"]["lr"]) == (0.02, 0.01)  # the scheduler steps per epoch
    assert last["monitor"]["best"] == last["metrics"]["val_loss"]
    assert all(not value.is_floating_point() or value.isfinite().all() for value in last["model"].values())


def test_resuming_part_way_through_an_epoch_ends_where_an_uninterrupted_run_does(
    make_trainer: MakeTrainer, config: dict[str, Any], tmp_path: Path
) -> None:
    config["trainer"]["epochs"] = 2
    config["arch"]["args"]["dropout"] = 0.2  # draws from the global RNG, which the checkpoint must restore
    fit(make_trainer(config), tmp_path / "uninterrupted")
    stopped = make_trainer(config)
    stopped.stop.signal_number = signal.SIGTERM  # as if SIGTERM arrived during the first step
    with pytest.raises(TrainingStopped) as stop:
        fit(stopped, tmp_path / "resumed")
    assert stop.value.exit_code == 128 + signal.SIGTERM
    saved = load_checkpoint(tmp_path / "resumed" / "last.pth")
    assert saved.keys() == CHECKPOINT_KEYS | {"mid_epoch"}
    assert (saved["epoch"], saved["mid_epoch"]["epoch"], saved["mid_epoch"]["step"]) == (0, 1, 1)

    resumed = make_trainer(config)
    resumed.load_state_dict(saved, tmp_path / "resumed" / "last.pth")
    fit(resumed, tmp_path / "resumed")
    for name in ("epoch-1.pth", "last.pth"):  # epoch 1's metrics include the step before the stop
        expected, got = (load_checkpoint(tmp_path / run / name) for run in ("uninterrupted", "resumed"))
        assert "mid_epoch" not in got
        assert got["metrics"] == pytest.approx(expected["metrics"], rel=1e-12), name
        for key, value in expected["model"].items():
            assert torch.equal(got["model"][key], value), f"{name}: {key}"
