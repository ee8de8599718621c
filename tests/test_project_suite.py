"""The generated project's own test suite tests the template's code, not the user's: it passes for
every dataset answer with no data and no network (tests/test_user_project.py: and after the user
replaces the model, the data loader and config.json)."""

import shutil
import textwrap
from pathlib import Path

import tomllib
from helpers import OPTIONAL_PARTS, describe, run_own_suite, run_project
from test_user_project import USER_LOADER, USER_MODEL, USER_TRAINER

DATASETS = ["mnist_sample", "mnist", "fashion_mnist", "cifar10", "image_folder", "csv_table"]

# What a dataset answer changes in a project, besides data/: the files below, and pyproject.toml's name and
# description. The suite runs with these files removed, which shows that it reads none of them; every other file
# of every answer is byte-identical, so each answer's suite passes as the one that ran.
ANSWER_FILES = ("config.json", "README.md", "docs", "Makefile", ".cookiecutter.json", "data")  # one slug for all
PARTS = {"sweeps": True, "mlflow": True, "wandb": True}


def files_the_suite_may_read(project: Path) -> dict[str, bytes]:
    """Every file of ``project`` but its ANSWER_FILES, by path; of pyproject.toml only its tool settings."""
    files = {}
    for path in sorted(project.rglob("*")):
        relative = path.relative_to(project)
        if path.is_file() and relative.parts[0] not in ANSWER_FILES and "__pycache__" not in relative.parts:
            files[relative.as_posix()] = path.read_bytes()
    files["pyproject.toml"] = repr(tomllib.loads(files["pyproject.toml"].decode())["tool"]).encode()
    return files


def bake_without_answer_files(cookies, **answers: object) -> Path:
    result = cookies.bake(extra_context={**answers, "project_slug": "project"})
    assert result.exit_code == 0, (answers, result.exception)
    project = Path(result.project_path)
    for name in ANSWER_FILES:  # nothing to read, nothing downloaded
        shutil.rmtree(project / name) if (project / name).is_dir() else (project / name).unlink()
    return project


def collected_tests(project: Path) -> list[str]:
    listed = run_project(project, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider")
    assert listed.returncode == 0, describe(listed)
    return [line for line in listed.stdout.splitlines() if "::" in line]


def test_own_suite_passes_for_every_answer_without_data(cookies) -> None:
    """The suite runs once, in the project with every optional part (whose tests hide a part to test its
    absence) and with the model and data loader of a user (tests/test_user_project.py); every dataset answer
    without the parts is that project less the parts' files."""
    with_parts = bake_without_answer_files(cookies, **PARTS)
    plain = {dataset: bake_without_answer_files(cookies, dataset=dataset) for dataset in DATASETS}
    tested, files = files_the_suite_may_read(with_parts), files_the_suite_may_read(plain["mnist_sample"])
    for dataset, project in plain.items():
        assert files_the_suite_may_read(project) == files, f"dataset={dataset} changes more than ANSWER_FILES"
    parts_files = {name for part in OPTIONAL_PARTS.values() for name in {*part.files, f"tests/{part.test_file}"}}
    parts_files = {name for name in parts_files if name.partition("/")[0] not in ANSWER_FILES}
    assert set(tested) - set(files) == parts_files
    changed = [name for name in files if files[name] != tested[name]]
    assert changed == ["Dockerfile"], "the parts change no other file but a comment the suite does not read"
    parts_tests = tuple(f"tests/{part.test_file}::" for part in OPTIONAL_PARTS.values())
    expected = [test for test in collected_tests(with_parts) if not test.startswith(parts_tests)]
    assert collected_tests(plain["mnist_sample"]) == expected, "without the parts, the rest of the suite is there"
    # The suite tests the template's code with its own tiny model, data and trainer: it passes with the user's in
    # place (and without config.json, so with whatever config the user writes).
    (with_parts / "model" / "model.py").write_text(textwrap.dedent(USER_MODEL).lstrip())
    (with_parts / "data_loader" / "data_loaders.py").write_text(textwrap.dedent(USER_LOADER).lstrip())
    (with_parts / "trainer" / "trainer.py").write_text(textwrap.dedent(USER_TRAINER).lstrip())
    run_own_suite(with_parts)
