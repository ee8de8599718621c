"""The run configuration: loading, command-line overrides, validation and building objects by name."""

import copy
import difflib
import inspect
import json
import math
import re
from argparse import Namespace
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from utils.util import AMP_MODES, ConfigError, read_json

__all__ = [
    "ConfigError",
    "ConfigParser",
    "Monitor",
    "apply_override",
    "create_run_dir",
    "shortcut_overrides",
    "validate_config",
]

# Text that cannot start a JSON value is taken as a string, so `--set device=cuda:1` and
# `--set trainer.monitor="max val_accuracy"` need no inner quotes; `0.0.1` or `[1,` stay errors.
_JSON_START = re.compile(r'[-0-9\[{"]')


@dataclass(frozen=True)
class Monitor:
    """What ``trainer.monitor`` asks for: ``"min val_loss"``, ``"max val_accuracy"`` or ``"off"``."""

    mode: str
    metric: str = ""

    @classmethod
    def parse(cls, text: str) -> "Monitor":
        words = text.split()
        if words == ["off"]:
            return cls("off")
        if len(words) != 2 or words[0] not in ("min", "max"):
            raise ConfigError(
                f"trainer.monitor: {text!r} is not understood; write 'min <metric>', "
                "'max <metric>' or 'off' (e.g. 'min val_loss')"
            )
        return cls(words[0], words[1])

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    @property
    def worst(self) -> float:
        return math.inf if self.mode == "min" else -math.inf

    def improved(self, value: float, best: float) -> bool:
        if not self.enabled or math.isnan(value):
            return False
        return value < best if self.mode == "min" else value > best


COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

# key -> (accepted types, what to write instead when the value is wrong[, extra check])
_TOP_LEVEL: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str,), "a run name"),
    "seed": ((int,), "an integer"),
    "device": ((str,), "'auto', 'cpu', 'cuda' or 'cuda:N'"),
    "deterministic": ((bool,), "true (reproducible kernels, slower) or false"),
    "arch": ((dict,), 'an object {"type": ..., "args": {...}}'),
    "data_loader": ((dict,), 'an object {"type": ..., "args": {...}}'),
    "optimizer": ((dict,), 'an object {"type": ..., "args": {...}}'),
    "loss": ((str,), "the name of a function in model/loss.py"),
    "metrics": ((list,), "a list of function names from model/metric.py"),
    "trainer": ((dict,), "an object of trainer settings"),
}
_OPTIONAL_TOP_LEVEL = {"lr_scheduler": ((dict, type(None)), 'null or {"type": ..., "args": {...}}')}
_TRAINER: dict[str, tuple[tuple[type, ...], str, Any]] = {
    "epochs": ((int,), "an integer >= 1", lambda v: v >= 1),
    "save_dir": ((str,), "a folder path", None),
    "save_period": ((int,), "an integer >= 1", lambda v: v >= 1),
    "verbosity": ((int,), "0, 1 or 2", lambda v: v in (0, 1, 2)),
    "monitor": ((str,), "'min <metric>', 'max <metric>' or 'off'", None),
    "early_stop": ((int,), "an integer >= 0 (0 turns it off)", lambda v: v >= 0),
    "keep_last": ((int,), "an integer >= 0 (0 keeps every epoch-N.pth)", lambda v: v >= 0),
    "nonfinite_loss": ((str,), "'stop' or 'skip'", lambda v: v in ("stop", "skip")),
    "grad_accum_steps": ((int,), "an integer >= 1 (1: a step per batch)", lambda v: v >= 1),
    "grad_clip_norm": ((int, float, type(None)), "null or a positive number", lambda v: v is None or v > 0),
    "channels_last": ((bool,), "true or false", None),
    "sync_batchnorm": ((bool,), "true or false", None),
    "compile": ((str,), f"one of {', '.join(COMPILE_MODES)}", lambda v: v in COMPILE_MODES),
    "amp": ((str,), "'auto', 'bf16', 'fp16' or 'off'", lambda v: v in AMP_MODES),{% if cookiecutter.tensorboard %}
    "tensorboard": ((bool,), "true or false", None),{% endif %}
    "log_step": ((int,), "an integer >= 1", lambda v: v >= 1),
}


