"""The class names a loader gives, against the checkpoint's: read after the split that may set them, so a
loader that learns them from the data is checked too. And a checkpoint trained before the model's output width
was checked against the names (10 outputs for 3 names) still evaluates, predicts and resumes, with a warning.
(The refusals of a new run whose output width is not the number of names are in test_refusals.py's table.)"""

import json
from pathlib import Path

import pytest
from PIL import Image

import predict
from tests.hostile import (
    assert_unchanged,
    only_run,
    run_main,
    run_test,
    run_train,
    small_config,
    snapshot,
    write_config,
)
from tests.tiny import TINY
from trainer import checks


@pytest.mark.parametrize(
    ("run_entry_point", "split", "args"),
    [
        pytest.param(run_test, "test", [], id="test.py"),
        pytest.param(run_train, "train", ["--set", "trainer.epochs=2"], id="train.py-resume"),
    ],
)
def test_class_names_learnt_while_reading_a_split_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], run_entry_point: object, split: str, args: list[str]
) -> None:
    config = small_config(tmp_path / "saved")
    config["data_loader"]["type"] = "LearntClassesLoader"
    assert run_train(capsys, "-c", write_config(tmp_path / "config.json", config)).code == 0
    run_dir = only_run(tmp_path / "saved")
    before = snapshot(tmp_path)
    reversed_names = ["--set", f'data_loader.args.reversed_in="{split}"']
    result = run_entry_point(capsys, "-r", run_dir, *reversed_names, *args)  # type: ignore[operator]
    assert result.code == 2
    assert "was trained on the classes [horizontal, vertical, cross], but the data now has [cross, vertical, " \
        "horizontal]" in result.error_line()  # fmt: skip
    assert_unchanged(before, snapshot(tmp_path))


@pytest.fixture
def wide_run(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run trained as the code before the check let it: 5 outputs for the tiny loader's 3 class names."""
    config = small_config(tmp_path / "saved")
    config["arch"]["args"]["num_classes"] = 5
    with monkeypatch.context() as unchecked:
        # raising=False: the same test runs on the code before the check (where the run trains as it is)
        unchecked.setattr(checks, "class_count_mismatch", lambda *args: None, raising=False)
        assert run_train(capsys, "-c", write_config(tmp_path / "config.json", config)).code == 0
    return only_run(tmp_path / "saved")


def test_a_checkpoint_with_more_outputs_than_names_still_evaluates(
    wide_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_test(capsys, "-r", wide_run)
    assert result.code == 0, result.err
    assert "warning: the model scores 5 classes but its checkpoint names 3; the class report shows them by index" in (
        result.err
    )
    report = json.loads((wide_run / "best.test.json").read_text(encoding="utf-8"))
    assert list(report["class_report"]["per_class"]) == ["0", "1", "2", "3", "4"]


def test_a_checkpoint_with_more_outputs_than_names_still_predicts(
    wide_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.new("L", (8, 8)).save(tmp_path / "blank.png")
    out = tmp_path / "predictions.csv"
    result = run_main(capsys, predict.main, "-r", wide_run, tmp_path / "blank.png", "-o", out, modules=TINY)
    assert result.code == 0, result.err
    assert "warning: the model scores 5 classes but its checkpoint names 3" in result.err
    assert out.is_file()


def test_a_checkpoint_with_more_outputs_than_names_resumes_with_a_warning(
    wide_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_train(capsys, "-r", wide_run, "--set", "trainer.epochs=2")
    assert result.code == 0, result.err
    assert "warning: TinyConvNet outputs 5 classes, but TinyTensorLoader names 3 (horizontal, vertical, cross); the " \
        "checkpoint was trained so and goes on" in result.err  # fmt: skip
    assert (wide_run / "epoch-2.pth").is_file()
