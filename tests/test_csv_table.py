"""dataset=csv_table: the Iris table trains offline to a good test accuracy, resumes, predicts on new rows and
on a split, exports with its standardisation described; switched to regression it reports test_loss and the
mae metric; a table that does not fit the config is one line."""

import csv
import json
from pathlib import Path

import pytest
from helpers import baked, describe, run_folders, run_project

NAME = "table_model"  # the slug of the csv_table answer's default name


@pytest.fixture(scope="module")
def table_project(cookies_session) -> Path:
    return baked(cookies_session, dataset="csv_table")


def save_to(save_dir: Path) -> list[str]:
    return ["--set", f"trainer.save_dir={json.dumps(str(save_dir))}"]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def iris_run(table_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default config trained for 4 epochs, resumed to its end (40 epochs, or an early stop) and evaluated."""
    save_dir = tmp_path_factory.mktemp("iris") / "saved"
    started = run_project(table_project, "train.py", "-c", "config.json", "--set", "trainer.epochs=4",
                          *save_to(save_dir))  # fmt: skip
    assert started.returncode == 0, describe(started)
    [run] = run_folders(save_dir, NAME)
    resumed = run_project(table_project, "train.py", "-r", str(run), "--set", "trainer.epochs=40")
    assert resumed.returncode == 0, describe(resumed)
    assert "Resumed from epoch 4; continuing at epoch 5" in resumed.stderr, resumed.stderr[-2000:]
    evaluated = run_project(table_project, "test.py", "-r", str(run))
    assert evaluated.returncode == 0, describe(evaluated)
    return run


def test_iris_trains_offline_to_a_good_test_accuracy(iris_run: Path) -> None:
    report = json.loads((iris_run / "best.test.json").read_text(encoding="utf-8"))
    assert report["samples"] == 30 and report["classes"] == "setosa, versicolor, virginica"
    assert report["test_accuracy"] >= 0.9, report


def test_predict_on_new_rows_and_on_the_test_split(table_project: Path, iris_run: Path, tmp_path: Path) -> None:
    """New rows are read and standardised as the splits are: the test file's rows, without their species, get
    the classes --split test gives them, and as many right as test.py counts."""
    test_rows = read_rows(table_project / "data" / "iris_test.csv")
    features = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    with (tmp_path / "new_rows.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=features, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(test_rows)
    for arguments in ([str(tmp_path / "new_rows.csv"), "-o", str(tmp_path / "rows.csv")],
                      ["--split", "test", "-o", str(tmp_path / "split.csv")]):  # fmt: skip
        predicted = run_project(table_project, "predict.py", "-r", str(iris_run), *arguments)
        assert predicted.returncode == 0, describe(predicted)
    rows, split = read_rows(tmp_path / "rows.csv"), read_rows(tmp_path / "split.csv")
    assert [row["class"] for row in rows] == [row["class"] for row in split]
    assert list(rows[0]) == ["input", "sample", "index", "class", "output_0", "output_1", "output_2"]
    accuracy = json.loads((iris_run / "best.test.json").read_text(encoding="utf-8"))["test_accuracy"]
    correct = sum(row["class"] == truth["species"] for row, truth in zip(rows, test_rows, strict=True))
    assert correct / len(rows) == pytest.approx(accuracy, abs=1e-6)


def test_export_describes_the_feature_columns_and_their_standardisation(
    table_project: Path, iris_run: Path, tmp_path: Path
) -> None:
    exported = run_project(table_project, "export.py", "-r", str(iris_run), "--format", "pt2", "-o",
                           str(tmp_path / "iris.pt2"))  # fmt: skip
    assert exported.returncode == 0, describe(exported)
    described = json.loads((tmp_path / "iris.pt2.json").read_text(encoding="utf-8"))["input"]
    assert described["names"] == ["inputs"] and described["shape"] == ["batch", 4]
    assert described["features"] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert len(described["mean"]) == len(described["std"]) == 4 and min(described["std"]) > 0


def test_regression_on_the_same_table_reports_the_loss_and_mae(table_project: Path, tmp_path: Path) -> None:
    """The README's switch: the petal width from the other three measurements."""
    config = json.loads((table_project / "config.json").read_text(encoding="utf-8"))
    config["data_loader"]["args"].update(task="regression", target="petal_width",
                                         features=["sepal_length", "sepal_width", "petal_length"])  # fmt: skip
    config["arch"]["args"].update(in_features=3, out_features=1)
    config.update(loss="mse", metrics=["mae"])
    config["trainer"]["save_dir"] = str(tmp_path / "saved")
    (tmp_path / "regression.json").write_text(json.dumps(config), encoding="utf-8")
    trained = run_project(table_project, "train.py", "-c", str(tmp_path / "regression.json"))
    assert trained.returncode == 0, describe(trained)
    [run] = run_folders(tmp_path / "saved", NAME)
    evaluated = run_project(table_project, "test.py", "-r", str(run))
    assert evaluated.returncode == 0, describe(evaluated)
    report = json.loads((run / "best.test.json").read_text(encoding="utf-8"))
    assert "class_report" not in report and "classes" not in report
    assert report["test_loss"] < 0.15 and report["test_mae"] < 0.3, report  # petal widths: 0.1 to 2.5 cm
    predicted = run_project(table_project, "predict.py", "-r", str(run), "--split", "test", "-o",
                            str(tmp_path / "p.csv"))  # fmt: skip
    assert predicted.returncode == 0, describe(predicted)
    assert list(read_rows(tmp_path / "p.csv")[0]) == ["input", "sample", "output_0"]


# A config that does not fit the table -> what its one line says.
REFUSED = {
    "target-not-a-column": (["--set", "data_loader.args.target=colour"], "data_loader.args.target: no column 'colour'"),
    "text-as-a-feature": (["--set", 'data_loader.args.features=["petal_width", "species"]'], "must name one column"),
    "unknown-task": (["--set", "data_loader.args.task=ranking"], "'ranking' is neither \"classification\" nor"),
    "regression-on-names": (["--set", "data_loader.args.task=regression"], "column 'species': 'setosa' is not a num"),
    "missing-file": (["--set", "data_loader.args.train_csv=data/none.csv"], "train_csv: 'data/none.csv' not found"),
}


@pytest.mark.parametrize("case_id", list(REFUSED))
def test_a_config_that_does_not_fit_the_table_is_one_line(case_id: str, table_project: Path, tmp_path: Path) -> None:
    overrides, expected = REFUSED[case_id]
    refused = run_project(table_project, "train.py", "-c", "config.json", *overrides, *save_to(tmp_path / "saved"))
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert refused.returncode == 2 and len(errors) == 1 and expected in errors[0], describe(refused)
    assert "Traceback" not in refused.stderr and not (tmp_path / "saved").exists()


def test_a_test_row_of_a_class_the_train_file_lacks_is_one_line(table_project: Path, iris_run: Path,
                                                                tmp_path: Path) -> None:  # fmt: skip
    rows = (table_project / "data" / "iris_test.csv").read_text(encoding="utf-8") + "5.0,3.0,1.5,0.2,rose\n"
    (tmp_path / "test.csv").write_text(rows, encoding="utf-8")
    override = f"data_loader.args.test_csv={json.dumps(str(tmp_path / 'test.csv'))}"
    refused = run_project(table_project, "test.py", "-r", str(iris_run), "--set", override)
    assert refused.returncode == 2, describe(refused)
    assert "line 32: species 'rose' is not one of the train file's classes" in refused.stderr.strip().splitlines()[-1]
