"""Coming from victoresque/pytorch-template: its config.json, its ``-d 2,3`` and its checkpoints.

``LATEST`` is pytorch-template's published config.json (its keys and values); ``VERSIONS`` adds the
older published forms, as changes to it. ``PORTED`` is the registry a user has after bringing their
code over as README.md's "Coming from pytorch-template" says: the same class and function names, a
model that ends in log_softmax, metrics that return tensors, a loader written as a BaseDataLoader.
"""

import copy
import json
import os
import re
import types
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import parse_config
import train
from tests.hostile import (
    DELETE,
    assert_no_lock,
    assert_unchanged,
    only_run,
    run_test,
    run_train,
    set_path,
    snapshot,
)
from tests.tiny import TINY
from tests.tiny.data_loaders import TinyTensorLoader
from tests.tiny.models import TinyConvNet
from utils.errors import first_sentence, plain_text
from utils.registry import Registry

# --- pytorch-template's configs ---------------------------------------------------------------------------

LATEST: dict[str, Any] = {
    "name": "Mnist_LeNet",
    "n_gpu": 1,
    "arch": {"type": "MnistModel", "args": {}},
    "data_loader": {
        "type": "MnistDataLoader",
        "args": {"data_dir": "data/", "batch_size": 128, "shuffle": True, "validation_split": 0.1, "num_workers": 2},
    },
    "optimizer": {"type": "Adam", "args": {"lr": 0.001, "weight_decay": 0, "amsgrad": True}},
    "loss": "nll_loss",
    "metrics": ["accuracy", "top_k_acc"],
    "lr_scheduler": {"type": "StepLR", "args": {"step_size": 50, "gamma": 0.1}},
    "trainer": {
        "epochs": 100,
        "save_dir": "saved/",
        "save_period": 1,
        "verbosity": 2,
        "monitor": "min val_loss",
        "early_stop": 10,
        "tensorboard": True,
    },
}


def older(**changes: Any) -> dict[str, Any]:
    """``LATEST`` as an older version had it; ``changes``: dotted keys (``__`` for ``.``) -> values, or DELETE."""
    config = copy.deepcopy(LATEST)
    config["metrics"] = ["my_metric", "my_metric2"]  # the example metrics' names until June 2019
    for dotted, value in changes.items():
        set_path(config, dotted, value, separator="__")
    return config


LEGACY_MONITOR = {"trainer__monitor": "val_loss", "trainer__monitor_mode": "min", "trainer__save_freq": 1}
VISUALIZATION = {"visualization": {"tensorboardX": True, "log_dir": "saved/runs"}}
WITHOUT_TENSORBOARD = {"trainer__tensorboard": DELETE, "trainer__save_period": DELETE}
VERSIONS = {
    "2019-06-10": LATEST,
    "2019-06-01": older(
        trainer__tensorboard=DELETE,
        tensorboard={"enabled": True, "modules": ["tensorboardX", "torch.utils.tensorboard"]},
    ),
    "2019-04-18": older(trainer__tensorboard=DELETE, trainer__tensorboardX=True),
    "2019-04-15": {
        **{key: value for key, value in older().items() if key != "trainer"},
        "save_dir": "saved/",
        "training": {
            "epochs": 100,
            "save_period": 1,
            "verbosity": 2,
            "monitor": "min val_loss",
            "early_stop": 10,
            "tensorboardX": True,
        },
        "testing": {"verbosity": 2},
    },
    "2018-11-27": older(trainer__tensorboard=DELETE, trainer__tensorboardX=True, trainer__log_dir="saved/runs"),
    "2018-11-24": older(**WITHOUT_TENSORBOARD, **LEGACY_MONITOR, **VISUALIZATION, trainer__early_stop=0),
    "2018-10-02": older(
        **WITHOUT_TENSORBOARD,
        **LEGACY_MONITOR,
        **VISUALIZATION,
        trainer__early_stop=DELETE,
        data_loader__args__num_workers=DELETE,
        data_loader__args__n_cpu=2,
    ),
    "2018-09-30": older(
        **WITHOUT_TENSORBOARD,
        **LEGACY_MONITOR,
        **VISUALIZATION,
        trainer__early_stop=DELETE,
        data_loader__args__num_workers=DELETE,
        n_gpu=DELETE,
        cuda=True,
        gpu=0,
    ),
}


