"""Every supported answer combination bakes right; every refused answer is refused cleanly."""

import ast
import importlib.metadata
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import torch
from cookiecutter.exceptions import FailedHookException
from helpers import OPTIONAL_PARTS, describe, locked_range, run_folders, run_project
from test_bake import PROJECT_FILES, project_files, ruff_check, unrendered_lines

DATASET_LOADERS = {
    "mnist_sample": "MnistSampleDataLoader",
    "mnist": "MnistDataLoader",
    "fashion_mnist": "FashionMnistDataLoader",
    "cifar10": "Cifar10DataLoader",
    "image_folder": "ImageFolderDataLoader",
    "csv_table": "CsvTableDataLoader",
}
ACCELERATORS = ["auto", "cpu", "cuda"]
SUPPORTED = [
    {"dataset": dataset, "accelerator": accelerator, "tensorboard": tensorboard}
    for dataset, accelerator, tensorboard in itertools.product(DATASET_LOADERS, ACCELERATORS, [True, False])
]
# What the accelerator answer must put in config.json: device, amp, pin_memory.
ACCELERATOR_CONFIG = {"auto": ("auto", "auto", True), "cpu": ("cpu", "off", False), "cuda": ("cuda", "auto", True)}


def answers_id(answers: dict) -> str:
    return f"{answers['dataset']}-{answers['accelerator']}-{'tb' if answers['tensorboard'] else 'notb'}"


@pytest.mark.parametrize("answers", SUPPORTED, ids=[answers_id(a) for a in SUPPORTED])
def test_supported_answers_bake_a_consistent_project(cookies, answers: dict) -> None:
    result = cookies.bake(extra_context=answers)
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)

    table_page = {"docs/csv-table.md"} if answers["dataset"] == "csv_table" else set()
    assert project_files(project) == PROJECT_FILES | table_page
    assert not unrendered_lines(project)
    lint = ruff_check(project)
    assert lint.returncode == 0, lint.stdout

    config = json.loads((project / "config.json").read_text())
    device, amp, pin_memory = ACCELERATOR_CONFIG[answers["accelerator"]]
    assert config["device"] == device
    assert config["trainer"]["amp"] == amp
    assert config["data_loader"]["args"]["pin_memory"] is pin_memory
    on_gpu = answers["accelerator"] == "cuda"
    assert config["trainer"]["compile"] == ("default" if on_gpu else "off"), "compile stays off on CPU"
    assert config["optimizer"]["args"]["fused"] is (True if on_gpu else None), "None: Adam's own default"
    assert config["data_loader"]["args"]["prefetch_factor"] == (4 if on_gpu else 2)
    in_memory = answers["dataset"] in {"mnist_sample", "csv_table"}
    assert (config["data_loader"]["args"]["num_workers"] == 0) is in_memory
    assert config["data_loader"]["type"] == DATASET_LOADERS[answers["dataset"]]
    if answers["dataset"] == "csv_table":  # no images: no image-only keys
        assert config["arch"] == {"type": "MLP", "args": {"in_features": 4, "out_features": 3, "hidden": 32,
                                                          "layers": 2, "dropout": 0}}  # fmt: skip
        assert "channels_last" not in config["trainer"] and config["metrics"] == ["accuracy"]
    else:
        assert config["arch"]["args"]["in_channels"] == (3 if answers["dataset"] in {"cifar10", "image_folder"} else 1)
        assert config["trainer"]["channels_last"] is on_gpu
    assert ("tensorboard" in config["trainer"]["loggers"]) is answers["tensorboard"]
    dependencies = tomllib.loads((project / "pyproject.toml").read_text())["project"]["dependencies"]
    assert (locked_range("tensorboard") in dependencies) is answers["tensorboard"]
    readme = (project / "README.md").read_text()
    assert ("whl/cpu" in readme) is (answers["accelerator"] != "cuda"), "CPU wheels are offered unless cuda"
    assert ("whl/cu128" in readme) is (answers["accelerator"] == "cuda")
    assert (project / "data" / "mnist_sample.npz").is_file(), "the sample ships with every project"


# Every combination of the optional parts' answers (with the other answers at their defaults).
PART_ANSWERS = [dict(zip(OPTIONAL_PARTS, wanted, strict=True)) for wanted in itertools.product([False, True], repeat=3)]


def parts_id(answers: dict) -> str:
    return "-".join(name for name, wanted in answers.items() if wanted) or "none"


