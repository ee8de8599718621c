"""End to end: train.py and test.py as a user runs them, on the shipped MNIST sample, for one short epoch."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

# Always the shipped sample, whichever dataset the project was generated for, so this runs offline.
SAMPLE_LOADER = {
    "type": "MnistSampleDataLoader",
    "args": {
        "data_dir": "data/",
        "batch_size": 128,
        "shuffle": True,
        "validation_split": 200,
        "num_workers": 0,
        "pin_memory": False,
    },
}
RUN_FILES = ("last.pth", "best.pth", "config.json", "train.log")
Run = tuple[subprocess.CompletedProcess[str], Path]  # a finished script and the folder it was told to save in
# Each must stop train.py before it writes anything; the value is what its error line must say.
BAD_OVERRIDES = {
    "trainer.epoch=1": "did you mean 'epochs'?",
    "trainer.epochs=0.0.1": "'0.0.1' is not a JSON value",
    "arch.type=ConvNett": "did you mean 'ConvNet'?",  # found only after the data is loaded
}


def start_script(root: Path, script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pipe = subprocess.PIPE
    return subprocess.Popen([sys.executable, script, *args], cwd=root, env=env, stdout=pipe, stderr=pipe, text=True)


def finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_script(root: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return finish(start_script(root, script, *args))


def write_config(root: Path, folder: Path) -> tuple[Path, dict[str, Any]]:
    """A copy of config.json that trains on the sample and saves under ``folder/saved``."""
    config = json.loads((root / "config.json").read_text(encoding="utf-8"))
    config["data_loader"] = SAMPLE_LOADER
    config["arch"]["args"] = {"in_channels": 1, "num_classes": 10}
    config["trainer"]["save_dir"] = str(folder / "saved")
    if "tensorboard" in config["trainer"]:  # a key only where the project was generated with TensorBoard
        config["trainer"]["tensorboard"] = False
    folder.mkdir(exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path, config


@pytest.fixture(scope="module")
def trained(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Train once for the module; returns the run folder and the config file's contents."""
    folder = tmp_path_factory.mktemp("train")
    path, config = write_config(project_root, folder / "unused")
    save_dir = folder / "saved"
    overrides = [f"trainer.save_dir={save_dir}", "trainer.epochs=1", "arch.args.width=8"]
    args = ["-c", str(path), "-d", "cpu", *(arg for text in overrides for arg in ("--set", text))]
    result = run_script(project_root, "train.py", *args)
    assert result.returncode == 0, result.stderr
    assert not (folder / "unused" / "saved").exists()
    runs = list((save_dir / config["name"]).iterdir())
    assert len(runs) == 1, runs
    return runs[0], config


def test_train_writes_a_complete_run_folder(trained: tuple[Path, dict[str, Any]]) -> None:
    run_dir, config = trained
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    assert saved["trainer"]["epochs"] == 1 and saved["device"] == "cpu"  # the overrides are recorded
    assert saved["arch"]["args"]["width"] == 8
    assert saved["name"] == config["name"]
    state = torch.load(run_dir / "last.pth", weights_only=True)
    assert state["epoch"] == 1 and state["config"] == saved
    assert set(state["log"]) >= {"loss", "val_loss", "val_accuracy"}
    assert "epoch 1/1" in (run_dir / "train.log").read_text(encoding="utf-8")


def test_test_py_evaluates_the_run(project_root: Path, trained: tuple[Path, dict[str, Any]]) -> None:
    run_dir, _ = trained
    result = run_script(project_root, "test.py", "-r", str(run_dir), "-d", "cpu")
    assert result.returncode == 0, result.stderr
    assert "test_accuracy" in result.stdout
    report = json.loads((run_dir / "best.test.json").read_text(encoding="utf-8"))
    assert report["checkpoint"] == "best.pth" and report["epoch"] == 1 and report["samples"] == 1000
    assert 0.0 <= report["test_accuracy"] <= 1.0


@pytest.fixture(scope="module")
def rejected(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Run train.py once per bad override, all at the same time (each only starts up and fails)."""
    started = {}
    for override in BAD_OVERRIDES:
        folder = tmp_path_factory.mktemp("rejected")
        path, _ = write_config(project_root, folder)
        args = ("-c", str(path), "-d", "cpu", "--set", override)
        started[override] = (start_script(project_root, "train.py", *args), folder)
    return {override: (finish(process), folder) for override, (process, folder) in started.items()}


@pytest.mark.parametrize(("override", "message"), BAD_OVERRIDES.items(), ids=list(BAD_OVERRIDES))
def test_bad_override_fails_with_one_line(rejected: dict[str, Run], override: str, message: str) -> None:
    result, folder = rejected[override]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert override.partition("=")[0] in errors[0] and message in errors[0]
    assert not (folder / "saved").exists()