def follow_the_readme(config: dict[str, Any]) -> dict[str, Any]:
    """The edits README.md's table lists for pytorch-template's keys, made by hand as a user would."""
    config = copy.deepcopy(config)
    for key in ("n_gpu", "cuda", "gpu", "testing"):
        config.pop(key, None)
    if "training" in config:
        config["trainer"] = config.pop("training")
    trainer = config["trainer"]
    if "save_dir" in config:
        trainer["save_dir"] = config.pop("save_dir")
    switches = [
        config.pop("visualization", {}).get("tensorboardX"),
        config.pop("tensorboard", {}).get("enabled"),
        trainer.pop("tensorboardX", None),
        trainer.pop("tensorboard", None),
    ]
    trainer["loggers"] = ["csv", "tensorboard"] if any(switches) else ["csv"]
    trainer.pop("log_dir", None)
    if "save_freq" in trainer:
        trainer["save_period"] = trainer.pop("save_freq")
    if "monitor_mode" in trainer:
        trainer["monitor"] = f"{trainer.pop('monitor_mode')} {trainer['monitor']}"
    loader_args = config["data_loader"]["args"]
    if "n_cpu" in loader_args:
        loader_args["num_workers"] = loader_args.pop("n_cpu")
    return config


# --- the user's code, ported ------------------------------------------------------------------------------


class MnistModel(TinyConvNet):
    """pytorch-template's example model ends in log_softmax (its loss is nll_loss)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(super().forward(x), dim=1)


class MnistDataLoader(TinyTensorLoader):
    def __init__(self, data_dir: str = "data/", **loader_args: Any) -> None:
        super().__init__(n_train=160, n_test=40, **loader_args)


def nll_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.nll_loss(output, target)


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (output.argmax(dim=1) == target).float().mean()


def top_k_acc(output: torch.Tensor, target: torch.Tensor, k: int = 2) -> torch.Tensor:
    return (output.topk(k, dim=1).indices == target.unsqueeze(1)).any(dim=1).float().mean()


my_metric, my_metric2 = accuracy, top_k_acc


def _module(**members: Any) -> types.ModuleType:
    """A module named like this one: the registry offers only the functions defined in the module it is given."""
    module = types.ModuleType(__name__)
    for name, member in members.items():
        setattr(module, name, member)
    return module


PORTED = Registry(
    models=_module(MnistModel=MnistModel),
    data_loaders=_module(MnistDataLoader=MnistDataLoader),
    losses=_module(nll_loss=nll_loss),
    metrics=_module(accuracy=accuracy, top_k_acc=top_k_acc, my_metric=my_metric, my_metric2=my_metric2),
    trainers=TINY.trainers,
)


def write(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config, indent=4), encoding="utf-8")
    return path


def fast(tmp_path: Path) -> list[str]:
    """What makes a test run short and keeps it in tmp_path (not an edit pytorch-template's config needs)."""
    return [
        "-d",
        "cpu",
        "--set",
        "trainer.epochs=1",
        "--set",
        f"trainer.save_dir={tmp_path / 'saved'}",
        "--set",
        'trainer.loggers=["csv"]',
    ]


# --- its config.json --------------------------------------------------------------------------------------

# version, registry -> (how many edits, what the one line lists)
REFUSED_CONFIGS = {
    "latest-ported": ("2019-06-10", PORTED, 1, ['(1) n_gpu: delete it; "device": "auto"']),
    "latest-not-ported": (
        "2019-06-10",
        TINY,
        5,
        [
            "(1) n_gpu: delete it",
            "(2) arch.type: no 'MnistModel' in model/model.py",
            "(3) data_loader.type: no 'MnistDataLoader' in data_loader/data_loaders.py",
            "(4) loss: no 'nll_loss' in model/loss.py",
            "(5) metrics: no 'top_k_acc' in model/metric.py",
        ],
    ),
    "2019-06-01": ("2019-06-01", PORTED, 2, ["n_gpu:", 'tensorboard: delete it; for TensorBoard list "tensorboard"']),
    "2019-04-18": ("2019-04-18", PORTED, 2, ["n_gpu:", "trainer.tensorboardX: delete it; for TensorBoard"]),
    "2019-04-15": (
        "2019-04-15",
        PORTED,
        5,
        [
            "n_gpu:",
            "save_dir: move it into trainer",
            "training: rename it to trainer",
            "testing: delete it",
            "trainer.tensorboardX: delete it",
        ],
    ),
    "2018-11-27": ("2018-11-27", PORTED, 3, ["n_gpu:", "trainer.tensorboardX:", "trainer.log_dir: delete it"]),
    "2018-11-24": (
        "2018-11-24",
        PORTED,
        4,
        [
            "n_gpu:",
            "visualization: delete it",
            "trainer.save_freq: rename it to trainer.save_period",
            'trainer.monitor_mode: delete it; write trainer.monitor as "min val_loss"',
        ],
    ),
    "2018-10-02": ("2018-10-02", PORTED, 5, ["n_gpu:", "data_loader.args.n_cpu: rename it to num_workers"]),
    "2018-09-30": ("2018-09-30", PORTED, 5, ["cuda: delete it", 'gpu: delete it; write "device": "cuda:0"']),
}


@pytest.mark.parametrize(
    ("version", "registry", "count", "listed"), REFUSED_CONFIGS.values(), ids=list(REFUSED_CONFIGS)
)
def test_its_config_is_refused_with_one_line_listing_every_edit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], version: str, registry: Registry, count: int, listed: list[str]
) -> None:
    path = write(tmp_path / "config.json", VERSIONS[version])
    before = snapshot(tmp_path)
    result = run_train(capsys, "-c", path, *fast(tmp_path), modules=registry)
    assert result.code == 2
    line = result.error_line()
    assert line.startswith(f"error: config file '{path}' is written for victoresque/pytorch-template; {count} edit")
    assert f"({count}) " in line and f"({count + 1}) " not in line, line
    for edit in listed:
        assert edit in line, line
    assert_unchanged(before, snapshot(tmp_path))