def _check_type(key: str, value: Any, types: tuple[type, ...], expected: str) -> None:
    # bool is an int in Python; a flag of true where a count belongs is still a mistake.
    if isinstance(value, bool) and bool not in types:
        raise ConfigError(f"{key}: expected {expected}, got {json.dumps(value)}")
    if not isinstance(value, types):
        raise ConfigError(f"{key}: expected {expected}, got {json.dumps(value)}")


def _unknown_key(label: str, key: str, known: list[str]) -> ConfigError:
    """``label: unknown key; did you mean ...?`` where ``label`` names the key as the user wrote it."""
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ConfigError(f"{label}: unknown key; {hint}known keys: {', '.join(sorted(known))}")


def validate_config(config: dict[str, Any]) -> None:
    """Check every key the trainer reads before anything is built, so mistakes fail fast."""
    known = {**_TOP_LEVEL, **_OPTIONAL_TOP_LEVEL}
    for key in config:
        if key not in known:
            raise _unknown_key(key, key, list(known))
    for key, (types, expected) in _TOP_LEVEL.items():
        if key not in config:
            raise ConfigError(f"{key}: missing; expected {expected}")
        _check_type(key, config[key], types, expected)
    for key, (types, expected) in _OPTIONAL_TOP_LEVEL.items():
        if key in config:
            _check_type(key, config[key], types, expected)
    for section in ("arch", "data_loader", "optimizer", "lr_scheduler"):
        spec = config.get(section)
        if spec is None:
            continue
        if not isinstance(spec.get("type"), str):
            raise ConfigError(f"{section}.type: missing; expected the name of a class")
        if not isinstance(spec.get("args", {}), dict):
            raise ConfigError(f"{section}.args: expected an object of keyword arguments")
    if not all(isinstance(name, str) for name in config["metrics"]):
        raise ConfigError("metrics: expected a list of function names from model/metric.py")
    trainer = config["trainer"]
    for key in trainer:
        if key not in _TRAINER:
            raise _unknown_key(f"trainer.{key}", key, list(_TRAINER))
    for key, (types, expected, check) in _TRAINER.items():
        if key not in trainer:
            raise ConfigError(f"trainer.{key}: missing; expected {expected}")
        _check_type(f"trainer.{key}", trainer[key], types, expected)
        if check is not None and not check(trainer[key]):
            raise ConfigError(f"trainer.{key}: expected {expected}, got {json.dumps(trainer[key])}")
    Monitor.parse(trainer["monitor"])


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b.c=VALUE`` and parse VALUE as JSON (a bare word is a string)."""
    path, sep, raw = text.partition("=")
    if not sep or not path.strip():
        raise ConfigError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. --set optimizer.args.lr=0.01")
    raw = raw.strip()
    try:
        return path.strip(), json.loads(raw)
    except json.JSONDecodeError:
        if raw and not _JSON_START.match(raw):
            return path.strip(), raw
        raise ConfigError(
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
                raise ConfigError(f"--set {path}: {where} is a list of {len(node)}; use an index 0..{len(node) - 1}")
            key = int(key)
        elif isinstance(node, dict):
            if key not in node and not (last and keys[depth - 1 : depth] == ["args"]):
                raise _unknown_key(f"--set {path}", key, list(node))
        else:
            raise ConfigError(f"--set {path}: {where} holds {json.dumps(node)}, which has no key {key!r}")
        if last:
            node[key] = value
        else:
            node = node[key]


def shortcut_overrides(args: Namespace) -> list[str]:
    """``--device``, ``--lr`` and ``--bs`` as ``--set`` overrides, followed by the explicit ``--set`` ones."""
    shortcuts = []
    if getattr(args, "device", None) is not None:
        shortcuts.append(f"device={args.device}")
    if getattr(args, "lr", None) is not None:
        shortcuts.append(f"optimizer.args.lr={args.lr!r}")
    if getattr(args, "bs", None) is not None:
        shortcuts.append(f"data_loader.args.batch_size={args.bs}")
    return shortcuts + list(args.overrides)


class ConfigParser:
    """The resolved configuration of one run plus the helpers that build objects from it."""

    def __init__(self, config: dict[str, Any]) -> None:
        validate_config(config)
        self.config = config
        self.monitor = Monitor.parse(config["trainer"]["monitor"])

    @classmethod
    def load(
        cls,
        config_path: Path | None,
        overrides: list[str],
        base: dict[str, Any] | None = None,
    ) -> "ConfigParser":
        """Read ``config_path`` (or start from ``base``, a resumed checkpoint's config), then apply overrides."""
        if config_path is not None:
            path = Path(config_path)
            if not path.is_file():
                raise ConfigError(f"config file {str(path)!r} does not exist; pass -c path/to/config.json")
            try:
                config = read_json(path)
            except json.JSONDecodeError as err:
                raise ConfigError(f"config file {str(path)!r} is not valid JSON: {err}") from None
        elif base is not None:
            config = copy.deepcopy(base)
        else:
            raise ConfigError("no configuration given; pass -c config.json (or -r CHECKPOINT to resume)")
        if not isinstance(config, dict):
            raise ConfigError("config: expected a JSON object at the top level")
        for text in overrides:
            apply_override(config, *parse_override(text))
        return cls(config)

    def __getitem__(self, key: str) -> Any:
        return self.config[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.config.get(key, default)

    def init_obj(self, key: str, module: ModuleType, *args: Any, base: type, **kwargs: Any) -> Any:
        """Build ``module.<config[key].type>(*args, **config[key].args, **kwargs)``.

        Only subclasses of ``base`` found in ``module`` can be named. Keyword arguments given here
        win over the config's, since the caller needs them to hold.
        """
        spec = self.config[key]
        cls = _lookup(module, spec["type"], f"{key}.type", base)
        return _call(cls, f"{key}.args", *args, **{**spec.get("args", {}), **kwargs})

    def function(self, key: str, name: str, module: ModuleType) -> Any:
        """Look up the function ``name`` that the config names under ``key`` in ``module``."""
        return _lookup(module, name, key, None)


def _available(module: ModuleType, base: type | None) -> list[str]:
    names = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if base is not None:
            if inspect.isclass(value) and issubclass(value, base) and not inspect.isabstract(value):
                names.append(name)
        elif inspect.isfunction(value) and value.__module__ == module.__name__:
            names.append(name)
    return sorted(names)


def _lookup(module: ModuleType, name: str, key: str, base: type | None) -> Any:
    if name in _available(module, base):
        return getattr(module, name)
    options = _available(module, base)
    close = difflib.get_close_matches(name, options, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"{key}: unknown name {name!r}; {hint}available: {', '.join(options)}")


def _call(factory: Any, key: str, *args: Any, **kwargs: Any) -> Any:
    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as err:
        raise ConfigError(f"{key}: {factory.__name__} does not accept these arguments ({err})") from None
    except ValueError:
        pass  # some builtins have no signature to check against
    try:
        return factory(*args, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{key}: {factory.__name__} rejected its arguments: {err}") from None


def create_run_dir(save_dir: Path, name: str) -> Path:
    """Make ``save_dir/name/<timestamp>``; a run started in the same second gets ``-2``, ``-3``, ..."""
    experiment = Path(save_dir) / name
    experiment.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 1000):
        run_dir = experiment / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            run_dir.mkdir()  # atomic: exactly one process wins each name
        except FileExistsError:
            continue
        return run_dir
    raise ConfigError(f"trainer.save_dir: could not create a new run folder in {str(experiment)!r}")
