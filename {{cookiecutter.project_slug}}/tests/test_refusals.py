"""Hostile input is refused with one line: a table of config mistakes (through train.py) and a table of
malformed checkpoints (through train.py -r and, where evaluating needs what is broken, test.py -r).

Each case must exit with 2, print exactly one stderr line starting ``error:`` that names the key or the
file, print no traceback, and leave every file and folder as it was. A config mistake prints nothing else
either: no log line, and no warning of what was built before it was refused (torch's about a model of width 0).
"""

import copy
import errno
import json
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

import train
import trainer.build as trainer_build
from tests.hostile import (
    DELETE,
    EXTRA,
    assert_no_lock,
    assert_unchanged,
    only_run,
    run_test,
    run_train,
    set_path,
    small_config,
    snapshot,
    write_config,
)
from tests.tiny import TINY, tiny_config
from tests.tiny.models import TinyConvNet
from utils.checkpoint import digest, save_checkpoint
from utils.registry import Registry

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


@dataclass
class Mistake:
    """A config mistake: ``changes`` to the small config (dotted keys; DELETE removes one), extra command
    line ``args``, or ``raw`` bytes for the whole file (None: no file at all). ``expect`` must appear in the
    error line; ``<config>`` in it stands for the config file's path. ``<tmp>`` in a value, an argument or
    ``expect`` stands for the test's folder, where a file named ``occupied`` exists. A ``Verbatim`` value
    is written into the file as its JSON text."""

    expect: str
    changes: dict[str, Any] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    raw: bytes | None | str = "json"
    modules: Registry = TINY


@dataclass(frozen=True)
class Verbatim:
    """JSON text that json.dumps cannot write: ``1e400``, or an object that holds a key twice."""

    text: str


def case(case_id: str, expect: str, marks: Any = (), **kwargs: Any) -> Any:
    return pytest.param(Mistake(expect, **kwargs), id=case_id, marks=marks)


TRAINER_WRONG_TYPES = {
    "epochs": "3",
    "save_dir": 5,
    "save_period": 1.5,
    "keep_last": True,
    "verbosity": "1",
    "monitor": 1,
    "early_stop": None,
    "nonfinite_loss": 0,
    "amp": True,
    "compile": False,
    "channels_last": "yes",
    "sync_batchnorm": 1,
    "grad_accum_steps": 2.0,
    "grad_clip_norm": "1",
    "tensorboard": "false",
    "log_step": [],
}
TRAINER_OUT_OF_RANGE = {
    "epochs": 0,
    "save_period": 0,
    "keep_last": -1,
    "verbosity": 3,
    "early_stop": -1,
    "grad_accum_steps": 0,
    "grad_clip_norm": 0,
    "log_step": 0,
    "nonfinite_loss": "ignore",
    "amp": "fp8",
    "compile": "fast",
}
STEP_LR = {"type": "StepLR", "args": {"step_size": 1}}


def schedule(kind: str, **args: Any) -> dict[str, Any]:
    """The change that makes the config's lr_scheduler ``kind`` with ``args``."""
    return {"lr_scheduler": {"type": kind, "args": args}}


# Not finite, wherever a float sits: (key, how config.json writes it); each is also tried through --set.
NON_FINITE = {
    "optimizer.args.lr": "Infinity",
    "optimizer.args.weight_decay": "1e400",
    "arch.args.dropout": "-Infinity",
    "data_loader.args.validation_split": "1e999",
    "trainer.grad_clip_norm": "Infinity",
}
# An argument of an optimizer or a schedule that torch takes, though its sign or range makes no sense:
# (changes, what the error line says).
OUT_OF_RANGE_ARGUMENTS = {
    "onecycle-max_lr-negative": (schedule("OneCycleLR", max_lr=-1), "lr_scheduler.args.max_lr: expected a number >= 0"),
    "onecycle-max_lr-per-group": (schedule("OneCycleLR", max_lr=[-0.1]), "lr_scheduler.args.max_lr: expected a"),
    "cosine-eta_min-negative": (schedule("CosineAnnealingLR", eta_min=-0.1), "lr_scheduler.args.eta_min: expected"),
    "cyclic-base_lr-negative": (schedule("CyclicLR", base_lr=-0.01, max_lr=0.1), "lr_scheduler.args.base_lr: expected"),
    "plateau-min_lr-negative": (schedule("ReduceLROnPlateau", min_lr=-1), "lr_scheduler.args.min_lr: expected"),
    "steplr-gamma-negative": (schedule("StepLR", step_size=1, gamma=-0.5), "lr_scheduler.args.gamma: expected a"),
    "steplr-step_size-negative": (schedule("StepLR", step_size=-1), "lr_scheduler.args.step_size: expected an"),
    "cosine-T_max-fraction": (schedule("CosineAnnealingLR", T_max=2.5), "lr_scheduler.args.T_max: expected an"),
    "multistep-milestone-negative": (schedule("MultiStepLR", milestones=[-1]), "lr_scheduler.args.milestones:"),
    "adam-lr-negative": ({"optimizer.args.lr": -1}, "optimizer.args.lr: expected a number >= 0 (a negative rate"),
    "adam-weight_decay-negative": ({"optimizer.args.weight_decay": -0.1}, "optimizer.args.weight_decay: expected"),
    "adam-eps-0": ({"optimizer.args.eps": 0}, "optimizer.args.eps: expected a number > 0, got 0"),
    "adam-beta-1": ({"optimizer.args.betas": [0.9, 1]}, "optimizer.args.betas: expected numbers from 0 to below 1"),
    "adam-beta-above-1": ({"optimizer.args.betas": [0.9, 1.5]}, "optimizer.args.betas: expected numbers from 0"),
    "sgd-momentum-above-1": (
        {"optimizer": {"type": "SGD", "args": {"lr": 0.1, "momentum": 1.5}}},
        "optimizer.args.momentum: expected a number from 0 to 1, got 1.5",
    ),
}
# Sizes and counts beyond any sane run: (changes, what the error line says).
TOO_LARGE = {
    "epochs-1e20": ({"trainer.epochs": 10**20}, "trainer.epochs: expected an integer from 1 to 1,000,000, got 1000"),
    "epochs-a-million-and-one": ({"trainer.epochs": 10**6 + 1}, "trainer.epochs: expected an integer from 1 to"),
    "batch_size-1e30": ({"data_loader.args.batch_size": 10**30}, "data_loader.args.batch_size: 1000000000000000000000"),
    "batch_size-above-the-split": (
        {"data_loader.args.batch_size": 65},
        "data_loader.args.batch_size: 65 is more than the 64 training samples; use at most 64",
    ),
    "num_workers-a-million": ({"data_loader.args.num_workers": 10**6}, "data_loader.args.num_workers: expected an"),
    "prefetch_factor-a-million": ({"data_loader.args.prefetch_factor": 10**6}, "data_loader.args.prefetch_factor:"),
    "save_period-1e20": ({"trainer.save_period": 10**20}, "trainer.save_period: 100000000000000000000 is larger than"),
    "model-width-1e20": ({"arch.args.width": 10**20}, "arch.args.width: 100000000000000000000 is larger than any size"),
    "steplr-step_size-1e20": (schedule("StepLR", step_size=10**20), "lr_scheduler.args.step_size: 1000000000000000000"),
    "warmup-longer-than-the-run": (
        {"lr_scheduler": {"type": "CosineAnnealingLR", "args": {}, "warmup_steps": 3}},
        "lr_scheduler.warmup_steps: 3 is more than the run's 2 optimizer steps; warm up for fewer",
    ),
}
# A key twice in one object: json.loads would keep the last without a word. (changes, the error line)
TWICE = {
    "top-level": ({"arch": Verbatim('{"type": "Nope"}, "arch": {"type": "TinyConvNet", "args": {}}')}, "key 'arch'"),
    "nested": ({"optimizer.args": Verbatim('{"lr": 0.01, "lr": 0.1}')}, "key 'optimizer.args.lr'"),
    "in-a-list": ({"metrics": Verbatim('["accuracy", {"a": 1, "a": 2}]')}, "key 'metrics.1.a'"),
}

