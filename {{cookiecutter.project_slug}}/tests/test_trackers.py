"""trainer.loggers: names this project does not know or was generated without are one line before any run
folder exists. (MLflow and W&B themselves: test_mlflow.py and test_wandb.py, with their answers.)"""

import json
from pathlib import Path

import pytest

from tests.hostile import EXTRA, hide_package, run_train, tracked_config


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_a_tracker_the_project_was_generated_without_is_one_line_saying_how_to_add_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    hide_package(monkeypatch, f"logger.{name}_tracker")  # as in a project generated with the answer no
    result = run_train(capsys, "-c", tracked_config(tmp_path, ["csv", name]), modules=EXTRA)
    assert result.code == 2
    assert result.error_line() == (
        f"error: trainer.loggers: {name!r} was not generated in this project (no logger/{name}_tracker.py); "
        f"add it with: cruft update --variables-to-update '{json.dumps({name: True})}'"
    )
    assert not (tmp_path / "saved").exists()


def test_an_unknown_tracker_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_train(capsys, "-c", tracked_config(tmp_path, ["neptune"]), modules=EXTRA)
    assert result.code == 2 and "trainer.loggers: expected a list of csv, tensorboard, mlflow, wandb" in result.err
