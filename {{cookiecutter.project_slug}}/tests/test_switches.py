"""The speed and precision switches in config.json's trainer section do what they say."""

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from base.base_trainer import BaseTrainer
from tests.hostile import run_dirs, run_train, small_config, write_config
from tests.tiny import tiny_config
from trainer.checkpoint import Checkpointer
from trainer.settings import TrainerSettings
from utils.checkpoint import load_checkpoint

CPU = torch.device("cpu")
MakeTrainer = Callable[[dict[str, Any]], BaseTrainer]


def plain_config(tmp_path: Path, **trainer_settings: Any) -> dict[str, Any]:
    """One epoch of 8 batches (240 samples, 32 a batch), no validation, no augmentation."""
    config = tiny_config(tmp_path / "saved", monitor="off", **trainer_settings)
    config["data_loader"]["args"].update(validation_split=0, augment=False)
    return config


def train_one_epoch(trainer: BaseTrainer, run_dir: Path) -> dict[str, Any]:
    trainer.fit(Checkpointer(run_dir, save_period=100, keep_last=0), [])
    return load_checkpoint(run_dir / "last.pth")


@pytest.mark.parametrize(("grad_accum_steps", "optimizer_steps"), [(1, 8), (3, 3), (8, 1)])
def test_gradient_accumulation_steps_once_per_group(
    make_trainer: MakeTrainer, tmp_path: Path, grad_accum_steps: int, optimizer_steps: int
) -> None:
    trainer = make_trainer(plain_config(tmp_path, grad_accum_steps=grad_accum_steps))
    assert len(trainer.train_loader) == 8
    state = train_one_epoch(trainer, tmp_path)
    adam_steps = {int(param_state["step"]) for param_state in state["optimizer"]["state"].values()}
    assert adam_steps == {optimizer_steps}  # the last, shorter group (batches 7 and 8 of 3) steps too


def test_a_group_shorter_than_grad_accum_steps_steps_with_its_mean_gradient(
    make_trainer: MakeTrainer, tmp_path: Path
) -> None:
    """The epoch's 8 batches form one group whether the setting is 8 or 16: the same mean gradient, the same
    SGD step (the loss was divided by the setting, 16, and so the step halved)."""
    models = []
    for grad_accum_steps in (8, 16):
        run_dir = tmp_path / str(grad_accum_steps)
        run_dir.mkdir()
        config = plain_config(run_dir, grad_accum_steps=grad_accum_steps)
        config["optimizer"] = {"type": "SGD", "args": {"lr": 0.5}}
        models.append(train_one_epoch(make_trainer(config), run_dir)["model"])
    for key, value in models[0].items():
        torch.testing.assert_close(models[1][key], value, rtol=0, atol=1e-6, msg=key)


@pytest.mark.parametrize(("grad_accum_steps", "group_sizes"), [(3, [3, 3, 2]), (5, [5, 3]), (16, [8])])
def test_each_group_steps_with_the_mean_gradient_of_its_own_batches(
    make_trainer: MakeTrainer, tmp_path: Path, grad_accum_steps: int, group_sizes: list[int]
) -> None:
    """An epoch of 8 batches, worked out by hand: one plain SGD step per group along the mean of its batches'
    gradients. A short last group after full ones (3, 3, 2) divides its losses by its own size, not the setting."""
    lr = 0.5
    config = plain_config(tmp_path, grad_accum_steps=grad_accum_steps)
    config["optimizer"] = {"type": "SGD", "args": {"lr": lr}}  # no momentum: each step is -lr * gradient
    trainer = make_trainer(config)
    by_hand = copy.deepcopy(trainer.model)
    trainer.train_loader.set_epoch(1)  # the order depends only on the seed and the epoch
    batches = list(trainer.train_loader)
    assert [len(batch[1]) for batch in batches] == [32] * 7 + [16] and sum(group_sizes) == len(batches)
    by_hand.train()
    first = 0
    for size in group_sizes:
        by_hand.zero_grad(set_to_none=True)
        group = batches[first : first + size]
        mean_loss = sum(nn.functional.cross_entropy(by_hand(images), targets) for images, targets in group) / size
        mean_loss.backward()
        with torch.no_grad():
            for param in by_hand.parameters():
                param -= lr * param.grad
        first += size
    trained = train_one_epoch(trainer, tmp_path)["model"]
    expected = by_hand.state_dict()  # BatchNorm's running statistics too: the same forward passes
    torch.testing.assert_close(dict(trained), dict(expected), rtol=0, atol=1e-6)  # the message names the key


