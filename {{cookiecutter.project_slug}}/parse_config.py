"""config.json: what it may hold, loading it with ``--set`` overrides, and building the objects it names.

Everything a run needs is one ``Config``. The keys that define the experiment (``arch``,
``data_loader``, ``optimizer``, ``loss``, ``metrics``) are required; every other key has a default,
so a config or checkpoint written by an older or newer version of this template still loads.
"""

import copy
import dataclasses
import difflib
import inspect
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from base.base_data_loader import BaseDataLoader
from trainer.settings import TrainerSettings, upgrade_retired_keys
from utils import victoresque
from utils.errors import ConfigRefused, UsageError, first_sentence
from utils.settings import REQUIRED, from_dict, is_number, setting, unknown_key
from utils.util import read_json

logger = logging.getLogger(__name__)

# Text that cannot start a JSON value is taken as a string, so `--set device=cuda:1` and
# `--set trainer.monitor="max val_accuracy"` need no inner quotes; `0.0.1` or `[1,` stay errors.
_JSON_START = re.compile(r'[-0-9\[{"]')
_OBJECT = 'an object {"type": ..., "args": {...}}'


def _is_folder_name(name: str) -> bool:
    try:
        size = len(name.encode("utf-8"))  # a lone surrogate ("\ud800" in JSON) has no encoding
    except UnicodeEncodeError:
        return False
    return name not in ("", ".", "..") and not any(char in name for char in "/\\\0") and size <= 255


@dataclass(frozen=True)
class ObjectSpec:
    """A class to build by name and its keyword arguments: ``{"type": "Adam", "args": {"lr": 0.003}}``."""

    type: str = setting(REQUIRED, "the name of a class")
    args: dict = setting({}, "an object of keyword arguments")


