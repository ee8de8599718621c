"""``metrics.csv`` in the run folder: one row per finished epoch (epoch, every metric, lr, seconds), rewritten
whole (atomic_write) each epoch before its last.pth, so readers see complete rows; a resume drops the rows
after its checkpoint, so a stop, kill or crash at any point leaves exactly one row per epoch in the end."""

import csv
import io
import logging
import math
from pathlib import Path
from typing import Any

from utils.errors import UsageError
from utils.util import atomic_write

logger = logging.getLogger(__name__)

FILE_NAME = "metrics.csv"
Row = dict[str, float]


class MetricsCsv:
    """Keeps ``run_dir/metrics.csv`` (under torchrun, only rank 0 has one: logger/trackers.py).

    ``keep_through``: the epoch the run (re)starts after; rows of later epochs, written by an earlier
    process that stopped before saving their checkpoint, are dropped now so that they are not repeated.
    """

    def __init__(self, run_dir: Path, keep_through: int = 0) -> None:
        self.path = Path(run_dir) / FILE_NAME
        self.rows: dict[int, Row] = {}
        if self.path.is_file():
            self._keep_rows_through(keep_through)

    @classmethod
    def for_run(cls, run_dir: Path, config: dict[str, Any], start_epoch: int) -> "MetricsCsv":
        return cls(run_dir, keep_through=start_epoch - 1)

    def _keep_rows_through(self, keep_through: int) -> None:
        try:
            saved = read_rows(self.path)
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            logger.warning("metrics.csv cannot be read (%s); it restarts with the next epoch", err)
            return
        self.rows = {epoch: row for epoch, row in saved.items() if epoch <= keep_through}
        dropped = sorted(set(saved) - set(self.rows))
        if dropped:
            logger.info("metrics.csv: dropping epoch(s) %s, after the checkpoint resumed from", _span(dropped))
            self._write()

    def add_epoch(self, epoch: int, epoch_metrics: dict[str, float], seconds: float) -> None:
        self.rows[epoch] = {**epoch_metrics, "seconds": seconds}
        self._write()

    def close(self, finished: bool) -> None:
        """Nothing to do: every epoch's row is already on disk."""

    def _write(self) -> None:
        buffer = io.StringIO()
        header = columns(self.rows)
        out = csv.writer(buffer, lineterminator="\n")
        out.writerow(header)
        for epoch in sorted(self.rows):
            out.writerow([epoch, *(_cell(self.rows[epoch].get(name)) for name in header[1:])])
        atomic_write(self.path, lambda handle: handle.write(buffer.getvalue().encode("utf-8")))


def columns(rows: dict[int, Row]) -> list[str]:
    """``epoch``, the metrics in the order they first appear (train before ``val_``), then lr and seconds.
    The union over all rows: a resume that adds a metric gets a column, empty in the earlier rows."""
    seen = list(dict.fromkeys(name for row in rows.values() for name in row))
    metrics = [name for name in seen if name not in ("lr", "seconds")]
    ordered = [name for name in metrics if not name.startswith("val_")] + [n for n in metrics if n.startswith("val_")]
    return ["epoch", *ordered, *(name for name in ("lr", "seconds") if name in seen)]


def _cell(value: float | None) -> str:
    """Full precision (repr round-trips a float); an empty cell for a metric this epoch did not have."""
    if value is None:
        return ""
    return "nan" if math.isnan(value) else repr(float(value))


def read_rows(path: Path) -> dict[int, Row]:
    """The rows of a metrics.csv by epoch (the last one wins if an epoch repeats); empty cells are left out.
    Rows whose epoch is not a number (a hand edit) are skipped."""
    rows: dict[int, Row] = {}
    # utf-8-sig: a spreadsheet that saves "CSV UTF-8" puts a byte order mark before the first column's name.
    with Path(path).open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        if "epoch" not in (reader.fieldnames or ["epoch"]):  # an empty file has no header yet
            raise csv.Error("it has no 'epoch' column")
        for record in reader:
            try:
                epoch = int(record.pop("epoch") or "")
            except (TypeError, ValueError):
                continue
            rows[epoch] = {name: _number(text) for name, text in record.items() if name and text not in ("", None)}
    return rows


def run_history(run: Path) -> dict[int, Row]:
    """The rows of ``run``'s metrics.csv (none before its first epoch ends); one line if it cannot be read."""
    path = run / FILE_NAME
    try:
        return read_rows(path) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UsageError(f"{str(path)!r} cannot be read ({err})") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _span(epochs: list[int]) -> str:
    return str(epochs[0]) if len(epochs) == 1 else f"{min(epochs)} to {max(epochs)}"
