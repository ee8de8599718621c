"""Build the Iris tables that ship inside every generated project (data/iris_train.csv, data/iris_test.csv).

Run once at development time with the path of scikit-learn's ``sklearn/datasets/data/iris.csv`` (from an
installed scikit-learn, or unzipped from its wheel: ``pip download scikit-learn --no-deps``). The data is
R. A. Fisher's (1936), public domain: 150 flowers, 50 per species, four measurements in cm. The values are
written as that file spells them, under a header, with the species by name; every fifth flower of each
species, in the file's order, goes to the test table (120 train, 30 test).
"""

import csv
import sys
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "{{cookiecutter.project_slug}}" / "data"
HEADER = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]
TEST_EVERY = 5


def main(source: Path) -> None:
    with source.open(encoding="utf-8", newline="") as handle:
        first, *rows = list(csv.reader(handle))
    species = first[2:]  # the first line: the counts, then the species names by label
    parts: dict[str, list[list[str]]] = {"train": [], "test": []}
    seen = dict.fromkeys(species, 0)
    for *measurements, label in rows:
        name = species[int(label)]
        parts["test" if seen[name] % TEST_EVERY == TEST_EVERY - 1 else "train"].append([*measurements, name])
        seen[name] += 1
    for split, part in parts.items():
        path = TARGET / f"iris_{split}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerows([HEADER, *part])
        print(f"wrote {path}: {len(part)} flowers")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
