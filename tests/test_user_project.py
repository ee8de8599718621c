"""A project the user has made their own: their model, data loader and config.json. The template's code
around them still works (and the project's own suite, which tests that code, stays green with them:
tests/test_project_suite.py runs it so)."""

import json
import shutil
import textwrap
from pathlib import Path

from helpers import describe, run_folders, run_project

USER_MODEL = '''
"""Our models."""

import torch
from torch import nn

from base.base_model import BaseModel


class MLP(BaseModel):
    def __init__(self, size: int = 12, num_classes: int = 3, hidden: int = 32) -> None:
        super().__init__()
        layers = [nn.Flatten(), nn.Linear(size * size, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
'''

USER_LOADER = '''
"""Our data: three classes of noisy stripes."""

from typing import Any

import torch

from base.base_data_loader import ImageTensors
from base.image_data_loader import ImageDataLoader


class StripesDataLoader(ImageDataLoader):
    mean, std = (0.5,), (0.25,)

    def __init__(self, size: int = 12, **loader_args: Any) -> None:
        super().__init__(**loader_args)
        self.size = size

    def load_split(self, split: str) -> ImageTensors:
        generator = torch.Generator().manual_seed(0 if split == "train" else 1)
        targets = torch.randint(0, 3, (300,), generator=generator)
        images = torch.randint(0, 60, (300, 1, self.size, self.size), generator=generator)
        for label in range(3):
            images[targets == label, :, label * 4 : label * 4 + 4, :] += 180
        return ImageTensors(images.to(torch.uint8), targets)
'''

USER_TRAINER = '''
"""Our training step: the loss plus a small penalty on the outputs."""

from base.base_trainer import BaseTrainer, BatchLoss


class Trainer(BaseTrainer):
    def batch_loss(self, model, batch):
        images, labels = batch
        logits = model(images)
        return BatchLoss(self.criterion(logits, labels) + 1e-4 * logits.pow(2).mean(), logits, labels)
'''


def test_the_users_model_loader_and_config_train_and_evaluate(default_project: Path, tmp_path: Path) -> None:
    """(The project's own suite runs with the user's model and loader in tests/test_project_suite.py.)"""
    project = tmp_path / "ours"
    shutil.copytree(default_project, project, ignore=shutil.ignore_patterns("saved", "__pycache__"))
    (project / "model" / "model.py").write_text(textwrap.dedent(USER_MODEL).lstrip())
    (project / "data_loader" / "data_loaders.py").write_text(textwrap.dedent(USER_LOADER).lstrip())
    (project / "trainer" / "trainer.py").write_text(textwrap.dedent(USER_TRAINER).lstrip())
    config = json.loads((project / "config.json").read_text())
    config["arch"] = {"type": "MLP", "args": {"num_classes": 3}}
    config["data_loader"] = {"type": "StripesDataLoader", "args": {"batch_size": 32, "validation_split": 0.2}}
    config["metrics"] = ["accuracy"]
    config["trainer"].update(epochs=2, save_dir=str(tmp_path / "saved"), loggers=["csv"])
    (project / "config.json").write_text(json.dumps(config, indent=2))

    trained = run_project(project, "train.py", "-c", "config.json", "-d", "cpu")
    assert trained.returncode == 0, describe(trained)
    [run] = run_folders(tmp_path / "saved")
    evaluate = run_project(project, "test.py", "-r", str(run), "-d", "cpu")
    assert evaluate.returncode == 0, describe(evaluate)
    assert json.loads((run / "best.test.json").read_text())["test_accuracy"] > 0.9
