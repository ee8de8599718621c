"""sweep.json: what a sweep searches (dotted config keys and their ranges), the metric it optimizes, and
Optuna's pruner and sampler. Everything is checked before any trial runs, each mistake as one line."""

import json
import math
import multiprocessing
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from base.base_trainer import BaseTrainer
from logger.logger import setup_logging
from parse_config import Config, ObjectSpec, load_config, read_config_file
from trainer.build import RunData, build_trainer
from utils.errors import UsageError
from utils.registry import Registry, check_argument_names
from utils.util import resolve_device

KINDS = ("float", "int", "categorical")
ENTRY_KEYS = {"float": ("type", "low", "high", "log"), "int": ("type", "low", "high", "log")}
ENTRY_KEYS["categorical"] = ("type", "choices")
SPEC_KEYS = ("metric", "space", "pruner", "sampler")
DEFAULT_PRUNER = {"type": "MedianPruner", "args": {}}


@dataclass(frozen=True)
class Param:
    """One searched key: ``float`` or ``int`` between ``low`` and ``high`` (on a log scale if ``log``), or
    one of ``choices``."""

    key: str
    kind: str
    low: float = 0  # an int for an int parameter
    high: float = 0
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial: Any) -> Any:
        """This key's value for an Optuna trial."""
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log)
        return trial.suggest_categorical(self.key, list(self.choices))

    def extremes(self) -> list[Any]:
        """The values a trial can take at the edges of the range: each must make a valid config."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]


@dataclass(frozen=True)
class SweepSpec:
    params: list[Param]
    metric: str | None  # "min val_loss"...; None: the config's trainer.monitor
    pruner: dict[str, Any]  # {"type": a class in optuna.pruners, "args": {...}}
    sampler: dict[str, Any] | None  # {"type": a class in optuna.samplers, "args": {...}}; None: Optuna's default


def read_spec(path: Path) -> SweepSpec:
    label = str(path)
    if not path.exists():
        raise UsageError(f"sweep file {label!r} does not exist; write one (see docs/sweeps.md) or pass --space FILE")
    data = read_config_file(path, "sweep file", "sweep.json")  # one-line errors for bad JSON, as for config.json
    if not isinstance(data, dict) or not isinstance(data.get("space"), dict) or not data["space"]:
        raise UsageError(label + ': expected an object with a non-empty "space" object of KEY.PATH: {"type": ...}')
    unknown = [key for key in data if key not in SPEC_KEYS]
    if unknown:
        raise UsageError(f"{label}: unknown key {unknown[0]!r}; known keys: {', '.join(SPEC_KEYS)}")
    params = [parse_param(key, entry, f"{label}: space.{key}") for key, entry in data["space"].items()]
    pruner = data.get("pruner", DEFAULT_PRUNER) or {"type": "NopPruner"}
    for name in ("pruner", "sampler"):
        value = data.get(name)
        well_formed = isinstance(value, dict) and isinstance(value.get("type"), str)
        if value is not None and not (well_formed and isinstance(value.get("args", {}), dict)):
            raise UsageError(f"{label}: {name}: expected null or " + '{"type": "...", "args": {...}}')
    metric = data.get("metric")
    # Checked here, not by trainer.monitor's parser, whose message would blame the config.
    well_formed = isinstance(metric, str) and len(metric.split()) == 2 and metric.split()[0] in ("min", "max")
    if metric is not None and not well_formed:
        raise UsageError(f"{label}: metric: {json.dumps(metric)} is not understood; write \"min <metric>\" or "
                         '"max <metric>" (e.g. "max val_accuracy"), or null for trainer.monitor')  # fmt: skip
    return SweepSpec(params, metric, pruner, data.get("sampler"))


def parse_param(key: str, entry: Any, label: str) -> Param:
    """One entry of ``space``, checked: a known type, numbers with low < high (low > 0 on a log scale), or
    a non-empty list of plain choices."""
    if not isinstance(entry, dict) or entry.get("type") not in KINDS:
        raise UsageError(f"{label}: expected an object with a type of {', '.join(KINDS)}; got {json.dumps(entry)}")
    kind = entry["type"]
    unknown = [name for name in entry if name not in ENTRY_KEYS[kind]]
    if unknown:
        raise UsageError(f"{label}: unknown key {unknown[0]!r} for a {kind}; known keys: {', '.join(ENTRY_KEYS[kind])}")
    if kind == "categorical":
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UsageError(f'{label}: "choices" must be a non-empty list')
        if not all(choice is None or isinstance(choice, bool | int | float | str) for choice in choices):
            raise UsageError(f"{label}: choices must be numbers, strings, true/false or null (Optuna stores these)")
        return Param(key, kind, choices=tuple(choices))
    low, high, log = entry.get("low"), entry.get("high"), entry.get("log", False)
    number = int if kind == "int" else int | float
    finite = all(isinstance(v, number) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
    if not finite or not isinstance(log, bool):
        raise UsageError(f'{label}: "low" and "high" must be finite {"integers" if kind == "int" else "numbers"}')
    if low >= high:
        raise UsageError(f"{label}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise UsageError(f"{label}: a log scale needs low > 0, got {low}")
    return Param(key, kind, low, high, log) if kind == "int" else Param(key, kind, float(low), float(high), log)


def check_space(
    spec: SweepSpec, config_path: Path, overrides: list[str], registry: Registry, label: str, build: bool = True
) -> None:
    """Build the config, then the config with each edge value of each key, as train.py builds a run before its
    folder exists: an unknown key path, a value the config refuses, or one a class refuses (an argument name, a
    loss, a scheduler without its arguments, a width of 0) is one line now, not a failed trial. The config is
    built alone first, so that its own mistakes are not blamed on the space; its data is loaded once, and
    reused by every edge value that loads the same (SharedData). Without ``build`` (--summary, and --jobs
    workers, whose command checked it all), only the argument names are checked."""
    shared = SharedData()
    check = shared.check_builds if build else check_argument_names_of
    base = load_config(config_path, overrides, registry=registry)
    check(base, registry)
    for param in spec.params:
        if any(text.partition("=")[0].strip() == param.key for text in overrides):
            raise UsageError(f"{label}: space.{param.key} is searched; do not also --set it")
        for value in param.extremes():
            try:
                config = load_config(config_path, [*overrides, f"{param.key}={json.dumps(value)}"], registry=registry)
                if config.to_dict() != base.to_dict():  # the config's own value: checked already
                    check(config, registry)
            except UsageError as err:
                reason = str(err).removeprefix(f"--set {param.key}: ")
                raise UsageError(f"{label}: space.{param.key} = {json.dumps(value)}: {reason}") from None


def check_space_apart(spec: SweepSpec, config_path: Path, overrides: list[str], registry: Registry, label: str) -> None:
    """check_space, with its builds, in a process of its own that ends when it is done. On a GPU the builds make
    a CUDA context, hundreds of MB of GPU memory that a process holds until it ends: a sweep's parent, which
    only supervises its --jobs workers, would hold it all through the sweep. A refusal comes back as the same
    UsageError, raised here; the child's traceback of any other error is its ``__cause__``."""
    # spawn, not fork: a child forked from a process that has asked CUDA anything (torch.cuda.is_available)
    # cannot use CUDA itself.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as child:
        child.submit(_check_space_in_child, spec, config_path, overrides, registry.module_names(), label).result()


