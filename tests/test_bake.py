"""Baking with the default answers: the exact file set, no template syntax left, lint-clean code."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from helpers import OPTIONAL_PARTS, SWEEP_FILES, TEMPLATE_ROOT, baked, load_module, locked_range

PROJECT_FILES = {
    ".cookiecutter.json",
    ".dockerignore",
    ".github/workflows/ci.yml",
    ".gitignore",
    ".pre-commit-config.yaml",
    "Dockerfile",
    "Makefile",
    "README.md",
    "docs/after-training.md",
    "docs/config.md",
    "docs/data.md",
    "docs/distributed.md",
    "docs/from-pytorch-template.md",
    "docs/models-and-data.md",
    "docs/resume.md",
    "docs/speed.md",
    "docs/task.md",
    "docs/tests.md",
    "docs/tooling.md",
    "docs/tracking.md",
    "docs/troubleshooting.md",
    "docs/updating.md",
    "config.json",
    "pyproject.toml",
    "parse_config.py",
    "train.py",
    "test.py",
    "predict.py",
    "plot.py",
    "export.py",
    "base/__init__.py",
    "base/augment.py",
    "base/base_data_loader.py",
    "base/base_model.py",
    "base/base_trainer.py",
    "base/batch.py",
    "base/image_data_loader.py",
    "base/images.py",
    "base/loaders.py",
    "base/tables.py",
    "benchmarks/__init__.py",
    "benchmarks/bench_trainer.py",
    "data/mnist_sample.npz",
    "data/iris_train.csv",
    "data/iris_test.csv",
    "data_loader/__init__.py",
    "data_loader/data_loaders.py",
    "inference/__init__.py",
    "inference/classify.py",
    "inference/exporters.py",
    "inference/image_files.py",
    "inference/predictions.py",
    "inference/trained.py",
    "logger/__init__.py",
    "logger/logger.py",
    "logger/metrics_csv.py",
    "logger/trackers.py",
    "logger/plots.py",
    "logger/run_summary.py",
    "logger/runs.py",
    "logger/visualization.py",
    "model/__init__.py",
    "model/loss.py",
    "model/metric.py",
    "model/model.py",
    "trainer/__init__.py",
    "trainer/build.py",
    "trainer/checkpoint.py",
    "trainer/checks.py",
    "trainer/loss_watch.py",
    "trainer/monitor.py",
    "trainer/resume.py",
    "trainer/run_start.py",
    "trainer/schedule.py",
    "trainer/settings.py",
    "trainer/trainer.py",
    "utils/__init__.py",
    "utils/bounds.py",
    "utils/checkpoint.py",
    "utils/class_report.py",
    "utils/cli.py",
    "utils/dist.py",
    "utils/errors.py",
    "utils/foreign_weights.py",
    "utils/metric_tracker.py",
    "utils/registry.py",
    "utils/settings.py",
    "utils/signals.py",
    "utils/util.py",
    "utils/victoresque.py",
    "scripts/slurm/train.sbatch",
    "scripts/slurm/train-single-node.sbatch",
}
COOKIECUTTER_JSON = TEMPLATE_ROOT / "cookiecutter.json"
ANSWER_NAMES = [key for key in json.loads(COOKIECUTTER_JSON.read_text()) if not key.startswith("_")]
# Jinja delimiters, or a reference to an answer that escaped rendering (e.g. cookiecutter.project_slug).
# GitHub's own ${{ expression }} in the copied-as-is workflows is not Jinja.
TEMPLATE_SYNTAX = re.compile(r"(?<!\$)\{\{|\{%|\{#|\bcookiecutter\.(" + "|".join(ANSWER_NAMES) + r")\b")


def project_files(project: Path) -> set[str]:
    """Every file of a baked project, without its own tests and caches."""
    files = {p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()}
    return {f for f in files if "__pycache__" not in f and not f.startswith((".pytest_cache", ".ruff_cache", "tests/"))}


def unrendered_lines(project: Path) -> list[str]:
    leftovers = []
    for path in project.rglob("*"):
        if not path.is_file() or path.suffix in {".npz", ".pyc"}:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if TEMPLATE_SYNTAX.search(line):
                leftovers.append(f"{path.relative_to(project)}:{number}: {line.strip()}")
    return leftovers


def ruff_check(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def fresh_project(cookies_session) -> Path:
    """A default bake of this module's own: other tests train in default_project, adding run files to it."""
    return baked(cookies_session)


def test_default_bake_has_exact_file_set(fresh_project: Path) -> None:
    assert fresh_project.name == "mnist_classifier"
    assert project_files(fresh_project) == PROJECT_FILES
    assert list((fresh_project / "tests").glob("test_*.py")), "the generated project ships its own tests"