@pytest.mark.parametrize("amp", ["off", "fp16"])
def test_gradient_clipping_bounds_each_update(make_trainer: MakeTrainer, tmp_path: Path, amp: str) -> None:
    config = plain_config(tmp_path, grad_clip_norm=1e-3, amp=amp)
    config["optimizer"] = {"type": "SGD", "args": {"lr": 1.0}}
    trainer = make_trainer(config)
    trainer.train_loader.set_epoch(1)
    images, targets = next(iter(trainer.train_loader))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train_step((images, targets), at_boundary=True)
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(trainer.model.parameters(), before, strict=True)])
    # SGD with lr 1 moves by the clipped gradient: by the clip norm, since the gradient is larger.
    # With fp16 the clipping must see the true gradient, not the loss-scaled one.
    assert moved.norm().item() == pytest.approx(1e-3, rel=1e-3)


@pytest.mark.parametrize("channels_last", [False, True])
def test_channels_last_converts_the_model_and_trains(
    make_trainer: MakeTrainer, tmp_path: Path, channels_last: bool
) -> None:
    trainer = make_trainer(plain_config(tmp_path, channels_last=channels_last))
    second_conv = trainer.model.features[3].weight  # the first has one input channel: contiguous either way
    assert second_conv.is_contiguous(memory_format=torch.channels_last) is channels_last
    assert math.isfinite(train_one_epoch(trainer, tmp_path)["metrics"]["loss"])


def test_compile_wraps_the_forward_pass_but_checkpoints_the_plain_model(
    make_trainer: MakeTrainer, tmp_path: Path
) -> None:
    plain = make_trainer(plain_config(tmp_path))
    assert plain.train_model is plain.model and plain.eval_model is plain.model
    trainer = make_trainer(plain_config(tmp_path, compile="reduce-overhead"))
    assert isinstance(trainer.train_model, torch._dynamo.eval_frame.OptimizedModule)
    assert trainer.train_model._orig_mod is trainer.model and trainer.eval_model is trainer.train_model
    keys = trainer.state_dict(0, {})["model"].keys()
    assert keys == plain.state_dict(0, {})["model"].keys()
    assert not any(key.startswith("_orig_mod") for key in keys)


@pytest.mark.parametrize(("amp", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_mixed_precision_trains_and_checkpoints_its_scaler(
    make_trainer: MakeTrainer, tmp_path: Path, amp: str, dtype: torch.dtype
) -> None:
    trainer = make_trainer(plain_config(tmp_path, amp=amp))
    scaled = dtype == torch.float16
    assert trainer.amp_dtype == dtype
    assert trainer.grad_scaler.is_enabled() is scaled, "fp16 needs loss scaling; bf16 has fp32's range"
    state = train_one_epoch(trainer, tmp_path)
    assert math.isfinite(state["metrics"]["loss"])
    assert bool(state["grad_scaler"]) is scaled  # a disabled scaler saves an empty state


@pytest.mark.parametrize(("amp", "dtype"), [("auto", None), ("off", None), ("bf16", torch.bfloat16)])
def test_amp_on_the_cpu_is_off_unless_asked_for(amp: str, dtype: torch.dtype | None) -> None:
    assert TrainerSettings(amp=amp).amp_dtype(CPU) == dtype


def test_a_failing_compiler_is_one_line_and_leaves_no_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.compile compiles at the first training step, after the run folder exists: without a C++ compiler
    (inductor needs one on the CPU) the run is one line and its folder goes."""
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config.cpp, "cxx", (None, str(tmp_path / "no-such-compiler")))
    torch._dynamo.reset()  # nothing compiled earlier in this process is reused
    config_path = write_config(tmp_path / "config.json", small_config(tmp_path / "saved", compile="default"))
    result = run_train(capsys, "-c", config_path)
    assert result.code == 2, result.err
    line = result.error_line()
    assert line.startswith('error: trainer.compile: torch.compile ("default") failed: InvalidCxxCompiler'), line
    assert line.endswith('set trainer.compile to "off" to train without it'), line
    assert run_dirs(tmp_path / "saved") == [], "the run folder was left behind"


@pytest.mark.parametrize(("amp", "warned"), [("fp16", True), ("bf16", False), ("off", False)])
def test_fp16_on_the_cpu_is_trained_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], amp: str, warned: bool
) -> None:
    config_path = write_config(tmp_path / "config.json", small_config(tmp_path / "saved", amp=amp, epochs=1))
    result = run_train(capsys, "-c", config_path, "-d", "cpu")
    assert result.code == 0, result.err
    said = 'trainer.amp: fp16 on the CPU is many times slower than full precision; use "bf16" or "off"'
    assert (said in result.err) is warned, result.err
