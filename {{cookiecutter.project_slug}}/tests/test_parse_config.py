"""The config layer: --set parsing and applying, validation and defaults, loading, building by name."""

import dataclasses
import json
import logging
import re
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.optim import Optimizer, lr_scheduler
from torch.optim.lr_scheduler import LRScheduler

from base.base_data_loader import BaseDataLoader
from parse_config import Config, ObjectSpec, apply_override, load_config, parse_override
from tests.hostile import DELETE, set_path
from tests.tiny import TINY
from trainer.settings import TrainerSettings
from utils.errors import UsageError
from utils.registry import build, lookup_function


def get_path(config: dict[str, Any], path: str) -> Any:
    node: Any = config
    for key in path.split("."):
        node = node[key]
    return node


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("optimizer.args.lr=0.01", 0.01),
        ("trainer.epochs=3", 3),
        ("trainer.channels_last=true", True),
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
    with pytest.raises(UsageError, match=re.escape(key)):
        parse_override(text)


def test_apply_override_sets_nested_keys_and_list_items(config: dict[str, Any]) -> None:
    config["metrics"] = ["accuracy", "accuracy"]
    apply_override(config, "optimizer.args.lr", 0.5)
    apply_override(config, "metrics.1", "top_3_accuracy")
    apply_override(config, "optimizer.args.betas", [0.8, 0.9])  # a new constructor argument is allowed
    apply_override(config, "lr_scheduler", {"type": "StepLR", "args": {"step_size": 1}})
    assert config["optimizer"]["args"] == {"lr": 0.5, "betas": [0.8, 0.9]}
    assert config["metrics"] == ["accuracy", "top_3_accuracy"]
    assert config["lr_scheduler"]["args"]["step_size"] == 1


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("trainer.epoch", "did you mean 'epochs'?"),
        ("nmae", "did you mean 'name'?"),
        ("trainer.new_setting", "trainer.new_setting: unknown key"),  # new keys only inside args
        ("optimizer.args.betas.x", "optimizer.args.betas.x: unknown key"),  # ... and only as the last key
        ("metrics.7", "use an index 0..1"),
        ("metrics.first", "metrics is a list"),
        ("seed.value", "has no key 'value'"),
    ],
)
def test_apply_override_refuses_unknown_paths(config: dict[str, Any], path: str, message: str) -> None:
    config["metrics"] = ["accuracy", "accuracy"]
    before = json.dumps(config, sort_keys=True)
    with pytest.raises(UsageError, match=re.escape(message)) as err:
        apply_override(config, path, 1)
    assert path in str(err.value)
    assert json.dumps(config, sort_keys=True) == before


def test_tiny_config_is_valid_and_complete_after_loading(config: dict[str, Any]) -> None:
    loaded = Config.from_dict(config)
    assert loaded.trainer.monitor == "min val_loss" and loaded.trainer.epochs == 1
    recorded = loaded.to_dict()
    assert set(recorded["trainer"]) == {field.name for field in dataclasses.fields(TrainerSettings)}
    assert Config.from_dict(recorded) == loaded  # what a run records loads back to the same config


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("lr_scheduler", None),
        ("lr_scheduler", {"type": "StepLR", "args": {"step_size": 2}, "interval": None, "warmup_steps": 0}),
        ("lr_scheduler", {"type": "CosineAnnealingLR", "args": {}, "interval": "step", "warmup_steps": 10}),
        ("trainer.monitor", "off"),
        ("trainer.monitor", "max val_accuracy"),
        ("trainer.early_stop", 0),
        ("trainer.grad_clip_norm", 1),  # an integer where a number belongs
        ("data_loader.args", {}),
        ("seed", 0),
        ("seed", 2**32 - 1),
        ("name", "two words-and_more"),
    ],
)
def test_config_accepts_valid_variants(config: dict[str, Any], path: str, value: Any) -> None:
    set_path(config, path, value)
    assert get_path(Config.from_dict(config).to_dict(), path) == value


TOP_LEVEL_DEFAULTS = {
    "name": "experiment",
    "seed": 42,
    "device": "auto",
    "deterministic": False,
    "lr_scheduler": None,
    "trainer": TrainerSettings(),
}


