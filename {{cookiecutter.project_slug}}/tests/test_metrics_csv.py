"""metrics.csv: one row per finished epoch, whatever stops the run and however often it is resumed."""

import csv
import signal
from pathlib import Path
from typing import Any

import pytest

import train
from logger.metrics_csv import MetricsCsv, read_rows
from tests.hostile import EXTRA, Killed, atomic_renames, interrupt_on_forward, only_run, small_config, write_config

EPOCHS, STEPS_PER_EPOCH = 3, 2  # small_config: 64 training samples in batches of 32


def config_file(folder: Path, **trainer_settings: Any) -> Path:
    config = small_config(folder / "saved", epochs=EPOCHS, **trainer_settings)
    config["arch"]["type"] = "InterruptingNet"
    config["loss"] = "cross_entropy"
    return write_config(folder / "config.json", config)


def header(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return next(csv.reader(handle))


def epochs_and_metrics(path: Path) -> list[tuple[int, dict[str, float]]]:
    """Every row of a metrics.csv in file order, without the seconds (which differ from run to run)."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        records = list(csv.DictReader(handle))
    return [(int(r.pop("epoch")), {k: float(v) for k, v in r.items() if k != "seconds"}) for r in records]


def assert_same_metrics(got: list[tuple[int, dict[str, float]]], wanted: list[tuple[int, dict[str, float]]]) -> None:
    """Epoch by epoch, since pytest.approx compares flat data only (pytest 9.2 refuses a list of dicts)."""
    for (epoch, metrics), (_, expected) in zip(got, wanted, strict=True):
        assert metrics == pytest.approx(expected, rel=1e-9), f"epoch {epoch} as in the uninterrupted run"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, logging_restored_after_module: None) -> Path:
    """metrics.csv of a run that nothing stopped."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    assert train.main(["-c", str(config_file(folder))], modules=EXTRA) == 0
    return only_run(folder / "saved") / "metrics.csv"


def test_a_run_writes_one_row_per_epoch_with_a_fixed_header(uninterrupted: Path) -> None:
    assert header(uninterrupted) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
    rows = read_rows(uninterrupted)
    assert sorted(rows) == [1, 2, 3]
    assert all(row["seconds"] > 0 and row["lr"] == 0.02 for row in rows.values())
    assert not list(uninterrupted.parent.glob(".*.tmp")), "no temporary file left behind"


@pytest.mark.parametrize(
    ("terminate_at", "rows_when_stopped"),
    [(1, []), (STEPS_PER_EPOCH + 1, [1]), (2 * STEPS_PER_EPOCH, [1])],
    ids=["first-step", "epoch-2-step-1", "epoch-2-last-step"],
)
def test_sigterm_then_resume_leaves_exactly_one_row_per_epoch(
    uninterrupted: Path, tmp_path: Path, terminate_at: int, rows_when_stopped: list[int]
) -> None:
    path = config_file(tmp_path)
    with interrupt_on_forward(terminate_at, signal.SIGTERM):  # what a scheduler sends before preemption
        assert train.main(["-c", str(path)], modules=EXTRA) == 128 + signal.SIGTERM
    run_dir = only_run(tmp_path / "saved")
    assert [epoch for epoch, _ in epochs_and_metrics(run_dir / "metrics.csv")] == rows_when_stopped
    assert train.main(["-r", str(run_dir)], modules=EXTRA) == 0
    got, expected = epochs_and_metrics(run_dir / "metrics.csv"), epochs_and_metrics(uninterrupted)
    assert [epoch for epoch, _ in got] == [1, 2, 3]
    assert_same_metrics(got, expected)


def test_a_kill_between_the_row_and_the_checkpoint_replays_the_epoch_once(uninterrupted: Path, tmp_path: Path) -> None:
    """The row of epoch 2 is on disk when last.pth of epoch 2 is not: the resume replays epoch 2 and its row
    replaces the one written before the kill, rather than adding a second."""
    path = config_file(tmp_path)
    with atomic_renames() as renames:  # which files an epoch renames into place, in order
        assert train.main(["-c", str(path)], modules=EXTRA) == 0
    last_pth_writes = [index for index, target in enumerate(renames, start=1) if target.name == "last.pth"]
    kill_at = last_pth_writes[1]  # the second epoch's last.pth
    folder = tmp_path / "killed"
    killed_config = config_file(folder)
    with pytest.raises(Killed), atomic_renames(kill_at=kill_at):
        train.main(["-c", str(killed_config)], modules=EXTRA)
    run_dir = only_run(folder / "saved")
    assert sorted(read_rows(run_dir / "metrics.csv")) == [1, 2], "epoch 2's row was written before its last.pth"
    (run_dir / "run.lock").unlink(missing_ok=True)  # a kill -9 leaves it; this process is still alive
    assert train.main(["-r", str(run_dir)], modules=EXTRA) == 0
    got = epochs_and_metrics(run_dir / "metrics.csv")
    assert [epoch for epoch, _ in got] == [1, 2, 3]
    assert_same_metrics(got, epochs_and_metrics(uninterrupted))


def test_a_metric_added_on_resume_gets_a_column_empty_before(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    assert train.main(["-c", str(path), "--set", "trainer.epochs=2"], modules=EXTRA) == 0
    run_dir = only_run(tmp_path / "saved")
    resume = ["-r", str(run_dir), "--set", "trainer.epochs=3", "--set", 'metrics=["accuracy","error_rate"]']
    assert train.main(resume, modules=EXTRA) == 0
    csv_path = run_dir / "metrics.csv"
    assert header(csv_path) == [
        "epoch", "loss", "accuracy", "error_rate", "val_loss", "val_accuracy", "val_error_rate", "lr", "seconds",
    ]  # fmt: skip
    rows = read_rows(csv_path)
    assert sorted(rows) == [1, 2, 3]
    assert "error_rate" not in rows[2] and rows[3]["error_rate"] == pytest.approx(1 - rows[3]["accuracy"])


def test_a_non_finite_value_is_written_and_a_resume_drops_the_rows_after_its_epoch(tmp_path: Path) -> None:
    main_rank = MetricsCsv(tmp_path)
    main_rank.add_epoch(1, {"loss": 1.0, "lr": 0.1}, 2.0)
    main_rank.add_epoch(2, {"loss": float("nan"), "lr": 0.1}, 2.0)
    assert (tmp_path / "metrics.csv").read_text().splitlines() == [
        "epoch,loss,lr,seconds", "1,1.0,0.1,2.0", "2,nan,0.1,2.0",
    ]  # fmt: skip
    assert sorted(MetricsCsv(tmp_path, keep_through=1).rows) == [1]
    assert sorted(read_rows(tmp_path / "metrics.csv")) == [1], "a resume after epoch 1 drops the later rows"
