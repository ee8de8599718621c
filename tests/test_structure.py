"""The generated project's shape: valid Python as templated, one-way imports, short functions."""

import ast
import json
import os
import re
from pathlib import Path

import pytest

TEMPLATE_PROJECT = Path(__file__).resolve().parents[1] / "{{cookiecutter.project_slug}}"
TEMPLATE_OWNED = ("base", "trainer", "utils", "logger", "inference", "sweeps")
USER_OWNED = ("model", "data_loader")
MAX_FUNCTION_LINES = 40


def python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize(
    "path", python_files(TEMPLATE_PROJECT), ids=lambda p: p.relative_to(TEMPLATE_PROJECT).as_posix()
)
def test_every_template_python_file_is_python(path: Path) -> None:
    """Answers reach code through config.json, pyproject.toml and the README, never Jinja in a .py file."""
    ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_template_owned_code_never_imports_user_owned_code() -> None:
    """cruft skips model/ and data_loader/, so template code must not depend on what is in them."""
    offenders = [
        f"{path.relative_to(TEMPLATE_PROJECT)} imports {module}"
        for folder in TEMPLATE_OWNED
        for path in python_files(TEMPLATE_PROJECT / folder)
        for module in imported_modules(path)
        if module.split(".")[0] in USER_OWNED
    ]
    assert not offenders, offenders


def function_lengths(path: Path) -> list[tuple[int, str]]:
    """(lines without the docstring, name) of every function in ``path``."""
    lengths = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = ast.get_docstring(node, clean=False) is not None
            doc_lines = node.body[0].end_lineno - node.body[0].lineno + 1 if docstring else 0
            lengths.append((node.end_lineno - node.lineno + 1 - doc_lines, f"{path.name}:{node.lineno} {node.name}"))
    return lengths


def test_no_function_in_the_project_is_longer_than_40_lines(default_project: Path) -> None:
    code = [p for p in python_files(default_project) if "tests" not in p.relative_to(default_project).parts]
    too_long = [(n, name) for path in code for n, name in function_lengths(path) if n > MAX_FUNCTION_LINES]
    assert not too_long, too_long


def test_every_readme_address_of_the_template_is_its_template_url() -> None:
    """One documented value says where the template lives; the READMEs show no placeholder."""
    template_root = TEMPLATE_PROJECT.parent
    url = json.loads((template_root / "cookiecutter.json").read_text(encoding="utf-8"))["_template_url"]
    assert re.fullmatch(r"gh:[\w.-]+/[\w.-]+", url)
    readme = (template_root / "README.md").read_text(encoding="utf-8")
    addresses = set(re.findall(r"\b(?:gh|gl|bb):[\w.-]+/[\w.-]+", readme))
    assert addresses == {url}, addresses
    assert len(re.findall(r"(?:cookiecutter|cruft create|cruft link -y) " + re.escape(url), readme)) == 3
    generated = (TEMPLATE_PROJECT / "docs" / "updating.md").read_text(encoding="utf-8")
    assert "cruft link -y {{ cookiecutter._template_url }} --checkout" in generated
    assert "<owner>" not in readme + generated and "<this-repo>" not in readme + generated


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    template_root = TEMPLATE_PROJECT.parent
    readme = (template_root / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"```bash\n(.+?)\n```", readme.partition("## Quick start")[2].partition("\n## ")[0])
    assert len(commands) == 2, commands  # set up and train; install and test
    assert commands[1] == ".ci/run", "CI runs .ci/run (tests/test_tooling.py): the README's test command is it"
    assert os.access(template_root / ".ci" / "run", os.X_OK)
