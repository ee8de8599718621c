"""What the engine knows of a batch: it is ``(inputs, target)``. The inputs are a tensor, a tuple (or list) of
tensors or a dict of them; the target is whatever the loss takes, a tensor, a number or a nested structure.
These functions are the only places that look inside either, so that any task's data goes through."""

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def tree_map(function: Callable[[torch.Tensor], Any], data: Any) -> Any:
    """``data`` with ``function`` applied to every tensor inside it (tuples, lists and dicts, nested); other
    values as they are."""
    if isinstance(data, torch.Tensor):
        return function(data)
    if isinstance(data, dict):
        return {key: tree_map(function, value) for key, value in data.items()}
    if isinstance(data, tuple | list):
        mapped = [tree_map(function, value) for value in data]
        return type(data)(*mapped) if hasattr(data, "_fields") else type(data)(mapped)  # a NamedTuple too
    return data


def tensors_in(data: Any) -> list[torch.Tensor]:
    """Every tensor inside ``data``, in order."""
    found: list[torch.Tensor] = []
    tree_map(found.append, data)
    return found


def move_to(data: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """``data`` on ``device`` (``non_blocking`` where the data sits in pinned memory)."""
    return tree_map(lambda tensor: tensor.to(device, non_blocking=non_blocking), data)


def select(data: Any, index: torch.Tensor | slice) -> Any:
    """The samples ``index`` picks out of every tensor in ``data`` (each holds one sample per row)."""
    return tree_map(lambda tensor: tensor[index], data)


def call_model(model: nn.Module | Callable[..., Any], inputs: Any) -> Any:
    """``model(x)`` for a tensor, ``model(*inputs)`` for a tuple or list, ``model(**inputs)`` for a dict."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, tuple | list):
        return model(*inputs)
    return model(inputs)


def sample_count(inputs: Any) -> int:
    """How many samples a batch holds: the length of the first tensor of its inputs."""
    tensors = tensors_in(inputs)
    return len(tensors[0]) if tensors else 0


def channels_last(inputs: Any) -> Any:
    """4-D floating-point tensors (N x C x H x W) in channels-last memory order; every other value unchanged."""
    wanted = torch.channels_last
    return tree_map(lambda t: t.contiguous(memory_format=wanted) if t.dim() == 4 and t.is_floating_point() else t,
                    inputs)  # fmt: skip


def describe(data: Any) -> str:
    """What ``data`` holds, for messages: ``float32 (64, 8)``, ``(int64 (64, 12), int64 (64,))``, ``{a: ...}``."""
    if isinstance(data, torch.Tensor):
        return f"{str(data.dtype).removeprefix('torch.')} {tuple(data.shape)}"
    if isinstance(data, dict):
        return "{" + ", ".join(f"{key}: {describe(value)}" for key, value in data.items()) + "}"
    if isinstance(data, tuple | list):
        return "(" + ", ".join(describe(value) for value in data) + ")"
    return type(data).__name__