CONFIG_MISTAKES = [
    # unknown keys, at every level, with a did-you-mean where one is close
    case("unknown-top-level-key", "nmae: unknown key; did you mean 'name'?", changes={"nmae": "x"}),
    case("unknown-trainer-key", "trainer.epoch: unknown key; did you mean 'epochs'?", changes={"trainer.epoch": 3}),
    case("unknown-arch-key", "arch.typ: unknown key; did you mean 'type'?", changes={"arch.typ": "TinyConvNet"}),
    case(
        "unknown-data_loader-key", "data_loader.arg: unknown key; did you mean 'args'?", changes={"data_loader.arg": {}}
    ),
    case(
        "unknown-optimizer-key", "optimizer.tpye: unknown key; did you mean 'type'?", changes={"optimizer.tpye": "SGD"}
    ),
    case(
        "unknown-lr_scheduler-key",
        "lr_scheduler.gama: unknown key",
        changes={"lr_scheduler": {**STEP_LR, "gama": 0.5}},
    ),
    case("unknown-metrics-key", "metric: unknown key; did you mean 'metrics'?", changes={"metric": ["accuracy"]}),
    case(
        "unknown-loader-arg",
        "data_loader.args.batchsize: unknown key; did you mean 'batch_size'?",
        changes={"data_loader.args.batchsize": 16},
    ),
    case(
        "unknown-loader-own-arg",
        "data_loader.args.n_trian: unknown key; did you mean 'n_train'? known keys: augment, batch_size, "
        "device_resident, n_test, n_train, num_workers",
        changes={"data_loader.args.n_trian": 16},
    ),
    case(
        "unknown-optimizer-arg",
        "optimizer.args.lrr: unknown key; did you mean 'lr'?",
        changes={"optimizer.args.lrr": 0.1},
    ),
    case(
        "unknown-arch-arg",
        "arch.args.num_class: unknown key; did you mean 'num_classes'?",
        changes={"arch.args.num_class": 3},
    ),
    case(
        "unknown-scheduler-arg",
        "lr_scheduler.args.gama: unknown key; did you mean 'gamma'?",
        changes={"lr_scheduler": {"type": "StepLR", "args": {"step_size": 1, "gama": 0.5}}},
    ),
    case("unknown-set-path", "trainer.nope: unknown key", args=["--set", "trainer.nope=1"]),
    case("unknown-set-nested-path", "--set trainer.nope.x: unknown key", args=["--set", "trainer.nope.x=1"]),
    # wrong types, for every trainer key
    *(
        case(f"type-trainer.{key}", f"trainer.{key}: expected", changes={f"trainer.{key}": value})
        for key, value in TRAINER_WRONG_TYPES.items()
    ),
    # out of range
    *(
        case(f"range-trainer.{key}", f"trainer.{key}: expected", changes={f"trainer.{key}": value})
        for key, value in TRAINER_OUT_OF_RANGE.items()
    ),
    # monitor text
    case("monitor-unknown-mode", "trainer.monitor:", changes={"trainer.monitor": "lowest val_loss"}),
    case("monitor-no-metric", "trainer.monitor:", changes={"trainer.monitor": "min"}),
    case("monitor-extra-word", "trainer.monitor:", changes={"trainer.monitor": "min val_loss extra"}),
    case("monitor-empty", "trainer.monitor:", changes={"trainer.monitor": ""}),
    case(
        "monitor-not-measured",
        "trainer.monitor: 'val_nothing' is not measured",
        changes={"trainer.monitor": "max val_nothing"},
    ),
    case(
        "monitor-val-without-split",
        "trainer.monitor: 'val_loss' is not measured; choose one of loss, accuracy (val_* needs a validation_split)",
        changes={"data_loader.args.validation_split": 0},
    ),
    case(
        "monitor-misspelt",
        "trainer.monitor: 'val_acc' is not measured; did you mean 'val_accuracy'? choose one of",
        changes={"trainer.monitor": "max val_acc"},
    ),
    # names of classes and functions
    case(
        "unknown-arch",
        "arch.type: unknown name 'TinyConvNett'; did you mean 'TinyConvNet'?",
        changes={"arch.type": "TinyConvNett"},
    ),
    case("abstract-arch", "arch.type: 'BaseModel' is abstract", changes={"arch.type": "BaseModel"}),
    case(
        "arch-names-a-factory-function",
        "arch.type: 'tiny_conv_net' is a function, not a class; name an nn.Module class (subclass BaseModel or "
        "nn.Module; for a model a function builds, a class whose __init__ calls it); available: ",
        changes={"arch.type": "tiny_conv_net"},
    ),
    case(
        "data_loader-names-a-factory-function",
        "data_loader.type: 'tiny_tensor_loader' is a function, not a class; name a BaseDataLoader subclass",
        changes={"data_loader.type": "tiny_tensor_loader"},
    ),
    case(
        "data_loader-names-a-dataset",
        "data_loader.type: 'ItemDataset' is a class, but not a BaseDataLoader subclass",
        changes={"data_loader.type": "ItemDataset"},
    ),
    case(
        "unknown-data_loader",
        "data_loader.type: unknown name 'TinyTensorLoadr'",
        changes={"data_loader.type": "TinyTensorLoadr"},
    ),
    case(
        "base-data_loader",
        "data_loader.type",
        changes={"data_loader.type": "BaseDataLoader", "data_loader.args": {"batch_size": 32, "validation_split": 0.2}},
    ),
    case(
        "unknown-optimizer",
        "optimizer.type: unknown name 'Adamm'; did you mean 'Adam'?",
        changes={"optimizer.type": "Adamm"},
    ),
    case("base-optimizer", "optimizer", changes={"optimizer.type": "Optimizer"}),
    case("closure-optimizer", "optimizer.type: LBFGS", changes={"optimizer.type": "LBFGS"}),
    case(
        "unknown-scheduler",
        "lr_scheduler.type: unknown name 'StepLr'",
        changes={"lr_scheduler": {"type": "StepLr", "args": {"step_size": 1}}},
    ),
    case("abstract-scheduler", "lr_scheduler", changes={"lr_scheduler": {"type": "LRScheduler", "args": {}}}),
    case("unknown-loss", "loss: unknown name 'crossentropy'", changes={"loss": "crossentropy"}),
    case(
        "unknown-metric", "metrics: unknown name 'acuracy'; did you mean 'accuracy'?", changes={"metrics": ["acuracy"]}
    ),
    case("loss-as-metric", "metrics: unknown name 'cross_entropy'", changes={"metrics": ["cross_entropy"]}),
    # constructor arguments
    case("adam-one-beta", "optimizer.args: Adam rejected its arguments", changes={"optimizer.args.betas": [0.9]}),
    case(
        "validation-split-holds-out-none",
        "data_loader.args.validation_split: 0.001 of",
        changes={"data_loader.args.validation_split": 0.001},
    ),
    case(
        "fused-not-a-bool",
        "optimizer.args.fused: 'yes' is not true, false or null",
        changes={"optimizer.args.fused": "yes"},
    ),
    case(
        "steplr-step_size-0",
        "lr_scheduler.args: StepLR fails when stepped",
        changes={"lr_scheduler": {"type": "StepLR", "args": {"step_size": 0}}},
    ),
    case(
        "steplr-gamma-text",
        'lr_scheduler.args.gamma: expected a number, got "x"',
        changes={"lr_scheduler": {"type": "StepLR", "args": {"step_size": 1, "gamma": "x"}}},
    ),
    case(
        "cosine-T_max-0",
        "lr_scheduler.args: CosineAnnealingLR fails when stepped",
        changes={"lr_scheduler": {"type": "CosineAnnealingLR", "args": {"T_max": 0}}},
    ),
    case(
        "schedule-interval-unknown",
        "lr_scheduler.interval: expected null, 'epoch' or 'step'",
        changes={"lr_scheduler": {"type": "StepLR", "args": {"step_size": 1}, "interval": "hour"}},
    ),
    case(
        "warmup-stepped-per-epoch",
        "lr_scheduler.interval: a warmup is stepped per optimizer step",
        changes={"lr_scheduler": {"type": "StepLR", "args": {"step_size": 1}, "interval": "epoch", "warmup_steps": 3}},
    ),
    case(
        "warmup-before-plateau",
        "lr_scheduler.warmup_steps: ReduceLROnPlateau cannot follow a warmup",
        changes={"lr_scheduler": {"type": "ReduceLROnPlateau", "args": {}, "warmup_steps": 3}},
    ),
    case(
        "onecycle-too-few-steps",
        "lr_scheduler.args: OneCycleLR's total_steps gives 1 steps, fewer than the run's",
        changes={"lr_scheduler": {"type": "OneCycleLR", "args": {"max_lr": 0.1, "total_steps": 1}}},
    ),
    case(
        "onecycle-too-few-epochs-times-steps",
        "lr_scheduler.args: OneCycleLR's epochs x steps_per_epoch gives 1 steps, fewer than the run's",
        changes={"lr_scheduler": {"type": "OneCycleLR", "args": {"epochs": 1, "steps_per_epoch": 1}}},
    ),
    case(
        "plateau-stepped-per-step",
        'lr_scheduler.interval: ReduceLROnPlateau is stepped once per epoch; set interval to "epoch"',
        changes={"lr_scheduler": {"type": "ReduceLROnPlateau", "args": {}, "interval": "step"}},
    ),
    case(
        "plateau-mode-against-monitor",
        "lr_scheduler.args.mode: 'max' disagrees with trainer.monitor",
        changes={"lr_scheduler": {"type": "ReduceLROnPlateau", "args": {"mode": "max"}}},
    ),
    case(
        "sequential-without-schedulers",
        "lr_scheduler.args: SequentialLR does not accept",
        changes={"lr_scheduler": {"type": "SequentialLR", "args": {}}},
    ),
    case("dropout-above-1", "arch.args: TinyConvNet rejected its arguments", changes={"arch.args.dropout": 2}),
    case("width-text", 'arch.args.width: expected a number, got "8"', changes={"arch.args.width": "8"}),
    case("batch_size-0", "data_loader.args.batch_size: expected an integer >= 1, got 0", args=["--bs", "0"]),
    case(
        "validation_split-all",
        "data_loader.args.validation_split: 1.0 leaves no training data",
        changes={"data_loader.args.validation_split": 1.0},
    ),
    case(
        "validation_split-negative",
        "data_loader.args.validation_split: expected",
        changes={"data_loader.args.validation_split": -0.1},
    ),
    case(
        "num_workers-negative", "data_loader.args.num_workers: expected", changes={"data_loader.args.num_workers": -1}
    ),
    case(
        "device_resident-yes",
        "data_loader.args.device_resident: expected",
        changes={"data_loader.args.device_resident": "yes"},
    ),
    case("loader-args-list", "data_loader.args: expected an object", changes={"data_loader.args": []}),
    # the model against the data
    case(
        "num_classes-too-small",
        "arch.args.num_classes: TinyConvNet outputs 2 classes",
        changes={"arch.args.num_classes": 2},
    ),
    case(
        "fewer-outputs-than-class-names",
        "arch.args.num_classes: TinyConvNet outputs 3 classes, but RareClassLoader names 4 (horizontal, vertical, "
        "cross, dot); set arch.args.num_classes to 4 (or leave it out: it defaults to the number of class names)",
        changes={"data_loader.type": "RareClassLoader"},
    ),
    case(
        "more-outputs-than-class-names",
        "arch.args.num_classes: TinyConvNet outputs 10 classes, but TinyTensorLoader names 3 (horizontal, vertical, "
        "cross); set arch.args.num_classes to 3 (or leave it out: it defaults to the number of class names), or name "
        "all 10 classes in TinyTensorLoader's classes",
        changes={"arch.args.num_classes": 10},
    ),
    *(
        case(
            f"rare-label-beyond-the-outputs-{path}",
            "arch.args.num_classes: TinyConvNet outputs 3 classes, but the data has label 3",
            changes={"data_loader.type": "UnnamedRareClassLoader", "data_loader.args.device_resident": resident},
        )
        for path, resident in (("held-on-the-device", True), ("read-by-a-dataloader", False))
    ),
    case("in_channels-wrong", "arch: TinyConvNet cannot take the data's batches", changes={"arch.args.in_channels": 3}),
    case(
        "float-images",
        "data_loader: its batches hold float32 (32, 1, 8, 8); an ImageDataLoader's load_split must give uint8 images",
        changes={"data_loader.type": "TinyFloatLoader"},
    ),
    case(
        "float-images-read-by-a-dataloader",
        "data_loader: its batches hold float32 (32, 1, 8, 8); an ImageDataLoader's load_split must give uint8 images",
        changes={"data_loader.type": "TinyFloatLoader", "data_loader.args.device_resident": False},
    ),
    case(
        "images-hwc",
        "data_loader: its batches hold images of shape (32, 8, 8, 1), 8 channels as N x C x H x W, but the loader's "
        "mean has 1 values and its std 1; images are N x H x W x C? permute(0, 3, 1, 2) in load_split",
        changes={"data_loader.type": "TinyHwcLoader"},
    ),
    case(
        "images-hwc-read-by-a-dataloader",
        "data_loader: its batches hold images of shape (32, 8, 8, 1), 8 channels",
        changes={"data_loader.type": "TinyHwcDatasetLoader"},
    ),
    case(
        "images-of-two-sizes",
        "data_loader: the items of one batch differ in shape ((1, 7, 8) and (1, 8, 8)), so they cannot be stacked; "
        "give the loader a collate_fn that pads them (see base/base_data_loader.py), or make them one size",
        changes={"data_loader.type": "TinyRaggedLoader"},
    ),
    case(
        "images-of-two-sizes-in-a-worker",
        "data_loader: the items of one batch differ in shape ((1, 7, 8) and (1, 8, 8)), so they cannot be stacked",
        changes={"data_loader.type": "TinyRaggedLoader", "data_loader.args.num_workers": 1},
    ),
    case(
        "rgb-images-one-mean",
        "data_loader: its batches hold images of shape (32, 3, 8, 8), 3 channels as N x C x H x W, but the loader's "
        "mean has 1 values and its std 1; images are N x H x W x C? permute(0, 3, 1, 2) in load_split; mean and std "
        "need one value per channel",
        changes={"data_loader.type": "TinyRgbLoader", "arch.args.in_channels": 3},
    ),
    case(
        "num_classes-neither-set-nor-counted",
        "arch.args.num_classes: not set, and UnnamedTensorLoader names no classes to count; set it in config.json",
        changes={"data_loader.type": "UnnamedTensorLoader", "arch.args.num_classes": DELETE},
    ),
    case("model-returns-a-tuple", "arch: PairOutputNet returns a tuple", changes={"arch.type": "PairOutputNet"}),
    case(
        "batch-norm-last-batch-of-one",
        "batch_size: 63 leaves 1 of the 64 training samples in each epoch's last batch, which BatchNorm1d cannot train "
        "on (one value per channel); use batch_size 64",
        changes={"arch.type": "NormHeadNet"},
        args=["--bs", "63"],
    ),
    # metrics that cannot be added up on the device (tests/hostile.py)
    case(
        "metric-returns-a-float",
        "metrics: hosted_accuracy returned float; return the batch mean as a 0-dim tensor, without .item()",
        changes={"metrics": ["accuracy", "hosted_accuracy"]},
        modules=EXTRA,
    ),
    case(
        "metric-per-sample",
        "metrics: correct returned a tensor of shape (",
        changes={"metrics": ["correct"]},
        modules=EXTRA,
    ),
    case(
        "metric-fails",
        "metrics: top_20_accuracy cannot score the model's output (",
        changes={"metrics": ["top_20_accuracy"]},
        modules=EXTRA,
    ),
    # losses that backward() cannot start from (tests/hostile.py)
    case(
        "loss-per-sample",
        "loss: per_sample_cross_entropy returned a tensor of shape (32,); return the batch mean as a 0-dim float",
        changes={"loss": "per_sample_cross_entropy"},
        modules=EXTRA,
    ),
    case(
        "loss-integer",
        "loss: error_count returned a tensor of int64; return the batch mean",
        changes={"loss": "error_count"},
        modules=EXTRA,
    ),
    case(
        "loss-returns-a-float",
        "loss: hosted_cross_entropy returned float; return the batch mean as a 0-dim float tensor, without .item()",
        changes={"loss": "hosted_cross_entropy"},
        modules=EXTRA,
    ),
    # numbers: finite wherever they sit, in the range an argument's name calls for, of a sane size
    *(
        case(f"non-finite-{key}-in-the-file", f"{key}: expected a finite number, got", changes={key: Verbatim(text)})
        for key, text in NON_FINITE.items()
    ),
    *(
        case(f"non-finite-{key}-set", f"{key}: expected a finite number, got", args=["--set", f"{key}={text}"])
        for key, text in NON_FINITE.items()
    ),
    case(
        "non-finite-in-a-list",
        "optimizer.args.betas.1: expected a finite number, got NaN",
        changes={"optimizer.args.betas": Verbatim("[0.9, NaN]")},
    ),
    case("non-finite-lr-flag", "optimizer.args.lr: expected a finite number, got Infinity", args=["--lr", "1e999"]),
    case("non-finite-nan-flag", "optimizer.args.lr: expected a finite number, got NaN", args=["--lr", "nan"]),
    case(
        "non-finite-in-scheduler-args",
        "lr_scheduler.args.gamma: expected a finite number, got NaN",
        changes={"lr_scheduler": {"type": "StepLR", "args": {"step_size": 1, "gamma": Verbatim("NaN")}}},
    ),
    *(case(f"range-{name}", expect, changes=changes) for name, (changes, expect) in OUT_OF_RANGE_ARGUMENTS.items()),
    *(case(f"too-large-{name}", expect, changes=changes) for name, (changes, expect) in TOO_LARGE.items()),
    *(
        case(f"key-twice-{name}", f"config file '<config>': {expect} appears twice (again on line", changes=changes)
        for name, (changes, expect) in TWICE.items()
    ),
    case(
        "key-twice-in-set",
        "--set 'arch={\"type\": 1, \"type\": 2}': key 'type' appears twice",
        args=["--set", 'arch={"type": 1, "type": 2}'],
    ),  # fmt: skip
    case(
        "metric-twice",
        "metrics: 'accuracy' is listed twice; list each metric once",
        changes={"metrics": ["accuracy", "accuracy"]},
    ),  # fmt: skip
    # what torch warns while building a model it is then refused for stays off the terminal
    case("num_classes-0", "arch.args.num_classes: TinyConvNet outputs 0 classes", changes={"arch.args.num_classes": 0}),
    case("width-0", "arch: TinyConvNet cannot take the data's batches", changes={"arch.args.width": 0}),
    # name, seed and the other top-level keys
    case("name-empty", "name: expected a plain folder name", changes={"name": ""}),
    case("name-dot", "name: expected a plain folder name", changes={"name": "."}),
    case("name-dotdot", "name: expected a plain folder name", changes={"name": ".."}),
    case("name-escapes", "name: expected a plain folder name", changes={"name": "../../x"}),
    case("name-absolute", "name: expected a plain folder name", changes={"name": "/abs"}),
    case("name-backslash", "name: expected a plain folder name", changes={"name": "a\\b"}),
    case("name-too-long", "name: expected a plain folder name", changes={"name": "x" * 300}),
    case(
        "name-too-long-in-bytes",
        "name: expected a plain folder name",
        changes={"name": "é" * 130},
    ),
    case("name-lone-surrogate", "name: expected a plain folder name", changes={"name": "\ud800"}),
    case("seed-negative", "seed: expected an integer from 0 to 2**32 - 1, got -1", changes={"seed": -1}),
    case("seed-huge", "seed: expected an integer from 0 to 2**32 - 1", changes={"seed": 10**30}),
    case("seed-text", "seed: expected", changes={"seed": "1"}),
    case("seed-bool", "seed: expected", changes={"seed": True}),
    case("seed-float", "seed: expected", changes={"seed": 1.5}),
    case("deterministic-text", "deterministic: expected", changes={"deterministic": "yes"}),
    case("device-number", "device: expected", changes={"device": 5}),
    case("arch-missing", "arch: missing", changes={"arch": DELETE}),
    case("loss-missing", "loss: missing", changes={"loss": DELETE}),
    case("metrics-text", "metrics: expected", changes={"metrics": "accuracy"}),
    *(
        case(
            f"metric-named-{name}",
            f"metrics: {name!r} would overwrite what every run records",
            changes={"metrics": ["accuracy", name]},
        )
        for name in ("loss", "lr", "seconds", "epoch", "val_accuracy")
    ),
    case("lr_scheduler-text", "lr_scheduler: expected", changes={"lr_scheduler": "StepLR"}),
    case("trainer-list", "trainer: expected", changes={"trainer": []}),
    case(
        "save_dir-is-a-file",
        "trainer.save_dir: cannot create a run folder",
        changes={"trainer.save_dir": "<tmp>/occupied"},
    ),
    # the file itself
    case("file-missing", "config file '<config>' does not exist", raw=None),
    case("file-is-a-folder", "config file '<tmp>' is a folder; pass '<tmp>/config.json'", args=["-c", "<tmp>"]),
    case("file-not-utf8", "config file '<config>' is not UTF-8", raw='{"name": "caf\xe9"}'.encode("latin-1")),
    case("file-not-json", "config file '<config>' is not valid JSON", raw=b'{"name": "tiny",}'),
    case(
        "file-with-conflict-markers",
        "config file '<config>' holds merge-conflict markers (line 2)",
        raw=b'{\n<<<<<<< ours\n  "seed": 1,\n=======\n  "seed": 2,\n>>>>>>> theirs\n}\n',
    ),
    case("file-empty", "config file '<config>' is not valid JSON", raw=b""),
    case("file-nested-100000", "config file '<config>' is nested too deeply", raw=b"[" * 100_000 + b"]" * 100_000),
    case("file-top-level-list", "config: expected a JSON object", raw=b"[1, 2]"),
    # --set and the other flags
    case("set-bad-json", "--set 'trainer.epochs=[1,': '[1,' is not a JSON value", args=["--set", "trainer.epochs=[1,"]),
    case("set-without-value", "--set 'trainer.epochs': expected KEY.PATH=VALUE", args=["--set", "trainer.epochs"]),
    case("set-list-index", "--set metrics.3: metrics is a list of 1", args=["--set", "metrics.3=accuracy"]),
    case("set-into-a-number", "--set seed.value: seed holds 1", args=["--set", "seed.value=1"]),
    case("device-tpu", "device: unknown device 'tpu'", args=["-d", "tpu"]),
    case(
        "device-mps",
        "device: 'mps' asked for, but this machine has no usable Apple GPU",
        args=["-d", "mps"],
        marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an Apple GPU"),
    ),
    case("device-cuda-7", "device: 'cuda:7' asked for", args=["-d", "cuda:7"]),
    case(
        "device-cuda",
        "device: 'cuda' asked for, but this machine has no usable CUDA GPU",
        args=["-d", "cuda"],
        marks=NO_GPU,
    ),
]