@pytest.mark.parametrize("answers", PART_ANSWERS, ids=[parts_id(a) for a in PART_ANSWERS])
def test_each_optional_part_comes_whole_or_not_at_all(cookies, answers: dict) -> None:
    result = cookies.bake(extra_context=answers)
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    wanted = [name for name, yes in answers.items() if yes]
    assert project_files(project) == PROJECT_FILES.union(*(OPTIONAL_PARTS[name].files for name in wanted))
    tests = {path.name for path in (project / "tests").glob("test_*.py")}
    dependencies = tomllib.loads((project / "pyproject.toml").read_text())["project"]["dependencies"]
    readme_lines = (project / "README.md").read_text().splitlines()
    install_line = next(line for line in readme_lines if "pip install -e" in line)
    for name, part in OPTIONAL_PARTS.items():
        assert (part.test_file in tests) is answers[name], part.test_file
        assert all((requirement in dependencies) is answers[name] for requirement in part.requirements), name
        assert (part.package in install_line) is answers[name], install_line
    trainer = json.loads((project / "config.json").read_text())["trainer"]
    assert trainer["loggers"] == ["csv", "tensorboard", *(name for name in ("mlflow", "wandb") if answers[name])]
    assert ("tracking_uri" in trainer) is answers["mlflow"]
    assert ("\nsweep:" in (project / "Makefile").read_text()) is answers["sweeps"]
    assert not unrendered_lines(project)
    lint = ruff_check(project)
    assert lint.returncode == 0, lint.stdout


UNSUPPORTED = [
    ({"project_slug": "my-project"}, "'my_project'"),
    ({"project_slug": "My Project"}, "lowercase Python identifier"),
    ({"project_slug": "2fast"}, "'my_2fast'"),
    ({"project_slug": "naïve"}, "lowercase Python identifier"),
    ({"project_slug": "class"}, "keyword"),
    ({"project_slug": "torch"}, "would shadow the module 'torch'"),
    ({"project_slug": "test"}, "would shadow the module 'test'"),
    ({"project_slug": "logging"}, "would shadow the module 'logging'"),
    ({"author": "  "}, "author is empty"),
    # Slugs that would not name one fresh folder: cookiecutter creates the folder before the hook runs.
    ({"project_slug": ""}, "project_slug '' is not"),
    ({"project_slug": "."}, "project_slug '.' is not"),
    ({"project_slug": ".."}, "project_slug '..' is not"),
    ({"project_slug": "a/b"}, "project_slug 'a/b' is not"),
    ({"project_slug": "a" * 300}, "300 characters long"),
    ({"project_name": "😀"}, "project_slug '' is not"),  # the slug derived from it is empty
    ({"description": "undecodable \udcff byte"}, "description contains lone surrogates"),
    ({"author": "Ada\nLovelace"}, "author must be one line"),
]


def refusal_id(answers: dict) -> str:
    [(key, value)] = answers.items()
    return f"{key}={ascii(value)[1:-1][:24]}"


@pytest.mark.parametrize(("answers", "message"), UNSUPPORTED, ids=[refusal_id(a) for a, _ in UNSUPPORTED])
def test_refused_answers_leave_nothing_behind(cookies, capfd, tmp_path: Path, answers: dict, message: str) -> None:
    result = cookies.bake(extra_context=answers)
    assert result.exit_code != 0
    assert isinstance(result.exception, FailedHookException)
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], errors
    output_dir = tmp_path / "cookies" / "bake00"  # where pytest-cookies points this bake
    assert output_dir.is_dir(), "the bake ran in an unexpected folder"
    assert not any(output_dir.iterdir()), f"a refused bake left {list(output_dir.iterdir())}"


# Free text that breaks naive quoting: quotes, backslashes (also before a u, as in a JSON escape), braces,
# tabs, DEL, a byte-order mark and characters outside the Basic Multilingual Plane (emoji, a ZWJ
# sequence, a flag, math letters, CJK extension B, the last code point), which JSON writes as a
# surrogate pair that TOML forbids.
AWKWARD_LINE = (
    "Quote \" apostrophe ' triple \"\"\" ''' backslash \\ \\u0041 \\ud83d brace {x} — Ünïcødé 数字 tab\tdel\x7f "
    "bom\ufeff emoji 😀 👩\u200d🔬 🇺🇳 astral 𝔘𝔫𝔦 𠀀 \U0010ffff"
)
AWKWARD = AWKWARD_LINE + "\nsecond line\u2028third\x85fourth"  # only the project name may span lines


def test_free_text_is_treated_as_data(cookies, tmp_path: Path) -> None:
    answers = {"project_name": AWKWARD, "author": AWKWARD_LINE, "description": AWKWARD_LINE, "project_slug": "awkward"}
    result = cookies.bake(extra_context=answers)
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert pyproject["description"] == AWKWARD_LINE
    assert pyproject["authors"] == [{"name": AWKWARD_LINE}]
    recorded = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert {key: recorded[key] for key in answers} == answers, "the hooks read the answers back exactly"
    json.loads((project / "config.json").read_text(encoding="utf-8"))
    assert (project / "README.md").read_text(encoding="utf-8").startswith(f"# {AWKWARD}\n")
    for source in project.rglob("*.py"):
        ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    assert ruff_check(project).returncode == 0
    # What `pip install -e .` does first, offline: setuptools reads pyproject.toml into package metadata.
    metadata_dir = tmp_path / "metadata"
    metadata_dir.mkdir()
    build = f"from setuptools import build_meta; build_meta.prepare_metadata_for_build_editable({str(metadata_dir)!r})"
    built = subprocess.run([sys.executable, "-c", build], cwd=project, capture_output=True, text=True, check=False)
    assert built.returncode == 0, describe(built)
    [dist_info] = metadata_dir.glob("*.dist-info")
    metadata = importlib.metadata.PathDistribution(dist_info).metadata
    assert (metadata["Summary"], metadata["Author"]) == (AWKWARD_LINE, AWKWARD_LINE)
    assert locked_range("torch") in metadata.get_all("Requires-Dist")


