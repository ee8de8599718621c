"""Shared fixtures: the tiny config, trainers built from it, and a clean logging set-up per test."""

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

import train
from base.base_trainer import BaseTrainer
from parse_config import Config
from tests.tiny import TINY, tiny_config
from trainer.build import build_trainer

CPU = torch.device("cpu")


@contextmanager
def root_logging_restored() -> Iterator[None]:
    """Undo what train.main's setup_logging does to the root logger, closing the handlers it added
    (its console handler writes to the stream of the test that called it; its file handler keeps train.log open)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    with root_logging_restored():
        yield


@pytest.fixture(scope="module")
def logging_restored_after_module() -> Iterator[None]:
    """For module-scoped fixtures that run train.main (they are set up before the per-test fixture above)."""
    with root_logging_restored():
        yield


@pytest.fixture
def config(tmp_path: Path) -> dict[str, Any]:
    """The tiny config as a dict, saving under tmp_path/saved; a test may change it freely."""
    return tiny_config(tmp_path / "saved")


@pytest.fixture
def config_file(tmp_path: Path, config: dict[str, Any]) -> Path:
    """The ``config`` fixture written to a file, as ``-c`` takes it."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


@pytest.fixture
def make_trainer() -> Callable[[dict[str, Any]], BaseTrainer]:
    """Build the Trainer a config dict describes, from the tiny registry, on the CPU."""

    def make(config: dict[str, Any]) -> BaseTrainer:
        return build_trainer(Config.from_dict(config), TINY, CPU)

    return make


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, logging_restored_after_module: None) -> Path:
    """A run of the tiny config trained for two epochs by train.main, once per module; its run folder."""
    folder = tmp_path_factory.mktemp("tiny_run")
    config_path = folder / "config.json"
    config_path.write_text(json.dumps(tiny_config(folder / "saved", epochs=2)), encoding="utf-8")
    assert train.main(["-c", str(config_path)], modules=TINY) == 0
    [run_dir] = (folder / "saved" / "tiny").iterdir()
    return run_dir