def prepare_config(tmp_path: Path, mistake: Mistake) -> Path:
    path = tmp_path / "config.json"
    (tmp_path / "occupied").write_text("a file where a folder should be\n", encoding="utf-8")
    if mistake.raw is None:
        return path
    if isinstance(mistake.raw, bytes):
        path.write_bytes(mistake.raw)
        return path
    config = small_config(tmp_path / "saved")
    for key, value in mistake.changes.items():
        value = value.replace("<tmp>", str(tmp_path)) if isinstance(value, str) else copy.deepcopy(value)
        set_path(config, key, value)
    text = json.dumps(config, indent=2, default=lambda verbatim: f"<verbatim>{verbatim.text}</verbatim>")
    path.write_text(re.sub(r'"<verbatim>(.*?)</verbatim>"', lambda found: json.loads(f'"{found[1]}"'), text))
    return path


def test_the_config_table_is_big_enough() -> None:
    assert len(CONFIG_MISTAKES) >= 60


@pytest.mark.parametrize("mistake", CONFIG_MISTAKES)
def test_config_mistake_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder, mistake: Mistake
) -> None:
    path = prepare_config(tmp_path, mistake)
    before = snapshot(tmp_path)
    args = [arg.replace("<tmp>", str(tmp_path)) for arg in mistake.args]
    result = run_train(capsys, "-c", path, *args, modules=mistake.modules)
    assert result.code == 2, result.err
    line = result.only_line()
    assert not recwarn.list, [str(warning.message) for warning in recwarn.list]  # pytest takes what would print
    assert mistake.expect.replace("<config>", str(path)).replace("<tmp>", str(tmp_path)) in line, line
    assert_unchanged(before, snapshot(tmp_path))


