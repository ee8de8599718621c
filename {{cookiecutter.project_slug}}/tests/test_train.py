"""End to end: train.py and test.py as a user runs them (in this process, on the tiny setup)."""

import json
import shutil
from pathlib import Path

import pytest
import torch

import export
import test as test_script  # the project's test.py
import train
from parse_config import Config, load_config
from tests.hostile import assert_unchanged, run_main, run_test, run_train, snapshot
from tests.tiny import TINY, tiny_config
from tests.tiny.data_loaders import TinyTensorLoader
from trainer.build import build_model
from utils.checkpoint import load_checkpoint

RUN_FILES = ("last.pth", "best.pth", "config.json", "train.log")
OVERRIDES = ["-d", "cpu", "--lr", "0.01", "--set", "trainer.epochs=1", "--set", "arch.args.width=6"]
# Each must stop train.py before it writes anything; the value is what its error line must say.
BAD_OVERRIDES = {
    "trainer.epoch=1": "did you mean 'epochs'?",
    "trainer.epochs=0.0.1": "'0.0.1' is not a JSON value",
    "arch.type=TinyConvNett": "did you mean 'TinyConvNet'?",  # found only after the data is loaded
}


def write_config(folder: Path) -> Path:
    """The tiny config, for 2 epochs on any device, in ``folder/config.json``, saving under ``folder/saved``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps({**tiny_config(folder / "saved", epochs=2), "device": "auto"}), encoding="utf-8")
    return path


def only_run(save_dir: Path) -> Path:
    runs = list((save_dir / "tiny").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, logging_restored_after_module: None) -> tuple[Path, Path]:
    """Train once for the module; returns the config file and the run folder."""
    path = write_config(tmp_path_factory.mktemp("train"))
    assert train.main(["-c", str(path), *OVERRIDES], modules=TINY) == 0
    return path, only_run(path.parent / "saved")


def test_train_writes_a_complete_run_folder(trained: tuple[Path, Path]) -> None:
    config_path, run_dir = trained
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    recorded = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    overrides = ["device=cpu", "optimizer.args.lr=0.01", "trainer.epochs=1", "arch.args.width=6"]
    assert recorded == load_config(config_path, overrides).to_dict()  # every key, defaults and overrides included
    assert recorded["device"] == "cpu" and recorded["trainer"]["epochs"] == 1
    assert "grad_accum_steps" not in json.loads(config_path.read_text(encoding="utf-8"))["trainer"]
    assert recorded["trainer"]["grad_accum_steps"] == 1
    state = load_checkpoint(run_dir / "last.pth")
    assert state["epoch"] == 1 and state["config"] == recorded
    assert set(state["metrics"]) >= {"loss", "val_loss", "val_accuracy"}
    assert "epoch 1/1" in (run_dir / "train.log").read_text(encoding="utf-8")


def test_test_py_evaluates_the_run(trained: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, run_dir = trained
    assert test_script.main(["-r", str(run_dir), "-d", "cpu"], modules=TINY) == 0
    assert "test_accuracy" in capsys.readouterr().out
    report = json.loads((run_dir / "best.test.json").read_text(encoding="utf-8"))
    assert report["checkpoint"] == "best.pth" and report["epoch"] == 1 and report["samples"] == 60
    assert 0.0 <= report["test_accuracy"] <= 1.0 and report["test_loss"] > 0


def test_resume_continues_in_the_same_run_folder(trained: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir = Path(shutil.copytree(trained[1], tmp_path / "run"))
    assert train.main(["-r", str(run_dir), "--set", "trainer.epochs=2"], modules=TINY) == 0
    assert load_checkpoint(run_dir / "last.pth")["epoch"] == 2
    assert "epoch 2/2" in (run_dir / "train.log").read_text(encoding="utf-8")
    resumed_config = json.loads((run_dir / "config-resume-1.json").read_text(encoding="utf-8"))
    assert resumed_config["trainer"]["epochs"] == 2  # the changed config is recorded beside the first
    assert json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["trainer"]["epochs"] == 1


@pytest.mark.parametrize(("override", "message"), BAD_OVERRIDES.items(), ids=list(BAD_OVERRIDES))
def test_bad_override_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, message: str
) -> None:
    path = write_config(tmp_path)
    assert train.main(["-c", str(path), "-d", "cpu", "--set", override], modules=TINY) == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert override.partition("=")[0] in errors[0] and message in errors[0]
    assert not (tmp_path / "saved").exists()


def test_test_py_reports_a_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert test_script.main(["-r", str(tmp_path / "nothing.pth")], modules=TINY) == 2
    assert capsys.readouterr().err.startswith("error: checkpoint")


def test_checkpoints_keep_the_class_names_and_num_classes_defaults_to_their_count(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "saved")
    del config["arch"]["args"]["num_classes"]  # the tiny data has 3 classes; the model's default is 3 too
    config["arch"]["args"]["width"] = 4
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    assert train.main(["-c", str(path)], modules=TINY) == 0
    run_dir = only_run(tmp_path / "saved")
    state = load_checkpoint(run_dir / "best.pth")
    assert state["classes"] == ["horizontal", "vertical", "cross"]
    assert state["model"]["head.1.weight"].shape[0] == 3
    five = build_model(Config.from_dict(config), TINY, classes=list("abcde"))
    assert five(torch.zeros(2, 1, 8, 8)).shape == (2, 5), "num_classes left out: the data's class count"
    assert test_script.main(["-r", str(run_dir)], modules=TINY) == 0
    report = json.loads((run_dir / "best.test.json").read_text(encoding="utf-8"))
    assert report["classes"] == "horizontal, vertical, cross"


@pytest.mark.parametrize("command", ["test.py", "train.py"])
def test_data_whose_classes_changed_is_refused(
    command: str, tiny_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An image_folder class folder renamed after training reorders the labels: every score would be wrong."""
    monkeypatch.setattr(TinyTensorLoader, "classes", ("cross", "horizontal", "vertical"))
    before = snapshot(tiny_run)
    if command == "test.py":
        result = run_test(capsys, "-r", tiny_run / "best.pth")
    else:
        result = run_train(capsys, "-r", tiny_run / "last.pth", "--set", "trainer.epochs=3")
    assert result.code == 2, result.err
    line = result.error_line()
    assert "was trained on the classes [horizontal, vertical, cross], but the data now has [cross, horizontal, " in line
    assert_unchanged(before, snapshot(tiny_run))


@pytest.mark.parametrize("command", ["test.py", "export.py"])
def test_an_empty_test_split_is_one_line(
    command: str, tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both take their first batch from the test split: with none, it was a StopIteration traceback."""
    empty = ["--set", "data_loader.args.n_test=0"]
    before = snapshot(tiny_run)
    if command == "test.py":
        result = run_test(capsys, "-r", tiny_run / "best.pth", *empty)
    else:
        output = tmp_path / "m.weights.pth"
        result = run_main(
            capsys, export.main, "-r", tiny_run, "--format", "weights", "-o", output, *empty, modules=TINY
        )
    assert result.code == 2, result.err
    assert result.error_line() == "error: data_loader: TinyTensorLoader's test split has no samples; give it some"
    assert_unchanged(before, snapshot(tiny_run))