def test_answers_are_rendered_as_jinja(cookies) -> None:
    """cookiecutter renders answers as Jinja before the hooks see them, as docs/template.md warns."""
    answers = {"project_name": "{{ 7*7 }} digits", "description": "{{ 7*7 }}", "project_slug": "jinja_answers"}
    result = cookies.bake(extra_context=answers)
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    assert (project / "README.md").read_text(encoding="utf-8").startswith("# 49 digits\n")
    assert tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]["description"] == "49"


def short_run(project: Path, save_dir: Path, *extra: str):
    return run_project(
        project, "train.py", "--set", "trainer.epochs=1", "--set", "data_loader.args.validation_split=500",
        "--set", f"trainer.save_dir={json.dumps(str(save_dir))}", *extra,
    )  # fmt: skip


@pytest.mark.parametrize("accelerator", ["cpu", "auto"])
def test_cpu_and_auto_projects_train_here(cookies, tmp_path: Path, accelerator: str) -> None:
    result = cookies.bake(extra_context={"accelerator": accelerator, "tensorboard": False})
    project = Path(result.project_path)
    run = short_run(project, tmp_path)
    assert run.returncode == 0, describe(run)
    expected_device = "cuda" if accelerator == "auto" and torch.cuda.is_available() else "cpu"
    assert f"Device: {expected_device}" in run.stderr
    [folder] = run_folders(tmp_path)
    assert torch.load(folder / "last.pth", weights_only=True)["epoch"] == 1


@pytest.fixture
def cuda_project(cookies) -> Path:
    return Path(cookies.bake(extra_context={"accelerator": "cuda"}).project_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown on machines without a GPU")
def test_cuda_project_without_gpu_says_how_to_fix_it(cuda_project: Path, tmp_path: Path) -> None:
    run = short_run(cuda_project, tmp_path / "saved")
    assert run.returncode == 2, describe(run)
    assert run.stderr.strip().startswith("error: device: 'cuda' asked for")
    assert "--device cpu" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "saved").exists()


def test_cuda_defaults_also_run_on_the_cpu(cuda_project: Path, tmp_path: Path) -> None:
    """torch.compile, channels_last and fused Adam, the cuda answer's speed defaults, on CI's CPU."""
    config = json.loads((cuda_project / "config.json").read_text(encoding="utf-8"))
    speed = (config["trainer"]["compile"], config["trainer"]["channels_last"], config["optimizer"]["args"]["fused"])
    assert speed == ("default", True, True)
    run = short_run(cuda_project, tmp_path, "-d", "cpu")
    assert run.returncode == 0, describe(run)
    [folder] = run_folders(tmp_path)
    weights = torch.load(folder / "best.pth", weights_only=True)["model"]
    assert not any(key.startswith("_orig_mod.") for key in weights), "checkpoints hold the plain model's keys"
    evaluate = run_project(cuda_project, "test.py", "-r", str(folder), "-d", "cpu")
    assert evaluate.returncode == 0, describe(evaluate)
    assert json.loads((folder / "best.test.json").read_text())["test_accuracy"] > 0.3  # chance is 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; CI has none")
def test_cuda_project_trains_on_gpu_with_amp(cuda_project: Path, tmp_path: Path) -> None:
    run = short_run(cuda_project, tmp_path)
    assert run.returncode == 0, describe(run)
    assert "Device: cuda" in run.stderr and "mixed precision: off" not in run.stderr
    [folder] = run_folders(tmp_path)
    evaluate = run_project(cuda_project, "test.py", "-r", str(folder))
    assert evaluate.returncode == 0, describe(evaluate)


@pytest.mark.parametrize(
    ("dataset", "folder", "description"),
    [
        ("mnist_sample", "mnist_classifier", "Classify handwritten digits with PyTorch."),
        ("cifar10", "cifar_10_classifier", "Classify small colour photos with PyTorch."),
        ("image_folder", "image_classifier", "Classify your own images with PyTorch."),
        ("csv_table", "table_model", "Learn from a table of numbers with PyTorch."),
    ],
)
def test_default_name_and_description_follow_the_dataset(cookies, dataset: str, folder: str, description: str) -> None:
    result = cookies.bake(extra_context={"dataset": dataset})
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    assert project.name == folder
    metadata = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert metadata["description"] == description