def test_what_building_warns_is_shown_once_the_run_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held back while the run is built and checked (the refusals above show none), not dropped."""
    real_build_model = trainer_build.build_model

    def build_model_that_warns(*args: Any, **kwargs: Any) -> torch.nn.Module:
        warnings.warn("a warning of the model's own", UserWarning, stacklevel=1)
        return real_build_model(*args, **kwargs)

    monkeypatch.setattr(trainer_build, "build_model", build_model_that_warns)
    with pytest.warns(UserWarning, match="a warning of the model's own"):
        result = run_train(capsys, "-c", write_config(tmp_path / "config.json", small_config(tmp_path / "saved")))
    assert result.code == 0, result.err
    only_run(tmp_path / "saved")


RARE_LABEL = "arch.args.num_classes: the model outputs 3 classes, but the data has label 3; set num_classes"


@pytest.mark.parametrize(
    ("label", "expected"),
    [(3, RARE_LABEL), (-1, "loss: it cannot compare the model's output with the labels (Target -1 is out of bounds")],
    ids=["beyond-the-outputs", "negative"],
)
def test_a_rare_label_read_item_by_item_stops_training_in_one_line_and_leaves_no_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], label: int, expected: str
) -> None:
    """A split read item by item shows its labels only as they come: the loss meets the rare one part way
    through the epoch (or the validation), where it was an IndexError traceback."""
    config = tiny_config(tmp_path / "saved", epochs=2)
    config["data_loader"].update(
        type="RareLabelDatasetLoader", args={"batch_size": 32, "validation_split": 0.2, "rare_label": label}
    )
    result = run_train(capsys, "-c", write_config(tmp_path / "config.json", config))
    assert result.code == 2 and expected in result.error_line(), result.err
    assert not (tmp_path / "saved").exists(), "no run folder (nor its empty parents) left: no epoch finished"


def test_a_rare_test_label_read_item_by_item_is_one_line_from_test_py(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_config(tmp_path / "saved")
    config["data_loader"].update(
        type="RareLabelDatasetLoader", args={"batch_size": 32, "validation_split": 0.2, "rare_in": "none"}
    )
    assert run_train(capsys, "-c", write_config(tmp_path / "config.json", config)).code == 0
    run = only_run(tmp_path / "saved")
    before = snapshot(tmp_path)
    result = run_test(capsys, "-r", run, "--set", 'data_loader.args.rare_in="test"')
    assert result.code == 2 and RARE_LABEL in result.error_line(), result.err
    assert_unchanged(before, snapshot(tmp_path))


# --- malformed checkpoints ------------------------------------------------------------------------------


@dataclass
class Good:
    """A real checkpoint: the run folder, its state (digest removed) and its bytes."""

    run_dir: Path
    state: dict[str, Any]
    data: bytes


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory, logging_restored_after_module: None) -> Good:
    folder = tmp_path_factory.mktemp("good")
    config = write_config(folder / "config.json", small_config(folder / "saved", epochs=1))
    assert train.main(["-c", str(config)], modules=TINY) == 0
    run_dir = only_run(folder / "saved")
    data = (run_dir / "last.pth").read_bytes()
    state = torch.load(run_dir / "last.pth", weights_only=True)
    del state["digest"]
    return Good(run_dir, state, data)


Maker = Callable[[Path, Good], None]  # writes the checkpoint at the path it is given


def saved(change: Callable[[dict[str, Any]], dict[str, Any]]) -> Maker:
    """The good state, changed, saved as the trainer saves (with a digest that matches the change)."""
    return lambda path, good: save_checkpoint(change(copy.deepcopy(good.state)), path)


def without(key: str) -> Maker:
    return saved(lambda state: {name: value for name, value in state.items() if name != key})


def with_value(key: str, value: Any) -> Maker:
    return saved(lambda state: {**state, key: value})


def raw_bytes(data: bytes) -> Maker:
    return lambda path, good: path.write_bytes(data)


def make_folder(path: Path, good: Good) -> None:
    path.mkdir()


def make_truncated(path: Path, good: Good) -> None:
    path.write_bytes(good.data[: len(good.data) // 2])


class Planted:
    """Pickled by torch.save as a call to os.mkdir: a weights_only load must refuse to make it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return os.mkdir, (str(self.marker),)