def test_the_sweeps_answer_adds_sweep_py_and_its_parts(sweeps_project: Path) -> None:
    assert project_files(sweeps_project) == PROJECT_FILES | SWEEP_FILES
    assert (sweeps_project / "tests" / "test_sweep.py").is_file()
    assert not unrendered_lines(sweeps_project)
    assert ruff_check(sweeps_project).returncode == 0


def test_every_optional_part_together(all_parts_project: Path) -> None:
    assert project_files(all_parts_project) == PROJECT_FILES.union(*(part.files for part in OPTIONAL_PARTS.values()))
    assert {"test_sweep.py", "test_mlflow.py", "test_wandb.py"} <= {p.name for p in all_parts_project.glob("tests/*")}
    config = json.loads((all_parts_project / "config.json").read_text())
    assert config["trainer"]["loggers"] == ["csv", "tensorboard", "mlflow", "wandb"], "each tracker answered yes is on"
    assert config["trainer"]["tracking_uri"] is None
    pyproject = tomllib.loads((all_parts_project / "pyproject.toml").read_text())
    requirements = {requirement for part in OPTIONAL_PARTS.values() for requirement in part.requirements}
    assert requirements <= set(pyproject["project"]["dependencies"])
    extras = [requirement for group in pyproject["project"]["optional-dependencies"].values() for requirement in group]
    for requirement in pyproject["project"]["dependencies"] + extras:  # each lower bound is a tested release
        assert requirement == locked_range(re.split(r"[<>=]", requirement)[0]), requirement
    assert not unrendered_lines(all_parts_project)
    assert ruff_check(all_parts_project).returncode == 0


def test_no_unrendered_template_syntax(fresh_project: Path) -> None:
    leftovers = unrendered_lines(fresh_project)
    assert not leftovers, "\n".join(leftovers)


def test_default_config_values(default_project: Path) -> None:
    config = json.loads((default_project / "config.json").read_text())
    assert config["name"] == "mnist_classifier"
    assert config["device"] == "auto"
    assert config["data_loader"]["type"] == "MnistSampleDataLoader"
    assert config["trainer"]["loggers"] == ["csv", "tensorboard"], "TensorBoard by default, no other tracker"
    assert "tensorboard" not in config["trainer"], "the retired switch is not written"
    assert "tracking_uri" not in config["trainer"], "MLflow's setting comes with MLflow"
    assert config["trainer"]["monitor"] == "min val_loss"
    assert config["trainer"]["amp"] == "auto"


def test_ruff_passes_in_baked_project(default_project: Path) -> None:
    result = ruff_check(default_project)
    assert result.returncode == 0, result.stdout + result.stderr


DEFAULTS_SCRIPT = """
import dataclasses, json
from base.base_data_loader import LoaderSettings
from parse_config import Config
from trainer.settings import TrainerSettings

def defaults(cls, prefix):
    return {prefix + f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}

table = {**defaults(Config, ""), **defaults(TrainerSettings, "trainer.")}
table.update(defaults(LoaderSettings, "data_loader.args."))
table.pop("trainer")
print(json.dumps(table))
"""


def test_readme_lists_every_default_the_code_has(default_project: Path) -> None:
    """The config table (docs/config.md) is the documentation of the defaults; it must match the dataclasses."""
    result = subprocess.run(
        [sys.executable, "-c", DEFAULTS_SCRIPT], cwd=default_project, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    readme = (default_project / "docs" / "config.md").read_text(encoding="utf-8")
    missing = [
        f"{key} = {json.dumps(value)}"
        for key, value in json.loads(result.stdout).items()
        if f"| `{key}` | `{json.dumps(value)}` |" not in readme
    ]
    assert not missing, f"docs/config.md's config.json table lacks or contradicts: {missing}"


def imported_top_level_names(project: Path) -> set[str]:
    """The top-level module of every absolute import in the project's Python files."""
    names = set()
    for path in project.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    return names


def test_every_name_the_project_imports_or_holds_is_refused_as_a_slug(all_parts_project: Path) -> None:
    pre_gen = load_module(TEMPLATE_ROOT / "hooks" / "pre_gen_project.py")
    own = {path.stem for path in all_parts_project.iterdir() if path.is_dir() or path.suffix == ".py"}
    names = {name for name in imported_top_level_names(all_parts_project) | own if pre_gen.SLUG_PATTERN.fullmatch(name)}
    unguarded = sorted(name for name in names if pre_gen.slug_problem(name) is None)
    assert not unguarded, f"a project folder named {unguarded} would shadow what the project imports"
