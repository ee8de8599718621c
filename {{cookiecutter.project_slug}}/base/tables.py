"""Tables in CSV files, one kind of input: a header row naming the columns, then one row per sample.
``read_csv`` reads a whole file; a mistake in it is one line naming the file, the line and the column."""

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from utils.errors import UsageError, first_sentence


@dataclass(frozen=True)
class Table:
    path: Path
    columns: list[str]  # the header's names
    rows: list[list[str]]  # the cells as text, one list per sample
    lines: list[int]  # the line of the file each row ends on, for messages

    def column(self, name: str, key: str) -> list[str]:
        """The cells of column ``name``; ``key`` (the config key naming it) is what to change when it is missing."""
        if name not in self.columns:
            raise UsageError(f"{key}: no column {name!r} in {str(self.path)!r} (its columns: "
                             f"{', '.join(self.columns)}); name one of them, or add the column")  # fmt: skip
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def numbers(self, names: list[str], key: str) -> torch.Tensor:
        """The columns ``names`` as float32 N x len(names); a cell that is not a finite number is refused."""
        values = []
        for name in names:
            for line, text in zip(self.lines, self.column(name, key), strict=True):
                number = _float_or_none(text)
                if number is None:
                    raise UsageError(
                        f"{str(self.path)!r} line {line}, column {name!r}: {text!r} is not a number; every feature "
                        "(and a regression target) must be a number in every row: fill the cell in, drop the row, "
                        "or leave the column out of data_loader.args.features"
                    )
                values.append(number)
        return torch.tensor(values, dtype=torch.float32).view(len(names), len(self.rows)).T.contiguous()


def _float_or_none(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def read_csv(path: Path, key: str) -> Table:
    """The table in ``path``; ``key`` (the config key or flag that names the file) says what to change when
    the file is missing. Blank lines are skipped; the header's names lose surrounding spaces."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:  # -sig: a spreadsheet's byte-order mark
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            rows, lines = [], []
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise UsageError(f"{str(path)!r} line {reader.line_num}: {len(row)} cells, but the header "
                                     f"names {len(header)} columns; give every row one cell per column")  # fmt: skip
                rows.append(row)
                lines.append(reader.line_num)
    except FileNotFoundError:
        raise UsageError(f"{key}: {str(path)!r} not found; give the path of a CSV file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UsageError(f"{key}: {str(path)!r} cannot be read as CSV ({first_sentence(err)})") from None
    if not rows:
        what = "only a header" if header else "nothing"
        raise UsageError(f"{str(path)!r} holds {what}; a table needs a header row naming the columns, then one row "
                         "per sample")  # fmt: skip
    return Table(path, header, rows, lines)