def make_pickled_object(path: Path, good: Good) -> None:
    torch.save({**good.state, "model": Planted(path.parent / "planted")}, path)


def make_foreign_optimizer(path: Path, good: Good) -> None:
    other = torch.optim.Adam(torch.nn.Linear(2, 2).parameters())
    save_checkpoint({**good.state, "optimizer": other.state_dict()}, path)


def make_changed_weight_old_digest(path: Path, good: Good) -> None:
    state = copy.deepcopy(good.state)
    state["model"]["head.1.weight"][0, 0] += 1
    torch.save({**state, "digest": digest(good.state)}, path)


def make_flipped_byte(path: Path, good: Good) -> None:
    """One bit flipped inside the stored bytes of a weight tensor (found by its contents in the file)."""
    tensor = good.state["model"]["head.1.weight"].contiguous().numpy().tobytes()
    data = bytearray(good.data)
    start = data.find(tensor)
    assert start > 0 and data.count(tensor) == 1
    data[start + len(tensor) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def make_other_width(path: Path, good: Good) -> None:
    save_checkpoint({**good.state, "model": TinyConvNet(width=6).state_dict()}, path)


def rng_with(name: str, value: Any) -> Maker:
    return saved(lambda state: {**state, "rng": {**state["rng"], name: value}})


def mid_epoch(**point: Any) -> Maker:
    sums = {"names": ["loss", "accuracy"], "sums": torch.zeros(2, dtype=torch.float64), "count": 0}
    return saved(lambda state: {**state, "mid_epoch": {"epoch": 2, "step": 1, "metric_sums": sums, **point}})


def monitor_with(**values: Any) -> Maker:
    return saved(lambda state: {**state, "monitor": {**state["monitor"], **values}})


@dataclass
class Broken:
    """A malformed checkpoint: how to make it, what the error line names (``<path>``: the file), and
    whether test.py must refuse it too (it needs only arch, epoch, config and model)."""

    make: Maker
    expect: str = "<path>"
    evaluation_refuses: bool = True


def broken(case_id: str, make: Maker, expect: str = "<path>", evaluation_refuses: bool = True, marks: Any = ()) -> Any:
    return pytest.param(Broken(make, expect, evaluation_refuses), id=case_id, marks=marks)


MALFORMED_CHECKPOINTS = [
    broken("no-such-file", lambda path, good: None),
    broken("a-folder", make_folder),
    broken("text-file", raw_bytes(b"hello, I am not a checkpoint\n")),
    broken("three-bytes", raw_bytes(b"abc")),
    broken("empty-file", raw_bytes(b"")),
    broken("zeros", raw_bytes(bytes(4096))),
    broken("truncated", make_truncated),
    broken("pickled-object", make_pickled_object),
    broken("top-level-list", lambda path, good: torch.save([1, 2, 3], path)),
    *(broken(f"missing-{key}", without(key)) for key in ("arch", "epoch", "model", "config")),
    *(
        broken(f"missing-{key}", without(key), evaluation_refuses=False)
        for key in ("optimizer", "lr_scheduler", "grad_scaler", "monitor", "rng")
    ),
    broken("model-is-a-list", saved(lambda state: {**state, "model": list(state["model"].values())})),
    broken("model-holds-a-number", saved(lambda state: {**state, "model": {**state["model"], "extra": 1}})),
    broken("epoch-is-text", with_value("epoch", "1")),
    broken("epoch-negative", with_value("epoch", -1)),
    broken("epoch-is-bool", with_value("epoch", True)),
    broken("config-is-a-list", with_value("config", [1])),
    broken(
        "config-without-arch", saved(lambda state: {**state, "config": {"data_loader": state["config"]["data_loader"]}})
    ),
    broken("config-invalid-seed", saved(lambda state: {**state, "config": {**state["config"], "seed": -1}}), "seed:"),
    broken(
        "another-projects-architecture",
        saved(lambda state: {**state, "config": {**state["config"], "arch": {"type": "ResNet18", "args": {}}}}),
        "arch.type: unknown name 'ResNet18'",
    ),
    broken("weights-of-another-width", make_other_width),
    broken("arch-name-mismatch", with_value("arch", "ResNet18"), "arch.type", evaluation_refuses=False),
    broken("optimizer-is-text", with_value("optimizer", "adam"), evaluation_refuses=False),
    broken("optimizer-of-another-model", make_foreign_optimizer, evaluation_refuses=False),
    broken("lr_scheduler-is-text", with_value("lr_scheduler", "StepLR"), evaluation_refuses=False),
    broken("rng-torch-wrong-shape", rng_with("torch", torch.zeros(3, dtype=torch.uint8)), evaluation_refuses=False),
    broken(
        "rng-numpy-wrong-length",
        rng_with("numpy", {"key": [1, 2], "pos": 0, "has_gauss": 0, "gauss": 0.0}),
        evaluation_refuses=False,
    ),
    broken("rng-python-wrong-version", rng_with("python", [1, 2]), evaluation_refuses=False),
    broken("monitor-incomplete", with_value("monitor", {"text": "min val_loss"}), evaluation_refuses=False),
    broken("monitor-best-is-text", monitor_with(best="low"), evaluation_refuses=False),
    broken("digest-wrong", lambda path, good: torch.save({**good.state, "digest": "0" * 64}, path)),
    broken("weight-changed-old-digest", make_changed_weight_old_digest),
    broken("byte-flipped-in-file", make_flipped_byte),
    broken(
        "mid_epoch-without-step", saved(lambda state: {**state, "mid_epoch": {"epoch": 2}}), evaluation_refuses=False
    ),
    broken("mid_epoch-step-is-text", mid_epoch(step="1"), evaluation_refuses=False),
    broken("data_layout-is-text", with_value("data_layout", "64 samples"), evaluation_refuses=False),
    broken("input_shape-is-text", with_value("input_shape", "1x12x12")),
    broken(
        "data_layout-without-steps",
        with_value("data_layout", {"train_samples": 64, "valid_samples": 16}),
        evaluation_refuses=False,
    ),
    broken("mid_epoch-step-past-the-end", mid_epoch(step=99), evaluation_refuses=False),
    broken(
        "mid_epoch-sums-of-other-metrics",
        mid_epoch(metric_sums={"names": ["x"], "sums": torch.zeros(1, dtype=torch.float64), "count": 0}),
        evaluation_refuses=False,
    ),
]


def test_the_checkpoint_table_is_big_enough() -> None:
    assert len(MALFORMED_CHECKPOINTS) >= 20


@pytest.mark.parametrize("bad", MALFORMED_CHECKPOINTS)
def test_malformed_checkpoint_is_one_line(
    good: Good, tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: Broken
) -> None:
    path = tmp_path / "bad.pth"
    bad.make(path, good)
    expect = bad.expect.replace("<path>", str(path))
    before = snapshot(tmp_path, good.run_dir)

    result = run_train(capsys, "-r", path, "--set", "trainer.epochs=2")
    assert result.code == 2, result.err
    assert expect in result.error_line(), result.err
    assert_unchanged(before, snapshot(tmp_path, good.run_dir))
    assert_no_lock(tmp_path)
    if bad.evaluation_refuses:
        result = run_test(capsys, "-r", path)
        assert result.code == 2, result.err
        assert expect in result.error_line(), result.err
        assert_unchanged(before, snapshot(tmp_path, good.run_dir))


@pytest.mark.parametrize("width", [6, 0], ids=["6", "0-which-torch-warns-about"])
def test_test_py_refuses_weights_that_do_not_fit_the_asked_architecture(
    good: Good, capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder, width: int
) -> None:
    before = snapshot(good.run_dir)
    result = run_test(capsys, "-r", good.run_dir / "last.pth", "--set", f"arch.args.width={width}")
    assert result.code == 2
    line = result.only_line()
    assert not recwarn.list, [str(warning.message) for warning in recwarn.list]
    assert str(good.run_dir / "last.pth") in line and "does not fit TinyConvNet" in line, line
    assert_unchanged(before, snapshot(good.run_dir))


def test_a_checkpoint_that_cannot_be_read_is_one_line(
    good: Good, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Permissions cannot stop root, so the read itself fails here."""
    path = tmp_path / "last.pth"
    path.write_bytes(good.data)

    def unreadable(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(torch, "load", unreadable)
    before = snapshot(tmp_path)
    for run in (run_train, run_test):
        result = run(capsys, "-r", path)
        assert result.code == 2
        assert str(path) in result.error_line() and "Permission denied" in result.error_line()
    assert_unchanged(before, snapshot(tmp_path))
