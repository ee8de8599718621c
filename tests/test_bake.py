"""Baking: the exact file set, no template syntax left, valid configs, lint-clean code."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_FILES = {
    ".gitignore",
    "README.md",
    "config.json",
    "pyproject.toml",
    "parse_config.py",
    "train.py",
    "test.py",
    "base/__init__.py",
    "base/base_data_loader.py",
    "base/base_model.py",
    "base/base_trainer.py",
    "data/mnist_sample.npz",
    "data_loader/__init__.py",
    "data_loader/data_loaders.py",
    "data_loader/datasets.py",
    "logger/__init__.py",
    "logger/logger.py",
    "logger/visualization.py",
    "model/__init__.py",
    "model/loss.py",
    "model/metric.py",
    "model/model.py",
    "trainer/__init__.py",
    "trainer/trainer.py",
    "utils/__init__.py",
    "utils/checkpoint.py",
    "utils/metric_tracker.py",
    "utils/util.py",
}
TEMPLATE_SYNTAX = re.compile(r"\{\{|\{%|\{#|cookiecutter\.")

DATASET_LOADERS = {
    "mnist_sample": "MnistSampleDataLoader",
    "mnist": "MnistDataLoader",
    "fashion_mnist": "FashionMnistDataLoader",
    "cifar10": "Cifar10DataLoader",
    "image_folder": "ImageFolderDataLoader",
}


def project_files(project: Path) -> set[str]:
    files = {p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()}
    return {f for f in files if "__pycache__" not in f and not f.startswith((".pytest_cache", ".ruff_cache"))}


def test_default_bake_has_exact_file_set(default_project: Path) -> None:
    assert default_project.name == "mnist_classifier"
    files = project_files(default_project)
    own_tests = {f for f in files if f.startswith("tests/")}
    assert own_tests, "the generated project must ship its own tests"
    assert files - own_tests == PROJECT_FILES


def test_no_unrendered_template_syntax(default_project: Path) -> None:
    leftovers = []
    for path in default_project.rglob("*"):
        if not path.is_file() or path.suffix in {".npz", ".pyc"}:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if TEMPLATE_SYNTAX.search(line):
                leftovers.append(f"{path.relative_to(default_project)}:{number}: {line.strip()}")
    assert not leftovers, "\n".join(leftovers)


def test_default_config_values(default_project: Path) -> None:
    config = json.loads((default_project / "config.json").read_text())
    assert config["name"] == "mnist_classifier"
    assert config["device"] == "auto"
    assert config["data_loader"]["type"] == "MnistSampleDataLoader"
    assert config["trainer"]["tensorboard"] is True
    assert config["trainer"]["monitor"] == "min val_loss"


def test_ruff_passes_in_baked_project(default_project: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
        cwd=default_project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dataset", list(DATASET_LOADERS), ids=list(DATASET_LOADERS))
def test_every_dataset_answer_bakes_a_matching_config(cookies, dataset: str) -> None:
    result = cookies.bake(extra_context={"dataset": dataset, "tensorboard": False, "accelerator": "cpu"})
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    config = json.loads((project / "config.json").read_text())
    assert config["data_loader"]["type"] == DATASET_LOADERS[dataset]
    assert config["device"] == "cpu"
    assert config["trainer"]["tensorboard"] is False
    colour = dataset in {"cifar10", "image_folder"}
    assert config["arch"]["args"]["in_channels"] == (3 if colour else 1)
    assert (project / "data" / "mnist_sample.npz").is_file(), "the sample ships with every project"
