"""The config layer: --set parsing and applying, validation, the monitor, building by name, run folders."""

import json
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import torch

import model.model as module_arch
import parse_config
from parse_config import (
    ConfigError,
    ConfigParser,
    Monitor,
    apply_override,
    create_run_dir,
    parse_override,
    validate_config,
)

DELETE = object()  # marks a key to remove in the table of broken configs


def set_path(config: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("optimizer.args.lr=0.01", 0.01),
        ("trainer.epochs=3", 3),
        ("trainer.tensorboard=true", True),
        ("lr_scheduler=null", None),
        ('metrics=["accuracy", "top_3_accuracy"]', ["accuracy", "top_3_accuracy"]),
        ('name="two words"', "two words"),
        # Text that cannot start a JSON value is a string, so these need no inner quotes.
        ("device=cuda:1", "cuda:1"),
        ("optimizer.type=SGD", "SGD"),
        ("trainer.monitor=max val_accuracy", "max val_accuracy"),
        ("data_loader.args.data_dir=data/", "data/"),
        ("trainer.save_dir=/tmp/runs", "/tmp/runs"),
        (" trainer.epochs = 4 ", 4),
    ],
)
def test_parse_override_reads_json_and_bare_words(text: str, expected: Any) -> None:
    path, value = parse_override(text)
    assert path == text.partition("=")[0].strip()
    assert value == expected
    assert type(value) is type(expected)  # 3 stays an int, true stays a bool


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("trainer.save_period=0.0.1", "trainer.save_period"),
        ("metrics=[1,", "metrics"),
        ('name="unterminated', "name"),
        ("trainer.epochs=", "trainer.epochs"),
        ("trainer.epochs", "trainer.epochs"),
        ("=3", "=3"),
    ],
)
def test_parse_override_rejects_what_it_cannot_read(text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        parse_override(text)


def test_apply_override_sets_nested_keys_and_list_items(config: dict[str, Any]) -> None:
    apply_override(config, "optimizer.args.lr", 0.5)
    apply_override(config, "metrics.1", "accuracy")
    apply_override(config, "optimizer.args.momentum", 0.9)  # a new constructor argument is allowed
    assert config["optimizer"]["args"]["lr"] == 0.5
    assert config["metrics"][1] == "accuracy"
    assert config["optimizer"]["args"]["momentum"] == 0.9


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("trainer.epoch", "did you mean 'epochs'?"),
        ("nmae", "did you mean 'name'?"),
        ("trainer.new_setting", "trainer.new_setting: unknown key"),  # new keys only inside args
        ("optimizer.args.betas.x", "optimizer.args.betas"),  # ... and only as the last key
        ("metrics.7", "use an index 0..1"),
        ("metrics.first", "metrics is a list"),
        ("seed.value", "has no key 'value'"),
    ],
)
def test_apply_override_refuses_unknown_paths(config: dict[str, Any], path: str, message: str) -> None:
    before = json.dumps(config, sort_keys=True)
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        apply_override(config, path, 1)
    assert path in str(err.value)
    assert json.dumps(config, sort_keys=True) == before