def _check_space_in_child(spec: SweepSpec, config_path: Path, overrides: list[str], names: str, label: str) -> None:
    setup_logging(None)  # a spawned process starts without the parent's; the loaders' warnings look the same
    check_space(spec, config_path, overrides, Registry.imported(names), label)


def data_source(config: Config) -> tuple[dict[str, Any], int, str]:
    """What build_run_data's loaders depend on: the data_loader section (its batch size and validation split
    shape the batches, the batch count and the BatchNorm check), the seed that splits and shuffles, and the
    device the data may be held on. Two configs that agree on these load the same loaders."""
    return config.to_dict()["data_loader"], config.seed, config.device


class SharedData:
    """check_builds for check_space's configs, the data loaded only as often as it differs. The first config
    checked (check_space's base) keeps its data for the later ones with the same data_source. Each of those
    differs from the base in one key, so no other data is loaded twice: keeping only the base's holds one copy
    of the data however many keys are searched."""

    def __init__(self) -> None:
        self.source: tuple[dict[str, Any], int, str] | None = None
        self.data: RunData | None = None

    def check_builds(self, config: Config, registry: Registry) -> None:
        check_builds(config, registry, self)

    def reusable_for(self, config: Config) -> RunData | None:
        """The kept data if ``config`` loads the same, else None (it loads its own)."""
        return self.data if self.data is not None and data_source(config) == self.source else None

    def keep_first(self, config: Config, trainer: BaseTrainer) -> None:
        if self.data is None:
            self.source = data_source(config)
            self.data = RunData(trainer.train_loader, trainer.valid_loader, trainer.classes)


def check_builds(config: Config, registry: Registry, shared: SharedData | None = None) -> None:
    """What train.py builds and checks before it makes a run folder (data, model, loss, metrics, optimizer,
    schedule, one batch through the model), then drops; the argument names first, the quickest to tell. The
    data comes from ``shared`` when it holds the same; only the model's initial weights can then differ from
    train.py's (a loader of yours that draws from the global RNG), and no check depends on their values."""
    check_argument_names_of(config, registry)
    device = resolve_device(config.device)
    shared = shared or SharedData()
    with warnings.catch_warnings():  # only a refusal counts here; a trial shows its config's warnings itself
        warnings.simplefilter("ignore")
        trainer = build_trainer(config, registry, device, shared.reusable_for(config))
        shared.keep_first(config, trainer)
        trainer.check_one_batch()
    if device.type == "cuda":  # give back the memory of what was built before the trials need it
        torch.cuda.empty_cache()


def check_argument_names_of(config: Config, registry: Registry) -> None:
    """Each class config.json names takes the arguments it is given (names only; nothing is built), as
    trainer/build.py's build_trainer would find."""
    check_argument_names(config.arch, "arch", registry.models, torch.nn.Module)
    check_argument_names(config.optimizer, "optimizer", torch.optim, torch.optim.Optimizer, n_given=1)
    if config.lr_scheduler is not None:
        schedule = ObjectSpec(config.lr_scheduler.type, config.lr_scheduler.args)
        check_argument_names(schedule, "lr_scheduler", torch.optim.lr_scheduler, LRScheduler, n_given=1)