@pytest.mark.parametrize(("key", "default"), TOP_LEVEL_DEFAULTS.items(), ids=list(TOP_LEVEL_DEFAULTS))
def test_missing_optional_key_takes_its_default(config: dict[str, Any], key: str, default: Any) -> None:
    del config[key]
    assert getattr(Config.from_dict(config), key) == default


@pytest.mark.parametrize("field", dataclasses.fields(TrainerSettings), ids=lambda field: field.name)
def test_missing_trainer_key_takes_its_default(config: dict[str, Any], field: dataclasses.Field) -> None:
    config["trainer"].pop(field.name, None)
    assert getattr(Config.from_dict(config).trainer, field.name) == getattr(TrainerSettings(), field.name)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("arch", DELETE, "arch: missing"),
        ("data_loader", DELETE, "data_loader: missing"),
        ("optimizer", DELETE, "optimizer: missing"),
        ("loss", DELETE, "loss: missing"),
        ("metrics", DELETE, "metrics: missing"),
        ("arch.type", DELETE, "arch.type: missing"),
        ("seed", "42", "seed: expected an integer"),
        ("seed", 4.0, "seed: expected an integer"),
        ("seed", -3, "seed: expected an integer from 0 to 2**32 - 1, got -3"),
        ("seed", 10**30, "seed: expected an integer from 0"),
        ("name", "", "name: expected a plain folder name"),
        ("name", "..", "name: expected a plain folder name"),
        ("name", "../../x", "name: expected a plain folder name"),
        ("name", "/tmp/x", "name: expected a plain folder name"),
        ("metrics", "accuracy", "metrics: expected"),
        ("metrics", ["accuracy", 3], "metrics: expected"),
        ("trainer.epochs", 0, "trainer.epochs: expected an integer from 1 to 1,000,000, got 0"),
        ("trainer.epochs", True, "trainer.epochs: expected an integer from 1 to 1,000,000, got true"),
        ("trainer.epochs", 2.0, "trainer.epochs: expected"),
        ("trainer.verbosity", 3, "trainer.verbosity: expected"),
        ("trainer.early_stop", -1, "trainer.early_stop: expected"),
        ("trainer.tensorboard", 1, "trainer.tensorboard: expected true or false"),
        ("trainer.grad_clip_norm", 0, "trainer.grad_clip_norm: expected"),
        ("trainer.amp", "fp8", "trainer.amp: expected"),
        ("trainer.compile", True, "trainer.compile: expected"),
        ("trainer.patience", 3, "trainer.patience: unknown key"),
        ("trainer.monitor", "lowest val_loss", "trainer.monitor:"),
        ("trainer.monitor", "min", "trainer.monitor:"),
        ("trainer", [], "trainer: expected"),
        ("optimizer.args", [0.1], "optimizer.args: expected"),
        ("optimizer.tpye", "Adam", "optimizer.tpye: unknown key; did you mean 'type'?"),
        ("lr_scheduler", "StepLR", "lr_scheduler: expected"),
        ("metric", ["accuracy"], "metric: unknown key; did you mean 'metrics'?"),
    ],
)
def test_config_names_the_broken_key(config: dict[str, Any], path: str, value: Any, message: str) -> None:
    set_path(config, path, value)
    with pytest.raises(UsageError, match=re.escape(message)):
        Config.from_dict(config)


def write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_load_config_applies_overrides(config_file: Path) -> None:
    loaded = load_config(config_file, ["trainer.epochs=2", "device=cpu", "trainer.keep_last=5"])
    assert (loaded.trainer.epochs, loaded.device, loaded.trainer.keep_last) == (2, "cpu", 5)
    # Every key exists after loading, so --set reaches keys the file leaves out.
    assert load_config(config_file, ["trainer.log_step=3"]).trainer.log_step == 3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.epochs=0", "trainer.epochs: expected an integer from 1 to 1,000,000, got 0"),
        ("trainer.epoch=2", "did you mean 'epochs'?"),
        ("trainer.epochs=0.0.1", "is not a JSON value"),
    ],
)
def test_load_config_checks_what_overrides_make(config_file: Path, override: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        load_config(config_file, [override])


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("{", "is not valid JSON"), ([1], "config: expected a JSON object")],
    ids=["missing", "not-json", "not-an-object"],
)
def test_load_config_reports_bad_files(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "config.json"
    if content is not None:
        write(path, content)
    with pytest.raises(UsageError, match=message):
        load_config(path, [])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{\n  "seed": 1,\n  "seed": 2\n}', "key 'seed' appears twice (again on line 3)"),
        (
            '{"a": {"x": 1}, "b": {"x": 1, "y": [{"z": 1}, {"z": 2, "z\\"": 3,\n"z": 4}]}}',
            "key 'b.y.1.z' appears twice (again on line 2)",
        ),
        ('{"a": "\\"b\\": 1, \\"b\\": 2", "b": 3, "c": {"b": 4}, "b": 5}', "key 'b' appears twice (again on line 1)"),
    ],
    ids=["top-level", "in-a-list-after-an-escaped-quote", "after-a-string-that-looks-like-keys"],
)
def test_a_key_twice_in_a_config_file_is_refused_with_its_path_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        load_config(write(tmp_path / "config.json", text), [])