@dataclass(frozen=True)
class SchedulerSpec:
    """``lr_scheduler``: a class in torch.optim.lr_scheduler, its arguments, how it is stepped (trainer/schedule.py)."""

    type: str = setting(REQUIRED, "the name of a class in torch.optim.lr_scheduler")
    args: dict = setting({}, "an object of keyword arguments")
    interval: str | None = setting(None, "null, 'epoch' or 'step'", lambda v: v in ("epoch", "step"))
    warmup_steps: int = setting(0, "an integer >= 0 (optimizer steps of linear warmup)", lambda v: v >= 0)


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole configuration of one run, validated; ``to_dict()`` is what the run records."""

    name: str = setting(
        "experiment", "a plain folder name (no / or \\, not '.' or '..', at most 255 bytes)", _is_folder_name
    )
    seed: int = setting(42, "an integer from 0 to 2**32 - 1", lambda v: 0 <= v < 2**32)
    device: str = setting("auto", "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    deterministic: bool = setting(False, "true (reproducible kernels, slower) or false")
    arch: ObjectSpec = setting(REQUIRED, _OBJECT)
    data_loader: ObjectSpec = setting(REQUIRED, _OBJECT)
    optimizer: ObjectSpec = setting(REQUIRED, _OBJECT)
    loss: str = setting(REQUIRED, "the name of a function in model/loss.py")
    metrics: list[str] = setting(REQUIRED, "a list of function names from model/metric.py")
    lr_scheduler: SchedulerSpec | None = setting(None, f"null or {_OBJECT}")
    trainer: TrainerSettings = setting(TrainerSettings(), "an object of trainer settings")

    @classmethod
    def from_dict(cls, data: Any, strict: bool = True) -> "Config":
        """Validate ``data``; with ``strict=False`` (a recorded config) unknown keys are dropped and logged."""
        dropped: list[str] = []
        config = from_dict(cls, upgrade_retired_keys(data, strict), "", strict, dropped)
        if dropped:
            logger.warning("Ignoring keys this version of the project does not know: %s", ", ".join(dropped))
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(
    path: Path | None, overrides: list[str], recorded: dict[str, Any] | None = None, registry: "Registry | None" = None
) -> Config:
    """The config file at ``path`` (or, without one, ``recorded``: a checkpoint's config), with every
    default filled in and then ``overrides`` (``KEY.PATH=VALUE`` texts) applied. A file written for
    victoresque/pytorch-template is refused with every edit it needs, the names ``registry`` lacks included."""
    if path is not None:
        data = read_config_file(Path(path))
        victoresque.check_config(data, f"config file {str(path)!r}", registry_names(registry) if registry else None)
        config = Config.from_dict(data, strict=True)
    elif recorded is not None:
        config = Config.from_dict(recorded, strict=False)
    else:
        raise UsageError("no configuration given; pass -c config.json (or -r CHECKPOINT to resume)")
    if not overrides:
        return config
    data = config.to_dict()  # every key exists now, so --set can change any of them
    for text in overrides:
        apply_override(data, *parse_override(text))
    return Config.from_dict(data)


def read_config_file(path: Path, what: str = "config file", usual_name: str = "config.json") -> Any:
    """The JSON in ``path``, or a one-line UsageError calling it ``what`` (a sweep file names sweep.json)."""
    label = f"{what} {str(path)!r}"
    if path.is_dir():
        raise UsageError(f"{label} is a folder; pass {str(path / usual_name)!r} or another file")
    if not path.is_file():
        raise UsageError(f"{label} does not exist; pass -c path/to/config.json")
    try:
        return read_json(path)
    except json.JSONDecodeError as err:
        conflict = _conflict_marker_line(path)
        if conflict:  # what a cruft update or a git merge with conflicts leaves
            raise UsageError(
                f"{label} holds merge-conflict markers (line {conflict}); keep one side of "
                "each conflict, delete the <<<<<<< ======= >>>>>>> lines, and run again"
            ) from None
        raise UsageError(f"{label} is not valid JSON: {err}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{label} is not UTF-8 text; save it as UTF-8") from None
    except RecursionError:
        raise UsageError(f"{label} is nested too deeply to be a config") from None
    except OSError as err:
        raise UsageError(f"{label} cannot be read: {err.strerror}") from None


def _conflict_marker_line(path: Path) -> int | None:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next((number for number, line in enumerate(lines, 1) if line.startswith(("<<<<<<< ", ">>>>>>> "))), None)


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b.c=VALUE`` and parse VALUE as JSON (a bare word is a string)."""
    path, sep, raw = text.partition("=")
    if not sep or not path.strip():
        raise ConfigRefused(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. --set optimizer.args.lr=0.01")
    raw = raw.strip()
    try:
        return path.strip(), json.loads(raw)
    except json.JSONDecodeError:
        if raw and not _JSON_START.match(raw):
            return path.strip(), raw
        raise ConfigRefused(
            f"--set {text!r}: {raw!r} is not a JSON value; quote strings as '\"text\"', "
            "write numbers as 0.01, booleans as true/false, lists as [1,2]"
        ) from None


def apply_override(config: dict[str, Any], path: str, value: Any) -> None:
    """Set ``config[a][b][c] = value`` for ``path`` ``a.b.c``; the path must already exist,
    except for a new keyword inside an ``args`` object (a constructor argument)."""
    keys = path.split(".")
    node: Any = config
    for depth, key in enumerate(keys):
        where = ".".join(keys[:depth])
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigRefused(f"--set {path}: {where} is a list of {len(node)}; use an index 0..{len(node) - 1}")
            key = int(key)
        elif isinstance(node, dict):
            if key not in node and not (last and keys[depth - 1 : depth] == ["args"]):
                raise unknown_key(f"--set {path}", key, list(node))
        else:
            raise ConfigRefused(f"--set {path}: {where} holds {json.dumps(node)}, which has no key {key!r}")
        if last:
            node[key] = value
        else:
            node = node[key]


@dataclass(frozen=True)
class Registry:
    """The modules whose classes and functions config.json names. The entry points hand in the
    project's own (model/ and data_loader/); tests hand in theirs."""

    models: ModuleType
    data_loaders: ModuleType
    losses: ModuleType
    metrics: ModuleType


def registry_names(registry: Registry) -> dict[str, list[str]]:
    """The names each key that names your code may give (as ``build`` and ``lookup_function`` look them up)."""
    return {
        "arch.type": _available(registry.models, torch.nn.Module),
        "data_loader.type": _available(registry.data_loaders, BaseDataLoader),
        "loss": _available(registry.losses, None),
        "metrics": _available(registry.metrics, None),
    }


def build(spec: ObjectSpec, key: str, module: ModuleType, base: type, *args: Any, **kwargs: Any) -> Any:
    """``module.<spec.type>(*args, **spec.args, **kwargs)``: only subclasses of ``base`` can be named,
    and keyword arguments given here win over the config's, since the caller needs them to hold."""
    factory, signature = _factory(spec, key, module, base)
    arguments = {**copy.deepcopy(spec.args), **kwargs}
    if signature is not None:
        _refuse_missing_parameters(key, factory.__name__, signature, kwargs)
        _check_arguments(key, factory.__name__, signature, len(args), arguments)
    for name, value in spec.args.items():
        default = signature.parameters[name].default if signature and name in signature.parameters else None
        if is_number(default) and not is_number(value):  # e.g. --set optimizer.args.lr=abc
            raise ConfigRefused(f"{key}.args.{name}: expected a number, got {json.dumps(value)}")
    try:
        return factory(*args, **arguments)
    except Exception as err:  # anything a constructor raises about its arguments (--debug shows where)
        refusal = f"{key}.args: {factory.__name__} rejected its arguments: {first_sentence(err)}"
        raise _refusal_kind(err)(refusal) from None


def _refusal_kind(err: Exception) -> type[UsageError]:
    """ConfigRefused for what a constructor raises about its arguments; a plain UsageError for what it raises
    about the machine (a file it cannot read, a UsageError of its own that is not about the config), which
    a sweep must not blame on a trial's values."""
    about_the_machine = isinstance(err, OSError) or (isinstance(err, UsageError) and not isinstance(err, ConfigRefused))
    return UsageError if about_the_machine else ConfigRefused


def check_argument_names(spec: ObjectSpec, key: str, module: ModuleType, base: type, n_given: int = 0) -> None:
    """Without building anything: the class ``spec`` names exists and takes each argument it gives (after
    ``n_given`` positional ones from the code); a sweep checks the values it will try with this."""
    factory, signature = _factory(spec, key, module, base)
    if signature is not None:
        _refuse_unknown_arguments(key, signature, n_given, spec.args)


def _factory(spec: ObjectSpec, key: str, module: ModuleType, base: type) -> tuple[Any, inspect.Signature | None]:
    """The class ``spec`` names and its signature (None for the builtins that have none to check against)."""
    factory = _lookup(module, spec.type, f"{key}.type", base)
    try:
        return factory, inspect.signature(factory)
    except ValueError:
        return factory, None


def _refuse_unknown_arguments(key: str, signature: inspect.Signature, n_given: int, arguments: dict) -> None:
    """'unknown key; did you mean' for an argument name the signature has no place for."""
    parameters = signature.parameters.values()
    given = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:n_given]
    named = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in given]
    unknown = [argument for argument in arguments if argument not in signature.parameters]
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in parameters):
        raise unknown_key(f"{key}.args.{unknown[0]}", unknown[0], named)


