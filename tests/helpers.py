"""Helpers for running a baked project's own commands."""

import os
import subprocess
import sys
from pathlib import Path

DEFAULT_SLUG = "mnist_classifier"


def run_project(project: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python <args>`` inside a baked project with this interpreter, one thread, no network needed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
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