def test_shipped_config_is_valid(config: dict[str, Any]) -> None:
    validate_config(config)
    assert ConfigParser(config).monitor.enabled


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("lr_scheduler", None),
        ("lr_scheduler", DELETE),
        ("trainer.monitor", "off"),
        ("trainer.monitor", "max val_accuracy"),
        ("trainer.early_stop", 0),
    ],
)
def test_validate_config_accepts_valid_variants(config: dict[str, Any], path: str, value: Any) -> None:
    set_path(config, path, value)
    validate_config(config)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("loss", DELETE, "loss: missing"),
        ("trainer.save_dir", DELETE, "trainer.save_dir: missing"),
        ("seed", "42", "seed: expected an integer"),
        ("metrics", "accuracy", "metrics: expected"),
        ("metrics", ["accuracy", 3], "metrics: expected"),
        ("trainer.epochs", 0, "trainer.epochs: expected an integer >= 1, got 0"),
        ("trainer.epochs", True, "trainer.epochs: expected an integer >= 1, got true"),
        ("trainer.epochs", 2.0, "trainer.epochs: expected"),
        ("trainer.verbosity", 3, "trainer.verbosity: expected"),
        ("trainer.early_stop", -1, "trainer.early_stop: expected"),
        ("trainer.patience", 3, "trainer.patience: unknown key"),
        ("trainer.monitor", "lowest val_loss", "trainer.monitor:"),
        ("trainer.monitor", "min", "trainer.monitor:"),
        ("arch.type", DELETE, "arch.type: missing"),
        ("optimizer.args", [0.1], "optimizer.args: expected"),
        ("lr_scheduler", "StepLR", "lr_scheduler: expected"),
        ("metric", ["accuracy"], "metric: unknown key; did you mean 'metrics'?"),
    ],
)
def test_validate_config_names_the_broken_key(config: dict[str, Any], path: str, value: Any, message: str) -> None:
    set_path(config, path, value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(config)


def test_validate_config_tensorboard_is_a_bool_or_absent(config: dict[str, Any]) -> None:
    # A project generated without TensorBoard has no such key, and then it is an unknown one.
    message = "expected true or false" if "tensorboard" in config["trainer"] else "unknown key"
    config["trainer"]["tensorboard"] = 1
    with pytest.raises(ConfigError, match=f"trainer.tensorboard: {message}"):
        validate_config(config)


@pytest.mark.parametrize(
    ("text", "mode", "metric"),
    [("min val_loss", "min", "val_loss"), ("max  val_accuracy", "max", "val_accuracy"), ("off", "off", "")],
)
def test_monitor_parse(text: str, mode: str, metric: str) -> None:
    assert Monitor.parse(text) == Monitor(mode, metric)


@pytest.mark.parametrize("text", ["", "min", "lowest loss", "min loss extra", "off loss"])
def test_monitor_parse_rejects_other_text(text: str) -> None:
    with pytest.raises(ConfigError, match="trainer.monitor"):
        Monitor.parse(text)


def test_monitor_improved() -> None:
    low, high, off = Monitor.parse("min loss"), Monitor.parse("max accuracy"), Monitor.parse("off")
    assert low.improved(0.5, 1.0) and not low.improved(1.0, 1.0) and not low.improved(2.0, 1.0)
    assert high.improved(2.0, 1.0) and not high.improved(1.0, 1.0) and not high.improved(0.5, 1.0)
    assert low.improved(1e9, low.worst) and high.improved(-1e9, high.worst)
    assert not low.improved(math.nan, low.worst)
    assert not off.enabled and not off.improved(0.0, 1.0)


def test_init_obj_builds_with_caller_kwargs_winning(config: dict[str, Any]) -> None:
    config["arch"]["args"] = {"in_channels": 1, "num_classes": 10, "width": 4}
    model = ConfigParser(config).init_obj("arch", module_arch, base=torch.nn.Module, num_classes=3)
    assert isinstance(model, module_arch.ConvNet)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 3)


def test_init_obj_unknown_type_lists_available_names(config: dict[str, Any]) -> None:
    config["arch"]["type"] = "ConvNett"
    with pytest.raises(ConfigError, match=r"arch\.type: unknown name 'ConvNett'") as err:
        ConfigParser(config).init_obj("arch", module_arch, base=torch.nn.Module)
    assert "did you mean 'ConvNet'?" in str(err.value)
    available = str(err.value).split("available: ")[1].split(", ")
    assert "ConvNet" in available and "BaseModel" not in available  # an abstract class cannot be built


def test_init_obj_unknown_argument_names_the_args(config: dict[str, Any]) -> None:
    config["arch"]["args"]["widht"] = 8
    with pytest.raises(ConfigError, match=r"arch\.args: ConvNet does not accept these arguments"):
        ConfigParser(config).init_obj("arch", module_arch, base=torch.nn.Module)


def test_load_applies_overrides_and_reports_bad_files(config: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    loaded = ConfigParser.load(path, ["trainer.epochs=2", "device=cpu"])
    assert loaded["trainer"]["epochs"] == 2 and loaded["device"] == "cpu"
    with pytest.raises(ConfigError, match="does not exist"):
        ConfigParser.load(tmp_path / "missing.json", [])
    path.write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        ConfigParser.load(path, [])


class FrozenDatetime(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> "FrozenDatetime":
        return cls(2024, 1, 2, 3, 4, 5)


def test_create_run_dir_twice_in_one_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_config, "datetime", FrozenDatetime)
    first = create_run_dir(tmp_path, "exp")
    second = create_run_dir(tmp_path, "exp")
    assert first != second
    assert first.is_dir() and second.is_dir()
    assert first.parent == second.parent == tmp_path / "exp"
    assert (first.name, second.name) == ("20240102-030405", "20240102-030405-2")
