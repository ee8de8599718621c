"""The class names a loader gives, against the checkpoint's: read after the split that may set them, so a
loader that learns them from the data is checked too."""

from pathlib import Path

import pytest

from tests.hostile import (
    assert_unchanged,
    only_run,
    run_test,
    run_train,
    small_config,
    snapshot,
    write_config,
)


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