@pytest.mark.parametrize("version", ["2019-06-10", "2019-04-15", "2018-11-24", "2018-09-30"])
def test_its_config_trains_after_the_documented_edits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], version: str
) -> None:
    path = write(tmp_path / "config.json", follow_the_readme(VERSIONS[version]))
    result = run_train(capsys, "-c", path, *fast(tmp_path), modules=PORTED)
    assert result.code == 0, result.err
    recorded = json.loads((only_run(tmp_path / "saved", "Mnist_LeNet") / "config.json").read_text(encoding="utf-8"))
    assert recorded["optimizer"] == LATEST["optimizer"] and recorded["lr_scheduler"]["args"] == {
        "step_size": 50,
        "gamma": 0.1,
    }
    assert recorded["trainer"]["monitor"] == "min val_loss" and recorded["trainer"]["save_period"] == 1


N_GPU = {
    "0": (0, 'n_gpu: delete it; write "device": "cpu"'),
    "1": (1, 'n_gpu: delete it; "device": "auto" (the default) takes a GPU when there is one'),
    "2": (2, "CUDA_VISIBLE_DEVICES=0,1 torchrun --standalone --nproc_per_node=2 train.py -c config.json"),
    "4": (4, "CUDA_VISIBLE_DEVICES=0,1,2,3 torchrun --standalone --nproc_per_node=4 train.py"),
}


@pytest.mark.parametrize(("n_gpu", "advice"), N_GPU.values(), ids=list(N_GPU))
def test_n_gpu_says_what_to_do_instead(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], n_gpu: int, advice: str
) -> None:
    path = write(tmp_path / "config.json", {**follow_the_readme(LATEST), "n_gpu": n_gpu})
    result = run_train(capsys, "-c", path, *fast(tmp_path), modules=PORTED)
    assert result.code == 2
    assert "1 edit to make" in result.error_line() and advice in result.error_line(), result.err
    assert not (tmp_path / "saved").exists()


# --- its -d 2,3 -------------------------------------------------------------------------------------------

DEVICE_FLAGS = {
    "two-gpus": (["-d", "2,3"], "CUDA_VISIBLE_DEVICES=2,3 torchrun --standalone --nproc_per_node=2 train.py"),
    "three-gpus-long-flag": (
        ["--device", "0,1,2"],
        "CUDA_VISIBLE_DEVICES=0,1,2 torchrun --standalone --nproc_per_node=3",
    ),
    "with-a-space": (["-d", "2, 3"], "CUDA_VISIBLE_DEVICES=2,3 torchrun"),
    "one-gpu": (["-d", "2"], "-d 2: devices are auto, cpu, cuda, cuda:N or mps here; for GPU 2 write -d cuda:2"),
    "not-json": (["-d", "[0"], "device: unknown device '[0'"),
    "a-number": (["-d", "1.5"], "device: unknown device '1.5'"),
}


