"""The speed switches in config.json's trainer section do what they say."""

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from parse_config import ConfigParser
from train import build_trainer
from trainer.trainer import Trainer

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def small_config(**trainer_settings: Any) -> ConfigParser:
    config = json.loads((PROJECT_ROOT / "config.json").read_text())
    config.update(device="cpu", lr_scheduler=None, metrics=["accuracy"])
    config["arch"] = {"type": "ConvNet", "args": {"in_channels": 1, "num_classes": 10, "width": 4}}
    config["data_loader"] = {
        "type": "MnistSampleDataLoader",
        "args": {"data_dir": str(PROJECT_ROOT / "data"), "batch_size": 64, "validation_split": 0, "augment": False},
    }
    config["trainer"].update({"epochs": 1, "monitor": "off", "verbosity": 0, **trainer_settings})
    if "tensorboard" in config["trainer"]:  # a key only where the project was generated with TensorBoard
        config["trainer"]["tensorboard"] = False
    return ConfigParser(config)


def train_one_epoch(trainer: Trainer, run_dir: Path) -> dict[str, Any]:
    trainer.train(run_dir)
    return torch.load(run_dir / "last.pth", weights_only=True)


def test_gradient_accumulation_steps_once_per_group(tmp_path: Path) -> None:
    trainer = build_trainer(small_config(grad_accum_steps=2), CPU)
    batches = len(trainer.data_loader)
    state = train_one_epoch(trainer, tmp_path)
    adam_steps = {int(param_state["step"]) for param_state in state["optimizer"]["state"].values()}
    assert adam_steps == {math.ceil(batches / 2)}


def test_gradient_clipping_bounds_each_update(tmp_path: Path) -> None:
    config = small_config(grad_clip_norm=1e-6)
    config.config["optimizer"] = {"type": "SGD", "args": {"lr": 1.0}}
    trainer = build_trainer(config, CPU)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    train_one_epoch(trainer, tmp_path)
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(trainer.model.parameters(), before, strict=True)])
    # SGD with lr 1 moves by the clipped gradient: at most 1e-6 per step.
    assert 0 < moved.norm() <= 1e-6 * len(trainer.data_loader) * 1.01


def test_channels_last_converts_the_model_and_trains(tmp_path: Path) -> None:
    trainer = build_trainer(small_config(channels_last=True), CPU)
    first_conv = trainer.model.features[0][0].weight
    assert first_conv.is_contiguous(memory_format=torch.channels_last)
    assert math.isfinite(train_one_epoch(trainer, tmp_path)["log"]["loss"])


def test_compile_wraps_the_forward_pass_but_checkpoints_the_plain_model() -> None:
    trainer = build_trainer(small_config(compile="reduce-overhead"), CPU)
    assert trainer.forward_model is not trainer.model
    assert isinstance(trainer.forward_model, torch._dynamo.eval_frame.OptimizedModule)
    assert not any(key.startswith("_orig_mod") for key in trainer.state_dict(0, {})["model"])


@pytest.mark.parametrize(("amp", "scaled"), [("bf16", False), ("fp16", True)])
def test_mixed_precision_trains_and_checkpoints_its_scaler(tmp_path: Path, amp: str, scaled: bool) -> None:
    trainer = build_trainer(small_config(amp=amp), CPU)
    assert trainer.grad_scaler.is_enabled() is scaled, "fp16 needs loss scaling; bf16 has fp32's range"
    state = train_one_epoch(trainer, tmp_path)
    assert math.isfinite(state["log"]["loss"])
    assert bool(state["grad_scaler"]) is scaled  # a disabled scaler saves an empty state
