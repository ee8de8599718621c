"""Typed settings read from JSON: dataclass fields that carry a default, a description and a check.

A settings class declares each key once, with ``setting(default, expected, check)``; ``from_dict``
builds it from a JSON object, type-checks every value against the field's annotation, and turns
any mistake into a one-line ``ConfigRefused`` (a UsageError) that names the key (``trainer.epochs:
expected an integer >= 1, got 0``). Missing keys take their defaults.
"""

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
    """An int >= 0 (not true or false)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def unknown_key(label: str, key: str, known: list[str]) -> ConfigRefused:
    """``label: unknown key; did you mean ...?`` where ``label`` names the key as the user wrote it."""
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ConfigRefused(f"{label}: unknown key; {hint}known keys: {', '.join(sorted(known))}")


def from_dict(cls: type[T], data: Any, section: str, strict: bool, dropped: list[str] | None = None) -> T:
    """Build the settings class ``cls`` from the JSON object ``data`` found at ``section``.

    An unknown key is a mistake when ``strict`` (a file the user wrote); otherwise (a config recorded
    by an older or newer version of the template) it is left out and its path appended to ``dropped``.
    """
    if not isinstance(data, dict):
        raise ConfigRefused(f"{section or 'config'}: expected a JSON object, got {json.dumps(data)}")
    fields = {field.name: field for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        label = f"{section}.{key}" if section else key
        if key not in fields:
            if strict:
                raise unknown_key(label, key, list(fields))
            if dropped is not None:
                dropped.append(label)
            continue
        values[key] = _checked(value, hints[key], fields[key], label, strict, dropped)
    for name, field in fields.items():
        if name not in values and field.default is REQUIRED and field.default_factory is REQUIRED:
            label = f"{section}.{name}" if section else name
            raise ConfigRefused(f"{label}: missing; expected {field.metadata['expected']}")
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
    if hint is float:
        return isinstance(value, (int, float))
    return hint is not bool and isinstance(value, hint)
