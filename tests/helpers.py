"""Helpers for running a baked project's own commands, and what several test files share."""

import importlib.util
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

TEMPLATE_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SLUG = "mnist_classifier"
# What the sweeps answer adds to a project, besides its tests (tests/test_sweep.py).
SWEEP_FILES = {
    "docs/sweeps.md",
    "sweep.py",
    "sweep.json",
    "sweeps/__init__.py",
    "sweeps/space.py",
    "sweeps/study.py",
    "sweeps/trial.py",
    "sweeps/workers.py",
}


def baked(cookies_session, **answers: bool) -> Path:
    """The project baked with ``answers`` and the defaults for the rest; the bake must succeed."""
    result = cookies_session.bake(extra_context=answers)
    assert result.exit_code == 0, result.exception
    return Path(result.project_path)


class Part(NamedTuple):
    """What an optional part's yes adds: files (besides its tests), its test file, and its dependencies."""

    files: set[str]
    test_file: str
    requirements: tuple[str, ...]

    @property
    def package(self) -> str:
        """The main package, the one the README's install line names."""
        return self.requirements[0].partition(">=")[0]


def locked_versions() -> dict[str, str]:
    """Each package of the template's exact lock (requirements-dev.txt), by normalised name."""
    lines = (TEMPLATE_ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines()
    pins = [line.split("#")[0].strip().partition("==") for line in lines if "==" in line.split("#")[0]]
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, _, version in pins}


def locked_range(package: str) -> str:
    """``package>=V``, V being the release the lock pins: a generated project's lower bounds are tested ones."""
    return f"{package}>={locked_versions()[package]}"


OPTIONAL_PARTS = {
    "sweeps": Part(SWEEP_FILES, "test_sweep.py", (locked_range("optuna"),)),
    "mlflow": Part(
        {"logger/mlflow_tracker.py"},
        "test_mlflow.py",
        tuple(locked_range(name) for name in ("mlflow-skinny", "sqlalchemy", "alembic")),
    ),
    "wandb": Part({"logger/wandb_tracker.py"}, "test_wandb.py", (locked_range("wandb"),)),
}
# The MNIST sample's one-cycle schedule is laid out over the run's steps, so a finished run of it
# cannot be extended; tests that extend runs train with a per-epoch schedule instead.
EXTENDABLE = ["--lr", "0.005", "--set", 'lr_scheduler={"type": "StepLR", "args": {"step_size": 2, "gamma": 0.5}}']


def load_module(path: Path) -> ModuleType:
    """Import a Python file that is not in a package (a hook, local_extensions.py) as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_project(
    project: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python <args>`` inside a baked project with this interpreter, one thread, no network needed;
    ``env`` adds to the environment."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_folders(save_dir: Path, name: str = DEFAULT_SLUG) -> list[Path]:
    experiment = save_dir / name
    return sorted(p for p in experiment.iterdir() if p.is_dir()) if experiment.is_dir() else []


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """What a failed command printed, for assertion messages."""
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"


def start_project(project: Path, *args: str, own_group: bool = False) -> subprocess.Popen[str]:
    """Start ``python <args>`` in a baked project without waiting; stderr goes to a pipe. ``own_group``: in a
    process group of its own (its pid is the group's), to be signalled as a scheduler signals a job."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, *args], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=own_group,
    )  # fmt: skip


def wait_for(predicate: Callable[[], bool], timeout: float = 120, what: str = "condition") -> None:
    """Poll ``predicate()`` every 50 ms until it is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def wait_for_line(process: subprocess.Popen[str], text: str) -> None:
    """Read the process's stderr until a line contains ``text``, with no pause between lines, so
    the reader does not fall behind a fast training loop."""
    assert process.stderr is not None
    for line in process.stderr:
        if text in line:
            return
    raise AssertionError(f"the process ended (exit {process.wait()}) without printing {text!r}")


def own_suite_problem(project: Path) -> str | None:
    """What is wrong with a run of the project's own suite, or None when it passed with nothing skipped."""
    # Its own --basetemp: suites side by side would otherwise share /tmp/pytest-of-<user> and its clean-up.
    basetemp = project.parent / f"{project.name}-pytest-tmp"
    result = run_project(project, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={basetemp}")
    if result.returncode != 0:
        return describe(result)
    if " passed" not in result.stdout or " skipped" in result.stdout:
        return result.stdout[-500:]
    return None


def run_own_suite(project: Path) -> None:
    problem = own_suite_problem(project)
    assert problem is None, problem
