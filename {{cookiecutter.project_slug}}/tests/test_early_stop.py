"""BaseTrainer's bookkeeping, driven by scripted validation losses instead of real training."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from base.base_trainer import BaseTrainer
from parse_config import ConfigParser

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class ScriptedTrainer(BaseTrainer):
    """Reports ``val_losses[epoch - 1]`` as the validation loss of each epoch."""

    def __init__(self, val_losses: list[float], **trainer_settings: object) -> None:
        config = json.loads((PROJECT_ROOT / "config.json").read_text())
        config["lr_scheduler"] = None
        config["trainer"].update({"epochs": len(val_losses), "monitor": "min val_loss", **trainer_settings})
        if "tensorboard" in config["trainer"]:  # a key only where the project was generated with TensorBoard
            config["trainer"]["tensorboard"] = False
        model = nn.Linear(2, 1)
        super().__init__(model, torch.optim.SGD(model.parameters(), lr=0.1), ConfigParser(config))
        self.val_losses = val_losses
        self.epochs_run: list[int] = []

    def metric_names(self) -> list[str]:
        return ["loss", "val_loss"]

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.epochs_run.append(epoch)
        return {"loss": 1.0, "val_loss": self.val_losses[epoch - 1]}


def saved_epoch(path: Path) -> int:
    return torch.load(path, weights_only=True)["epoch"]


@pytest.mark.parametrize(
    ("val_losses", "early_stop", "epochs_run", "best_epoch"),
    [
        ([1.0, 0.8, 0.9, 0.85, 0.7, 0.6], 2, [1, 2, 3, 4], 2),
        ([1.0, 1.1, 0.9, 1.0, 1.0, 0.5], 2, [1, 2, 3, 4, 5], 3),
        ([1.0, 1.1, 1.2, 1.3], 0, [1, 2, 3, 4], 1),
    ],
    ids=["stops-after-2-flat-epochs", "improvement-resets-counter", "zero-turns-it-off"],
)
def test_early_stop_counts_exactly(
    tmp_path: Path, val_losses: list[float], early_stop: int, epochs_run: list[int], best_epoch: int
) -> None:
    trainer = ScriptedTrainer(val_losses, early_stop=early_stop, save_period=100)
    trainer.train(tmp_path)
    assert trainer.epochs_run == epochs_run
    assert saved_epoch(tmp_path / "last.pth") == epochs_run[-1], "the final state is always saved"
    assert saved_epoch(tmp_path / "best.pth") == best_epoch, "best.pth does not wait for save_period"
    assert not list(tmp_path.glob("epoch-*.pth"))


def test_periodic_checkpoints_follow_save_period(tmp_path: Path) -> None:
    ScriptedTrainer([1.0, 0.9, 0.8, 0.7, 0.6], early_stop=0, save_period=2).train(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("epoch-*.pth")) == ["epoch-2.pth", "epoch-4.pth"]


def test_resume_restores_best_and_counter(tmp_path: Path) -> None:
    first = ScriptedTrainer([1.0, 0.8, 0.9], early_stop=3)
    first.train(tmp_path)
    state = torch.load(tmp_path / "last.pth", weights_only=True)
    resumed = ScriptedTrainer([1.0, 0.8, 0.9, 0.95, 0.99, 0.5], early_stop=3)
    resumed.load_state_dict(state, tmp_path / "last.pth")
    assert (resumed.start_epoch, resumed.best, resumed.not_improved_count) == (4, 0.8, 1)
    resumed.train(tmp_path)
    assert resumed.epochs_run == [4, 5], "two more flat epochs reach early_stop=3"


def test_keep_last_prunes_old_periodic_checkpoints(tmp_path: Path) -> None:
    ScriptedTrainer([1.0, 0.9, 0.8, 0.7, 0.6], early_stop=0, save_period=1, keep_last=2).train(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("epoch-*.pth")) == ["epoch-4.pth", "epoch-5.pth"]
    assert saved_epoch(tmp_path / "best.pth") == 5 and saved_epoch(tmp_path / "last.pth") == 5


def test_train_again_with_more_epochs_continues(tmp_path: Path) -> None:
    trainer = ScriptedTrainer([1.0, 0.9, 0.8, 0.7], early_stop=0)
    trainer.epochs = 2
    trainer.train(tmp_path)
    trainer.epochs = 4
    trainer.train(tmp_path)
    assert trainer.epochs_run == [1, 2, 3, 4]
    assert saved_epoch(tmp_path / "last.pth") == 4