@pytest.mark.parametrize(("args", "advice"), DEVICE_FLAGS.values(), ids=list(DEVICE_FLAGS))
@pytest.mark.parametrize("entry_point", ["train", "test"])
def test_device_indices_say_what_to_do_instead(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], entry_point: str, args: list[str], advice: str
) -> None:
    config = write(tmp_path / "config.json", follow_the_readme(LATEST))
    before = snapshot(tmp_path, trained)
    if entry_point == "train":
        result = run_train(capsys, "-c", config, *args, modules=PORTED)
    else:
        result = run_test(capsys, "-r", trained, *args, modules=PORTED)
    assert result.code == 2
    line = result.error_line()
    assert advice in line and "--set" not in line, line
    assert_unchanged(before, snapshot(tmp_path, trained))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, logging_restored_after_module: None) -> Path:
    """A run of pytorch-template's config, after the documented edits, on the ported code."""
    folder = tmp_path_factory.mktemp("trained")
    config = write(folder / "config.json", follow_the_readme(LATEST))
    assert train.main(["-c", str(config), *fast(folder)], modules=PORTED) == 0
    return only_run(folder / "saved", "Mnist_LeNet")


# --- its checkpoints --------------------------------------------------------------------------------------


class ConfigParser:
    """Stands in for pytorch-template's ConfigParser, which its checkpoints pickle whole: pickled under the
    name parse_config.ConfigParser, which does not exist here (only while a test saves it)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = OrderedDict(config)
        self.resume = None
        self._save_dir = PurePosixPath("saved/models/Mnist_LeNet/0610_120000")
        self._log_dir = PurePosixPath("saved/log/Mnist_LeNet/0610_120000")
        self.log_levels = {0: 30, 1: 20, 2: 10}


ConfigParser.__module__ = "parse_config"


class Planted:
    """Pickled as a call to os.mkdir: unpickling with --trust-pickle must not make the folder."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return os.mkdir, (str(self.marker),)


def save_like_pytorch_template(
    path: Path, model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch, legacy: bool = False, **extra: Any
) -> None:
    """What pytorch-template's BaseTrainer._save_checkpoint writes (epoch 7, a numpy best value), plus ``extra``."""
    optimizer = torch.optim.Adam(model.parameters(), amsgrad=True)
    state = {
        "arch": type(model).__name__,
        "epoch": 7,
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "monitor_best": np.float64(0.25),
        "config": ConfigParser(VERSIONS["2019-06-10"]),
        **extra,
    }
    with monkeypatch.context() as patch:
        patch.setattr(parse_config, "ConfigParser", ConfigParser, raising=False)
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)


def data_parallel(model: torch.nn.Module) -> torch.nn.Module:
    """The model as pytorch-template saved it with n_gpu > 1: every key behind DataParallel's ``module.``."""
    wrapper = torch.nn.Module()
    wrapper.module = model
    return wrapper


# variant -> (how to save, whether the weights sit behind "module.")
CHECKPOINTS: dict[str, Callable[[Path, torch.nn.Module, pytest.MonkeyPatch], None]] = {
    "zip": lambda path, model, patch: save_like_pytorch_template(path, model, patch),
    "legacy-format": lambda path, model, patch: save_like_pytorch_template(path, model, patch, legacy=True),
    "data-parallel": lambda path, model, patch: save_like_pytorch_template(path, data_parallel(model), patch),
    "hostile-object": lambda path, model, patch: save_like_pytorch_template(
        path, model, patch, planted=Planted(path.parent / "planted")
    ),
}


def parameters(model_state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: model_state[name] for name, _ in model.named_parameters()}


@pytest.mark.parametrize("variant", list(CHECKPOINTS))
def test_its_checkpoint_weights_come_in_through_trust_pickle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    torch.manual_seed(3)
    model = MnistModel()
    old = tmp_path / "model_best.pth"
    CHECKPOINTS[variant](old, model, monkeypatch)
    config = write(tmp_path / "config.json", follow_the_readme(LATEST))

    # lr 0: the parameters stay as imported, so the run's checkpoint shows what came in
    result = run_train(
        capsys,
        "-c",
        config,
        "--init-from",
        old,
        "--trust-pickle",
        *fast(tmp_path),
        "--set",
        "optimizer.args.lr=0",
        modules=PORTED,
    )
    assert result.code == 0, result.err
    run_dir = only_run(tmp_path / "saved", "Mnist_LeNet")
    saved = torch.load(run_dir / "last.pth", weights_only=True)
    for name, tensor in parameters(model.state_dict(), model).items():
        assert torch.equal(saved["model"][name], tensor), name
    origin = json.loads((run_dir / "origin.json").read_text(encoding="utf-8"))
    assert origin == {"from": str(old), "epoch": 7, "weights_only": True}
    assert not (tmp_path / "planted").exists()


