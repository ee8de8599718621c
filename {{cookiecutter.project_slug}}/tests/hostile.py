"""Helpers for the hostile-use tests (test_kill_points.py, test_resume_contract.py, test_refusals.py,
test_file_modes.py): small configs, running train.py and test.py in this process, snapshots of what is on
disk, a stand-in for ``kill -9`` while a file is saved, and a registry with a few more names than ``TINY``.
"""

import enum
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import test as test_script  # the project's test.py
import train
from tests.tiny import TINY, tiny_config
from tests.tiny.models import TinyConvNet
from utils.checkpoint import run_order
from utils.registry import Registry

# --- configs -------------------------------------------------------------------------------------------


def small_config(save_dir: Path, **trainer_settings: Any) -> dict[str, Any]:
    """The tiny config on fewer samples: 64 training samples (2 batches of 32), 16 for validation, 20 for test."""
    config = tiny_config(save_dir, **trainer_settings)
    config["data_loader"]["args"].update(n_train=80, n_test=20)
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


class Marker(enum.Enum):
    DELETE = "delete"  # a value for set_path: remove the key (an enum member survives copy.deepcopy)


DELETE = Marker.DELETE


def set_path(config: dict[str, Any], dotted: str, value: Any, separator: str = ".") -> None:
    """``config[a][b][c] = value`` for ``a.b.c`` (a missing last key is added; DELETE removes it)."""
    *parents, last = dotted.split(separator)
    node = config
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value


# --- running the entry points ---------------------------------------------------------------------------


