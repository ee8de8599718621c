"""config.json as one ``Config``, loaded with ``--set`` overrides (utils/registry.py builds the objects it names).
Only the keys that define the experiment are required; every other key has a default, so a config or checkpoint
written by an older or newer version of this template still loads."""

import dataclasses
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.settings import TrainerSettings, upgrade_retired_keys
from utils import victoresque
from utils.bounds import check_numbers
from utils.errors import ConfigRefused, UsageError
from utils.registry import ObjectSpec, Registry, registry_names
from utils.settings import REQUIRED, from_dict, setting, unknown_key

logger = logging.getLogger(__name__)

# Text that cannot start a JSON value is taken as a string, so `--set device=cuda:1` and
# `--set trainer.monitor="max val_accuracy"` need no inner quotes; `0.0.1` or `[1,` stay errors.
_JSON_START = re.compile(r'[-0-9\[{"]')
_OBJECT = 'an object {"type": ..., "args": {...}}'
# In valid JSON, the strings (a key when a colon follows) and the brackets and commas that place them.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"\s*:?|[{}\[\],]')


def _is_folder_name(name: str) -> bool:
    try:
        size = len(name.encode("utf-8"))  # a lone surrogate ("\ud800" in JSON) has no encoding
    except UnicodeEncodeError:
        return False
    return name not in ("", ".", "..") and not any(char in name for char in "/\\\0") and size <= 255


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
        check_numbers(data)  # the typed keys are checked by now; this reaches every args object too
        if dropped:
            logger.warning("Ignoring keys this version of the project does not know: %s", ", ".join(dropped))
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(
    path: Path | None, overrides: list[str], recorded: dict[str, Any] | None = None, registry: Registry | None = None
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
        return json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
    except DuplicateKey:
        key, line = _first_duplicate_key(path.read_text(encoding="utf-8"))
        raise UsageError(f"{label}: key {key!r} appears twice (again on line {line}); keep one of them") from None
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


class DuplicateKey(Exception):
    """A JSON object holds a key twice; json.loads would keep the last value without a word."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads's object_pairs_hook: each object, refused (DuplicateKey) when it holds a key twice."""
    if len({key for key, _ in pairs}) < len(pairs):
        raise DuplicateKey
    return dict(pairs)


def _first_duplicate_key(text: str) -> tuple[str, int]:
    """The dotted path (list items by index) and the line of the first key that repeats an earlier key of
    its object in ``text``, which is valid JSON: strings, brackets and commas are all the scan needs."""
    frames: list[list[Any]] = []  # per open object: [its keys so far, the key now read]; per list: [None, index]
    for token in _JSON_TOKEN.finditer(text):
        first, top = token[0][0], frames[-1] if frames else None
        if first in "{[":
            frames.append([set(), ""] if first == "{" else [None, 0])
        elif first in "}]":
            frames.pop()
        elif first == "," and top is not None and top[0] is None:
            top[1] += 1
        elif token[0].endswith(":") and top is not None:
            key = json.loads(token[0][:-1])
            if key in top[0]:
                path = [str(label) for _, label in frames[:-1]] + [key]
                return ".".join(path), text.count("\n", 0, token.start()) + 1
            top[0].add(key)
            top[1] = key
    raise ValueError("no key appears twice")  # only called after json.loads found one


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
        return path.strip(), json.loads(raw, object_pairs_hook=_unique_keys)
    except DuplicateKey:
        raise ConfigRefused(f"--set {text!r}: key {_first_duplicate_key(raw)[0]!r} appears twice; keep one") from None
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