@pytest.mark.parametrize("entry_point", ["train --init-from", "test -r"])
def test_its_checkpoint_without_the_flag_is_one_line_pointing_at_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, entry_point: str
) -> None:
    old = tmp_path / "model_best.pth"
    save_like_pytorch_template(old, MnistModel(), monkeypatch)
    config = write(tmp_path / "config.json", follow_the_readme(LATEST))
    before = snapshot(tmp_path)
    if entry_point.startswith("train"):
        result = run_train(capsys, "-c", config, "--init-from", old, *fast(tmp_path), modules=PORTED)
    else:
        result = run_test(capsys, "-r", old, modules=PORTED)
    assert result.code == 2
    assert "\x1b" not in result.err  # PyTorch's own message has escape codes
    # the first object it names is its best value, a numpy scalar (numpy.core or numpy._core)
    assert re.fullmatch(
        rf"error: checkpoint '{re.escape(str(old))}' cannot be loaded: it holds pickled Python objects \(such as "
        r"numpy\._?core\.multiarray\.scalar; a victoresque or other foreign checkpoint\?\); to take its weights "
        rf"use: python train\.py -c config\.json --init-from {re.escape(str(old))} --trust-pickle",
        result.error_line(),
    ), result.error_line()
    assert_unchanged(before, snapshot(tmp_path))


def _no_weights(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.save({"epoch": 3, "config": {"name": "x"}}, path)


def _other_width(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_like_pytorch_template(path, MnistModel(width=4), monkeypatch)


def _not_a_pickle(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path.write_bytes(b"hello, I am not a checkpoint\n")


def _good(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_like_pytorch_template(path, MnistModel(), monkeypatch)


# what the file holds, the flags -> what the one line says
FLAG_REFUSALS = {
    "flag-without-init-from": (_good, ["--trust-pickle"], "--trust-pickle goes with --init-from CHECKPOINT"),
    "flag-with-resume": (_good, ["-r", "<old>", "--trust-pickle"], "--trust-pickle goes with --init-from"),
    "no-weights": (_no_weights, ["--init-from", "<old>", "--trust-pickle"], "'<old>' holds no model weights"),
    "not-a-pickle": (_not_a_pickle, ["--init-from", "<old>", "--trust-pickle"], "'<old>' cannot be unpickled"),
    "other-shape": (_other_width, ["--init-from", "<old>", "--trust-pickle"], "'<old>' does not fit MnistModel"),
}


@pytest.mark.parametrize(("make", "args", "expect"), FLAG_REFUSALS.values(), ids=list(FLAG_REFUSALS))
def test_trust_pickle_refusals_are_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    make: Callable[[Path, pytest.MonkeyPatch], None],
    args: list[str],
    expect: str,
) -> None:
    old = tmp_path / "old.pth"
    make(old, monkeypatch)
    config = write(tmp_path / "config.json", follow_the_readme(LATEST))
    before = snapshot(tmp_path)
    argv = [str(old) if arg == "<old>" else arg for arg in args]
    result = run_train(capsys, "-c", config, *argv, *fast(tmp_path), modules=PORTED)
    assert result.code == 2
    assert expect.replace("<old>", str(old)) in result.error_line(), result.err
    assert_unchanged(before, snapshot(tmp_path))
    assert_no_lock(tmp_path)


# --- messages from PyTorch --------------------------------------------------------------------------------

MESSAGES = {
    "escape-codes": (
        "Weights only load failed. This file can still be loaded, \x1b[1mdo those steps\x1b[0m.",
        "Weights only load failed.",
    ),
    "sentence-over-two-lines": (
        "Error(s) in loading state_dict for Net:\n\tMissing key(s): a. Unexpected: b.",
        "Error(s) in loading state_dict for Net: Missing key(s): a.",
    ),
    "no-full-stop": (
        "PytorchStreamReader failed\nreading zip archive",
        "PytorchStreamReader failed reading zip archive",
    ),
    "empty": ("", "RuntimeError"),
}


@pytest.mark.parametrize(("message", "shown"), MESSAGES.values(), ids=list(MESSAGES))
def test_a_message_is_shown_as_its_whole_first_sentence(message: str, shown: str) -> None:
    assert first_sentence(RuntimeError(message)) == shown
    assert "\x1b" not in plain_text(message)
