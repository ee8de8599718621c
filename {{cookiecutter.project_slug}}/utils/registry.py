"""Building the classes and functions config.json names (``{"type": ..., "args": ...}``), found by name in the
modules a ``Registry`` holds or in torch's; each mistake is one line with "did you mean" and the names available."""

import copy
import difflib
import importlib
import inspect
import json
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from base.base_data_loader import BaseDataLoader
from base.base_trainer import BaseTrainer
from utils.bounds import check_arguments
from utils.errors import ConfigRefused, UsageError, first_sentence
from utils.settings import REQUIRED, is_number, setting, unknown_key


@dataclass(frozen=True)
class ObjectSpec:
    """A class to build by name and its keyword arguments: ``{"type": "Adam", "args": {"lr": 0.003}}``."""

    type: str = setting(REQUIRED, "the name of a class")
    args: dict = setting({}, "an object of keyword arguments")


@dataclass(frozen=True)
class Registry:
    """The modules whose classes and functions config.json names. The entry points hand in the
    project's own (model/, data_loader/ and trainer/trainer.py); tests hand in theirs."""

    models: ModuleType
    data_loaders: ModuleType
    losses: ModuleType
    metrics: ModuleType
    trainers: ModuleType

    def module_names(self) -> str:
        """Its modules' names, comma-separated, for another process to import (``Registry.imported``)."""
        modules = (self.models, self.data_loaders, self.losses, self.metrics, self.trainers)
        return ",".join(module.__name__ for module in modules)

    @classmethod
    def imported(cls, names: str) -> "Registry":
        """The registry whose ``module_names`` are ``names`` (models, data loaders, losses, metrics, trainers)."""
        return cls(*(importlib.import_module(name) for name in names.split(",")))


def registry_names(registry: Registry) -> dict[str, list[str]]:
    """The names each key that names your code may give (as ``build`` and ``lookup_function`` look them up)."""
    return {
        "arch.type": _available(registry.models, torch.nn.Module),
        "data_loader.type": _available(registry.data_loaders, BaseDataLoader),
        "loss": _available(registry.losses, None),
        "metrics": _available(registry.metrics, None),
        "trainer.type": _available(registry.trainers, BaseTrainer),
    }


def build(spec: ObjectSpec, key: str, module: ModuleType, base: type, *args: Any, **kwargs: Any) -> Any:
    """``module.<spec.type>(*args, **spec.args, **kwargs)``: only subclasses of ``base`` can be named,
    and keyword arguments given here win over the config's, since the caller needs them to hold."""
    factory, signature = _factory(spec, key, module, base)
    arguments = {**copy.deepcopy(spec.args), **kwargs}
    if signature is not None:
        _refuse_missing_parameters(key, factory.__name__, signature, kwargs)
        _refuse_unknown_arguments(key, factory, signature, len(args), spec.args)
        try:  # the names are known now: a required argument missing, or one given twice
            signature.bind(*range(len(args)), **arguments)
        except TypeError as err:
            raise ConfigRefused(f"{key}.args: {factory.__name__} does not accept these arguments ({err})") from None
    for name, value in spec.args.items():
        default = signature.parameters[name].default if signature and name in signature.parameters else None
        if is_number(default) and not is_number(value):  # e.g. --set optimizer.args.lr=abc
            raise ConfigRefused(f"{key}.args.{name}: expected a number, got {json.dumps(value)}")
    if module in (torch.optim, torch.optim.lr_scheduler):  # torch checks the range of some of their arguments
        check_arguments(spec.args, f"{key}.args")
    try:
        return factory(*args, **arguments)
    except Exception as err:  # anything a constructor raises about its arguments (--debug shows where)
        refusal = f"{key}.args: {factory.__name__} rejected its arguments: {first_sentence(err)}"
        # What it raises about the machine (a file it cannot read, a UsageError of its own that is not about the
        # config) stays a plain UsageError, which a sweep must not blame on a trial's values.
        about_the_machine = isinstance(err, OSError | UsageError) and not isinstance(err, ConfigRefused)
        raise (UsageError if about_the_machine else ConfigRefused)(refusal) from None


def check_argument_names(spec: ObjectSpec, key: str, module: ModuleType, base: type, n_given: int = 0) -> None:
    """Without building anything: the class ``spec`` names exists and takes each argument it gives (after
    ``n_given`` positional ones from the code); a sweep checks the values it will try with this."""
    factory, signature = _factory(spec, key, module, base)
    if signature is not None:
        _refuse_unknown_arguments(key, factory, signature, n_given, spec.args)


def _factory(spec: ObjectSpec, key: str, module: ModuleType, base: type) -> tuple[Any, inspect.Signature | None]:
    """The class ``spec`` names and its signature (None for the builtins that have none to check against)."""
    factory = _lookup(module, spec.type, f"{key}.type", base)
    try:
        return factory, inspect.signature(factory)
    except ValueError:
        return factory, None


def _refuse_unknown_arguments(key: str, factory: Any, signature: inspect.Signature, n_given: int,
                              arguments: dict) -> None:  # fmt: skip
    """'unknown key; did you mean' for an argument name the signature has no place for."""
    parameters = signature.parameters.values()
    given = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:n_given]
    named = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in given]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters)
    if takes_any and inspect.isclass(factory) and issubclass(factory, BaseDataLoader):
        # A data loader's **loader_args end in the base class's settings: its own parameters and those are all.
        named, takes_any = factory.argument_names(), False
    unknown = [argument for argument in arguments if argument not in signature.parameters and argument not in named]
    if unknown and not takes_any:
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


def lookup_function(module: ModuleType, name: str, key: str) -> Any:
    """The function ``name`` defined in ``module``, which config.json names under ``key``."""
    return _lookup(module, name, key, None)


def lookup_class(module: ModuleType, name: str, key: str, base: type) -> Any:
    """The subclass of ``base`` named ``name`` in ``module``, which config.json names under ``key``."""
    return _lookup(module, name, key, base)


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
    if base is not None and (function_like or inspect.isclass(value)):
        raise ConfigRefused(f"{key}: {name!r} {_not_buildable(value, base)}; available: {', '.join(options)}")
    close = difflib.get_close_matches(name, options, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigRefused(f"{key}: unknown name {name!r}; {hint}available: {', '.join(options)}")


def _not_buildable(value: Any, base: type) -> str:
    """Why ``value``, found under the name the config gives, cannot be built where a ``base`` is wanted: a
    function (a factory such as torchvision's resnet18) or other object, the base class itself, an abstract
    class or another kind of class: "unknown name" would send the user looking for a name that is there."""
    if base is torch.nn.Module:
        wanted = (
            "an nn.Module class (subclass BaseModel or nn.Module; for a model a function builds, a class "
            "whose __init__ calls it)"
        )
    else:
        wanted = f"a {base.__name__} subclass"
    if not inspect.isclass(value):
        what = "a function" if inspect.isroutine(value) else f"a {type(value).__name__} object"
        return f"is {what}, not a class; name {wanted}"
    if value is base:
        return f"is the base class itself; name {wanted}"
    if issubclass(value, base):
        return f"is abstract (its abstract methods are not all defined); name {wanted} that defines them"
    return f"is a class, but not a {base.__name__} subclass; name {wanted}"