def test_load_config_needs_a_file_or_a_recorded_config() -> None:
    with pytest.raises(UsageError, match="no configuration given"):
        load_config(None, [])


def test_recorded_config_drops_unknown_keys(config: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    # A checkpoint written by an older or newer version of the template still loads.
    recorded = {**config, "future_key": 1, "trainer": {**config["trainer"], "new_switch": True}}
    with caplog.at_level(logging.WARNING):
        loaded = load_config(None, ["trainer.epochs=3"], recorded=recorded)
    assert loaded == Config.from_dict({**config, "trainer": {**config["trainer"], "epochs": 3}})
    assert "future_key" in caplog.text and "trainer.new_switch" in caplog.text


def test_user_config_refuses_unknown_keys(config: dict[str, Any], tmp_path: Path) -> None:
    config["trainer"]["epoch"] = 3
    path = write(tmp_path / "config.json", config)
    with pytest.raises(UsageError, match=re.escape("trainer.epoch: unknown key; did you mean 'epochs'?")):
        load_config(path, [])


def test_build_lets_caller_kwargs_win() -> None:
    model = build(
        ObjectSpec("TinyConvNet", {"num_classes": 10, "width": 4}), "arch", TINY.models, torch.nn.Module, num_classes=5
    )
    assert type(model).__name__ == "TinyConvNet"
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 5)


