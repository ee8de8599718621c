"""Tables in CSV files (base/tables.py): read as written, and a file that is not a table of numbers where
numbers are wanted is one line naming the file, the line and the column."""

from pathlib import Path

import pytest
import torch

from base.tables import read_csv
from utils.errors import UsageError

GOOD = "height, weight,kind\n1.5,60,a\n\n1.75,80.5,b\n"


def test_a_table_reads_as_written(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("\ufeff" + GOOD, encoding="utf-8")  # a spreadsheet's byte-order mark first
    table = read_csv(tmp_path / "t.csv", "data_loader.args.train_csv")
    assert table.columns == ["height", "weight", "kind"], "names lose their spaces"
    assert table.lines == [2, 4], "the blank line is skipped, and counted"
    assert table.column("kind", "data_loader.args.target") == ["a", "b"]
    numbers = table.numbers(["weight", "height"], "data_loader.args.features")
    assert torch.equal(numbers, torch.tensor([[60.0, 1.5], [80.5, 1.75]]))


# Each file is refused with one line: (its text, the columns read as numbers, what the line says).
BAD_TABLES = {
    "empty": ("", ["height"], "holds nothing; a table needs a header row"),
    "header-only": ("height,kind\n", ["height"], "holds only a header"),
    "ragged-row": (GOOD + "2,90\n", ["height"], "line 5: 2 cells, but the header names 3 columns"),
    "missing-column": (GOOD, ["width"], "data_loader.args.features: no column 'width' in"),
    "not-a-number": (GOOD, ["kind"], "line 2, column 'kind': 'a' is not a number"),
    "empty-cell": ("height,kind\n1,a\n,b\n", ["height"], "line 3, column 'height': '' is not a number"),
    "not-finite": ("height,kind\nnan,a\n", ["height"], "line 2, column 'height': 'nan' is not a number"),
    "not-text": (b"\xff\xfe\x00bad", ["height"], "cannot be read as CSV"),
}


@pytest.mark.parametrize("case_id", list(BAD_TABLES))
def test_a_bad_table_is_one_line_naming_where(case_id: str, tmp_path: Path) -> None:
    text, columns, expected = BAD_TABLES[case_id]
    path = tmp_path / "t.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    with pytest.raises(UsageError) as refused:
        read_csv(path, "data_loader.args.train_csv").numbers(columns, "data_loader.args.features")
    message = str(refused.value)
    assert expected in message and "\n" not in message, message
    assert str(path) in message


def test_a_missing_file_names_the_key_that_points_at_it(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^data_loader\.args\.test_csv: '.*nothing\.csv' not found"):
        read_csv(tmp_path / "nothing.csv", "data_loader.args.test_csv")
