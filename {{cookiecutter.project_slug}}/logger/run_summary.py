"""``plot.py --summary``: one line per run of an experiment, as a text table."""

import json
import math
from pathlib import Path
from typing import Any

from logger.metrics_csv import Row, run_history
from logger.runs import differing_settings, peek_checkpoint, read_config, run_status
from trainer.monitor import Monitor
from utils.errors import UsageError
from utils.util import metric_text

TEST_REPORTS = ("best.test.json", "last.test.json")


def summary_table(runs: list[Path]) -> str:
    """Columns: the run folder, its status, epochs done of those configured, the best value of the monitored
    metric and its epoch (metrics.csv), the test metrics if test.py ran (``best.test.json``, else
    ``last.test.json``), then one per setting that differs between the runs; each only if a run has it."""
    configs = [read_config(run) for run in runs]
    parts = [run_cells(*cells) for cells in zip(runs, configs, differing_settings(configs), strict=True)]
    columns: dict[str, None] = {}  # ordered, without repeats
    for group in zip(*parts, strict=True):  # every run's first group of cells, then every run's second...
        columns.update(dict.fromkeys(column for cells in group for column in cells))
    rows = [{column: text for cells in run_parts for column, text in cells.items()} for run_parts in parts]
    return format_table(rows, list(columns))


def run_cells(run: Path, config: dict[str, Any], settings: dict[str, str]) -> list[dict[str, str]]:
    """One run's cells (column -> text), in four groups: what it is, its best epoch, its test, its settings."""
    history = run_history(run)
    total = config.get("trainer", {}).get("epochs", "?")
    what = {"run": run.name, "status": run_status(run, config), "epochs": f"{epochs_done(run, history)}/{total}"}
    return [what, best_cells(config, history), test_cells(run), settings]


def epochs_done(run: Path, history: dict[int, Row]) -> int:
    """From metrics.csv; for a run without one (trained before it existed), from last.pth."""
    if history:
        return max(history)
    last = peek_checkpoint(run / "last.pth")
    return int(last["epoch"]) if last is not None and isinstance(last.get("epoch"), int) else 0


def best_cells(config: dict[str, Any], history: dict[int, Row]) -> dict[str, str]:
    """``{"best_val_loss": "0.1234", "best_epoch": "3"}``: dashes before the first epoch, nothing when the
    monitor is off."""
    try:
        monitor = Monitor.parse(str(config.get("trainer", {}).get("monitor", "off")))
    except UsageError:
        monitor = Monitor.parse("off")
    if not monitor.enabled:
        return {}
    measured = {epoch: row.get(monitor.metric, math.nan) for epoch, row in history.items()}
    values = {epoch: value for epoch, value in measured.items() if not math.isnan(value)}
    if not values:
        return {f"best_{monitor.metric}": "-", "best_epoch": "-"}
    pick = min if monitor.mode == "min" else max
    epoch = pick(values, key=lambda e: (values[e], e))  # the earliest of equal values, as the Monitor keeps
    return {f"best_{monitor.metric}": metric_text(values[epoch]), "best_epoch": str(epoch)}


def test_cells(run: Path) -> dict[str, str]:
    """The epoch and test_* values of the run's test report (best.pth's, else last.pth's), if test.py ran: the
    epoch tells a report made before the run was resumed from one of its best epoch."""
    for name in TEST_REPORTS:
        path = run / name
        if path.is_file():
            try:
                report = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            tested = {key: metric_text(value) for key, value in report.items()
                      if key.startswith("test_") and isinstance(value, float)}  # fmt: skip
            return {"tested_epoch": str(report.get("epoch", "?")), **tested} if tested else {}
    return {}


def format_table(rows: list[dict[str, str]], columns: list[str]) -> str:
    """Aligned ``columns`` under a header line, "-" where a row has no value."""
    cells = [columns, *([row.get(column, "-") for column in columns] for row in rows)]
    widths = [max(len(line[index]) for line in cells) for index in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in cells
    )