def test_build_unknown_type_lists_available_names() -> None:
    with pytest.raises(UsageError, match=r"arch\.type: unknown name 'TinyConvNett'") as err:
        build(ObjectSpec("TinyConvNett"), "arch", TINY.models, torch.nn.Module)
    assert "did you mean 'TinyConvNet'?" in str(err.value)
    available = str(err.value).split("available: ")[1].split(", ")
    assert "TinyConvNet" in available and "BaseModel" not in available  # an abstract class cannot be built


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            ObjectSpec("TinyConvNet", {"widht": 8}),
            "arch.args.widht: unknown key; did you mean 'width'? known keys: dropout, in_channels, num_classes, width",
        ),  # fmt: skip
        (ObjectSpec("TinyConvNet", {"width": "8"}), 'arch.args.width: expected a number, got "8"'),
        (ObjectSpec("TinyConvNet", {"width": -2}), "arch.args: TinyConvNet rejected its arguments"),
    ],
    ids=["unknown-argument", "text-for-a-number", "bad-value"],
)
def test_build_names_the_args_it_cannot_use(spec: ObjectSpec, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        build(spec, "arch", TINY.models, torch.nn.Module)


def test_build_names_what_a_torch_class_rejects() -> None:
    parameters = torch.nn.Linear(2, 2).parameters()
    with pytest.raises(UsageError, match=r"optimizer\.args: SGD rejected its arguments: Nesterov momentum requires"):
        build(ObjectSpec("SGD", {"lr": 0.1, "nesterov": True}), "optimizer", torch.optim, Optimizer, parameters)


def test_build_refuses_an_optimizer_or_schedule_argument_out_of_its_range_before_torch_sees_it() -> None:
    """Adam refuses a negative lr itself; the same rule (utils/bounds.py) also holds where torch has none."""
    parameters = list(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(UsageError, match=r"^optimizer\.args\.lr: expected a number >= 0 .*, got -1$"):
        build(ObjectSpec("Adam", {"lr": -1}), "optimizer", torch.optim, Optimizer, parameters)
    optimizer = torch.optim.SGD(parameters, lr=0.1)
    with pytest.raises(UsageError, match=r"^lr_scheduler\.args\.eta_min: expected a number >= 0"):
        build(ObjectSpec("CosineAnnealingLR", {"T_max": 5, "eta_min": -1}), "lr_scheduler", lr_scheduler, LRScheduler,
              optimizer)  # fmt: skip


def test_a_misspelt_argument_of_a_torch_class_gets_a_did_you_mean() -> None:
    parameters = torch.nn.Linear(2, 2).parameters()  # given by the code: not a key the config may set
    with pytest.raises(
        UsageError, match=r"^optimizer\.args\.lrr: unknown key; did you mean 'lr'\? known keys: "
    ) as err:
        build(ObjectSpec("Adam", {"lrr": 0.1}), "optimizer", torch.optim, torch.optim.Optimizer, parameters)
    assert "params" not in str(err.value).split("known keys: ")[1].split(", ")


def test_lookup_function_offers_the_functions_defined_in_the_module() -> None:
    assert lookup_function(TINY.losses, "cross_entropy", "loss").__name__ == "cross_entropy"
    with pytest.raises(UsageError, match=r"metrics: unknown name 'acuracy'; did you mean 'accuracy'\?") as err:
        lookup_function(TINY.metrics, "acuracy", "metrics")
    assert str(err.value).endswith("available: accuracy")  # not what the module imports (torch, ...)


def test_a_named_function_may_be_imported_a_partial_or_a_module_instance() -> None:
    losses = types.ModuleType("user_losses")
    exec(  # what a user's model/loss.py may hold besides functions of its own
        "import functools, math\n"
        "import torch\n"
        "from torch.nn.functional import cross_entropy as imported\n"
        "def own(output, target): return imported(output, target)\n"
        "smoothed = functools.partial(imported, label_smoothing=0.1)\n"
        "module_instance = torch.nn.CrossEntropyLoss()\n"
        "Loss = torch.nn.CrossEntropyLoss\n",
        vars(losses),
    )
    for name in ("own", "imported", "smoothed", "module_instance"):
        assert lookup_function(losses, name, "loss") is getattr(losses, name), name
    for name in ("Loss", "torch", "math", "_private"):  # a class, modules, a private name
        with pytest.raises(UsageError, match=f"loss: unknown name '{name}'; available: own$"):
            lookup_function(losses, name, "loss")


def test_an_argument_the_run_passes_that_the_class_cannot_take_says_so() -> None:
    loaders = types.ModuleType("user_loaders")
    exec(
        "from base.base_data_loader import BaseDataLoader\n"
        "class VictoresqueStyle(BaseDataLoader):\n"
        "    def __init__(self, batch_size, shuffle=True, validation_split=0.0, num_workers=1):\n"
        "        super().__init__(batch_size=batch_size)\n",
        vars(loaders),
    )
    spec = ObjectSpec("VictoresqueStyle", {"batch_size": 8})
    with pytest.raises(UsageError) as err:
        build(spec, "data_loader", loaders, BaseDataLoader, seed=1)
    assert str(err.value) == (
        "data_loader.type: VictoresqueStyle.__init__ has no 'seed' parameter, which the run passes to every "
        "data_loader; add it and pass it on to the base class's __init__ (or take **kwargs and pass those on)"
    )


@pytest.mark.parametrize(
    ("loader", "typo", "meant"),
    [
        ("TinyTensorLoader", "n_trian", "n_train"),
        ("LearntClassesLoader", "n_tset", "n_test"),
        ("LearntClassesLoader", "reversed", "reversed_in"),
    ],  # fmt: skip
)
def test_a_misspelt_argument_of_the_loader_s_own_is_matched_against_its_parameters(
    loader: str, typo: str, meant: str
) -> None:
    """The known keys of a data loader are its __init__'s parameters (and its parents', inherited as
    LearntClassesLoader inherits TinyTensorLoader's) besides the base class's settings, not only the latter."""
    with pytest.raises(UsageError) as err:
        build(ObjectSpec(loader, {typo: 1}), "data_loader", TINY.data_loaders, BaseDataLoader, seed=1)
    said = str(err.value)
    assert said.startswith(f"data_loader.args.{typo}: unknown key; did you mean {meant!r}? known keys: "), said
    known = said.split("known keys: ")[1].split(", ")
    assert {"batch_size", "validation_split", "n_train", "n_test"} <= set(known) and known == sorted(known), said
