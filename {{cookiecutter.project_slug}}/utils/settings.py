"""Typed settings read from JSON: each dataclass field declares its default, what a valid value looks like and
a check, and ``from_dict`` turns any mistake into one line that names the key (``trainer.epochs: expected an
integer from 1 to 1,000,000, got 0``)."""

import copy
import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from utils.errors import ConfigRefused

T = TypeVar("T")
REQUIRED = dataclasses.MISSING


def setting(default: Any, expected: str, check: Callable[[Any], bool] | None = None) -> Any:
    """A settings field: its default (``REQUIRED`` for none), what a valid value looks like, and an extra check."""
    metadata = {"expected": expected, "check": check}
    if isinstance(default, (dict, list)):  # each instance gets its own copy
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def is_number(value: Any) -> bool:
    """An int or float in JSON's sense: true and false are not numbers."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def unknown_key(label: str, key: str, known: list[str]) -> ConfigRefused:
    """``label: unknown key; did you mean ...?`` where ``label`` names the key as the user wrote it."""
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ConfigRefused(f"{label}: unknown key; {hint}known keys: {', '.join(sorted(known))}")


def from_dict(cls: type[T], data: Any, section: str, strict: bool, dropped: list[str] | None = None) -> T:
    """Build ``cls`` from the JSON object ``data`` found at ``section``. An unknown key is a mistake when ``strict``
    (a file the user wrote); otherwise (recorded by another version) its path is appended to ``dropped``."""
    if not isinstance(data, dict):
        raise ConfigRefused(f"{section or 'config'}: expected a JSON object, got {json.dumps(data)}")
    fields = {field.name: field for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    prefix = f"{section}." if section else ""
    values = {}
    for key, value in data.items():
        label = prefix + key
        if key not in fields:
            if strict:
                raise unknown_key(label, key, list(fields))
            if dropped is not None:
                dropped.append(label)
            continue
        values[key] = _checked(value, hints[key], fields[key], label, strict, dropped)
    for name, field in fields.items():
        if name not in values and field.default is REQUIRED and field.default_factory is REQUIRED:
            raise ConfigRefused(f"{prefix}{name}: missing; expected {field.metadata['expected']}")
    return cls(**values)


def _checked(value: Any, hint: Any, field: dataclasses.Field, label: str, strict: bool, dropped: Any) -> Any:
    expected, check = field.metadata["expected"], field.metadata["check"]
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if dataclasses.is_dataclass(option) and isinstance(value, dict):
            return from_dict(option, value, label, strict, dropped)
        if _is_instance(value, option):
            if check is not None and not check(value):
                break
            return value
    raise ConfigRefused(f"{label}: expected {expected}, got {json.dumps(value)}")


def _is_instance(value: Any, hint: Any) -> bool:
    """isinstance for the annotations settings use: bool, int, float, str, list[X] and dict."""
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_is_instance(v, item) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(value, bool):  # bool is an int in Python; true where a count belongs is still a mistake
        return hint is bool
    return isinstance(value, (int, float) if hint is float else hint)