def _refuse_missing_parameters(key: str, name: str, signature: inspect.Signature, passed: dict) -> None:
    """One line when ``name`` has no parameter for an argument the code ``passed`` to it (a data loader's seed):
    the user never wrote it, so 'unknown key' would send them looking in the wrong place."""
    if any(parameter.kind is parameter.VAR_KEYWORD for parameter in signature.parameters.values()):
        return
    missing = [argument for argument in passed if argument not in signature.parameters]
    if missing:
        raise ConfigRefused(
            f"{key}.type: {name}.__init__ has no {missing[0]!r} parameter, which the run passes to every {key}; add it "
            "and pass it on to the base class's __init__ (or take **kwargs and pass those on)"
        )


def _check_arguments(key: str, name: str, signature: inspect.Signature, n_given: int, arguments: dict) -> None:
    """One line for keyword arguments ``name`` cannot take (after ``n_given`` positional ones from the
    code); a misspelt argument name gets a "did you mean"."""
    try:
        signature.bind(*range(n_given), **arguments)
    except TypeError as err:
        _refuse_unknown_arguments(key, signature, n_given, arguments)
        raise ConfigRefused(f"{key}.args: {name} does not accept these arguments ({err})") from None


def lookup_function(module: ModuleType, name: str, key: str) -> Any:
    """The function ``name`` defined in ``module``, which config.json names under ``key``."""
    return _lookup(module, name, key, None)


def _available(module: ModuleType, base: type | None) -> list[str]:
    names = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if base is not None:
            buildable = inspect.isclass(value) and issubclass(value, base) and not inspect.isabstract(value)
            if buildable and value is not base:  # not the base class itself (BaseDataLoader, Optimizer, LRScheduler)
                names.append(name)
        elif inspect.isfunction(value) and value.__module__ == module.__name__:
            names.append(name)
    return sorted(names)


def _lookup(module: ModuleType, name: str, key: str, base: type | None) -> Any:
    options = _available(module, base)
    value = None if name.startswith("_") else getattr(module, name, None)
    # A function named in the config may also be imported, a functools.partial or a module instance (a loss
    # class's object); only the module's own functions are offered, so imports do not crowd the list.
    function_like = callable(value) and not inspect.isclass(value) and not inspect.ismodule(value)
    if name in options or (base is None and function_like):
        return value
    close = difflib.get_close_matches(name, options, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigRefused(f"{key}: unknown name {name!r}; {hint}available: {', '.join(options)}")