@dataclass
class Result:
    code: int
    err: str
    out: str

    def error_line(self) -> str:
        """The one ``error:`` line of a refusal; fails unless there is exactly one and no traceback."""
        assert "Traceback" not in self.err, self.err
        errors = [line for line in self.err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, f"expected exactly one error: line, got {len(errors)}:\n{self.err}"
        return errors[0]

    def only_line(self) -> str:
        """The ``error:`` line of a refusal that prints nothing else (no log line, no warning) on stderr."""
        line = self.error_line()
        assert self.err == line + "\n", f"expected only the error line on stderr, got:\n{self.err}"
        return line


def run_main(capsys: pytest.CaptureFixture[str], main: Callable[..., int], *argv: Any, modules: Registry) -> Result:
    """An entry point's ``main`` run in this process on ``argv`` and ``modules``: its exit code and output."""
    capsys.readouterr()  # start from empty buffers
    code = main([str(arg) for arg in argv], modules=modules)
    captured = capsys.readouterr()
    return Result(code, captured.err, captured.out)


def run_train(capsys: pytest.CaptureFixture[str], *argv: Any, modules: Registry = TINY) -> Result:
    return run_main(capsys, train.main, *argv, modules=modules)


def run_test(capsys: pytest.CaptureFixture[str], *argv: Any, modules: Registry = TINY) -> Result:
    return run_main(capsys, test_script.main, *argv, modules=modules)


def hide_package(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make ``importlib.util.find_spec`` report the package ``name`` as not installed."""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda module, *rest: None if module == name else real_find_spec(module, *rest)
    )


def run_dirs(save_dir: Path, name: str = "tiny") -> list[Path]:
    """The run folders of experiment ``name``, oldest first."""
    experiment = Path(save_dir) / name
    if not experiment.is_dir():
        return []
    return sorted((path for path in experiment.iterdir() if path.is_dir()), key=run_order)


def only_run(save_dir: Path, name: str = "tiny") -> Path:
    runs = run_dirs(save_dir, name)
    assert len(runs) == 1, runs
    return runs[0]


# --- what is on disk ------------------------------------------------------------------------------------


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``roots`` with its size and mtime (folders with (-1, -1), so new ones show up)."""
    state: dict[str, tuple[int, int]] = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_dir():
                state[str(path)] = (-1, -1)
            else:
                stat = path.stat()
                state[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return state


def assert_unchanged(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> None:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(path for path in set(before) & set(after) if before[path] != after[path])
    assert not (added or removed or changed), f"added {added}, removed {removed}, changed {changed}"


def assert_no_lock(save_dir: Path) -> None:
    locks = sorted(Path(save_dir).rglob("run.lock"))
    assert not locks, f"run.lock left behind: {locks}"


def assert_same_weights(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], what: str) -> None:
    assert got.keys() == expected.keys(), what
    different = [key for key, value in expected.items() if not torch.equal(got[key], value)]
    assert not different, f"{what}: tensors differ: {different}"


# --- locks ----------------------------------------------------------------------------------------------


def dead_pid() -> int:
    """The id of a process of this host that has finished (and been reaped)."""
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(process.stdout)


def write_lock(run_dir: Path, pid: int, host: str | None = None) -> Path:
    path = run_dir / "run.lock"
    holder = {"pid": pid, "host": host or socket.gethostname(), "since": "2024-01-02T03:04:05"}
    path.write_text(json.dumps(holder), encoding="utf-8")
    return path


# --- a kill while saving --------------------------------------------------------------------------------


class Killed(BaseException):
    """Stands in for ``kill -9``: a BaseException, so nothing that handles Exceptions can swallow it."""


@contextmanager
def atomic_renames(kill_at: int | None = None, error: BaseException | None = None) -> Iterator[list[Path]]:
    """Record every ``os.replace`` (the rename that ends ``utils.util.atomic_write``). With ``kill_at``, the
    ``kill_at``-th one raises ``error`` instead of renaming, or by default ``Killed``, leaving a copy of the
    temporary file behind as a real kill would (atomic_write removes its own on the way out)."""
    real_replace = os.replace
    targets: list[Path] = []

    def replace(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        targets.append(Path(target))
        if len(targets) == kill_at:
            if error is not None:
                raise error
            os.link(source, f"{source}.killed.tmp")
            raise Killed(f"killed before renaming {Path(target).name} into place")
        real_replace(source, target, *args, **kwargs)

    os.replace = replace  # type: ignore[assignment]
    try:
        yield targets
    finally:
        os.replace = real_replace


# --- a registry with more names than TINY ---------------------------------------------------------------


class InterruptingNet(TinyConvNet):
    """TinyConvNet that sends this process ``signal_number`` (SIGINT unless told otherwise) during its
    ``interrupt_at``-th forward pass in training mode (evaluation and the one-batch check run in eval mode
    and are not counted): a Ctrl-C, or a scheduler's SIGTERM, that arrives part way through an epoch, at a
    step the test chooses. The trainer's handler turns it into a save."""

    interrupt_at: int | None = None
    signal_number: int = signal.SIGINT
    forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and InterruptingNet.interrupt_at is not None:
            InterruptingNet.forwards += 1
            if InterruptingNet.forwards == InterruptingNet.interrupt_at:
                os.kill(os.getpid(), InterruptingNet.signal_number)
        return super().forward(x)


@contextmanager
def interrupt_on_forward(number: int, signal_number: int = signal.SIGINT) -> Iterator[None]:
    """InterruptingNet sends ``signal_number`` on its ``number``-th training forward pass inside the block."""
    InterruptingNet.interrupt_at, InterruptingNet.forwards, InterruptingNet.signal_number = number, 0, signal_number
    try:
        yield
    finally:
        InterruptingNet.interrupt_at, InterruptingNet.forwards, InterruptingNet.signal_number = None, 0, signal.SIGINT


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, target)


def smoothed_cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, target, label_smoothing=0.1)


def per_sample_cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """One loss per sample instead of the batch mean: backward() cannot start from it."""
    return F.cross_entropy(output, target, reduction="none")


def error_count(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A 0-dim integer tensor, which has no gradient."""
    return (output.argmax(dim=1) != target).sum()


def hosted_cross_entropy(output: torch.Tensor, target: torch.Tensor) -> float:
    """A Python number, cut off from the graph."""
    return F.cross_entropy(output, target).item()


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (output.argmax(dim=1) == target).float().mean()


def error_rate(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (output.argmax(dim=1) != target).float().mean()


def hosted_accuracy(output: torch.Tensor, target: torch.Tensor) -> float:
    """The pytorch-template way: a Python number (a host sync per batch), which the Trainer refuses."""
    return (output.argmax(dim=1) == target).float().mean().item()


def correct(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """One value per sample instead of the batch mean."""
    return (output.argmax(dim=1) == target).float()


def top_20_accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fails on a model with fewer than 20 classes."""
    return (output.topk(20, dim=1).indices == target.unsqueeze(1)).any(dim=1).float().mean()


def _namespace(*members: Callable[..., Any] | type, name: str = __name__) -> types.ModuleType:
    """A module holding ``members``, named ``name``: the module that defines them (this one by default), since
    the registry offers only the functions defined in the module it looks at."""
    module = types.ModuleType(name)
    for member in members:
        setattr(module, member.__name__, member)
    return module


# Two losses and two metrics (so that a resume can change them), three broken losses and three broken
# metrics, and a model that interrupts itself.
EXTRA = Registry(
    models=_namespace(TinyConvNet, InterruptingNet),
    data_loaders=TINY.data_loaders,
    losses=_namespace(
        cross_entropy, smoothed_cross_entropy, per_sample_cross_entropy, error_count, hosted_cross_entropy
    ),
    metrics=_namespace(accuracy, error_rate, hosted_accuracy, correct, top_20_accuracy),
    trainers=TINY.trainers,
)


def tracked_config(folder: Path, loggers: list[str], **trainer_settings: Any) -> Path:
    """The small config (2 steps per epoch, 3 epochs) on the self-interrupting model, logging to ``loggers``."""
    config = small_config(folder / "saved", epochs=3, loggers=loggers, **trainer_settings)
    config["arch"]["type"] = "InterruptingNet"
    return write_config(folder / "config.json", config)


def stopped_then_resumed(capsys: pytest.CaptureFixture[str], config_path: Path, save_dir: Path) -> Path:
    """Train, stopped by Ctrl-C at epoch 2's first step, then resume to the end; the run folder."""
    with interrupt_on_forward(3):
        assert run_train(capsys, "-c", config_path, modules=EXTRA).code == 128 + signal.SIGINT
    run_dir = only_run(save_dir)
    assert run_train(capsys, "-r", run_dir, modules=EXTRA).code == 0
    return run_dir
