"""The export formats: how each writes a model and how a serving process loads it back. export.py
writes with ``write``, reloads with ``load`` and compares the reloaded model with the eager one."""

import importlib.util
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from parse_config import Config, Registry
from trainer.build import build_model
from utils.errors import UsageError
from utils.util import read_json

Forward = Callable[[torch.Tensor], torch.Tensor]  # a batch of prepared images -> logits, on the CPU


@dataclass(frozen=True)
class ExportFormat:
    suffix: str  # the default output file's ending, after the checkpoint's stem
    tolerance: float  # the largest absolute difference from the eager model's logits that passes the check
    write: Callable[[torch.nn.Module, torch.Tensor, Path], None]  # (model, example batch, path)
    load: Callable[[Path, Path, Registry], Forward]  # (file, its .json description, the registry)
    needs: tuple[str, ...] = ()  # modules outside torch it needs (the optional "export" extra)
    suffix_required: bool = False  # a file of another name fails to load (torch.export.load wants .pt2)


def _batch_dim() -> Any:
    return torch.export.Dim("batch")  # any batch size, 1 included


def write_pt2(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    program = torch.export.export(model, (example,), dynamic_shapes=({0: _batch_dim()},))
    torch.export.save(program, path)


def load_pt2(path: Path, description: Path, registry: Registry) -> Forward:
    return torch.export.load(path).module()


@contextmanager
def _quiet(*logger_names: str) -> Iterator[None]:
    """Keep these loggers to warnings for a while (the ONNX optimiser logs each of its passes at INFO)."""
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def write_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    # One self-contained file (weights inside), which limits a model to ONNX's 2 GB.
    with _quiet("onnxscript", "onnx_ir"):
        torch.onnx.export(model, (example,), path, dynamo=True, input_names=["images"], output_names=["logits"],
                          dynamic_shapes=({0: _batch_dim()},), external_data=False, verbose=False)  # fmt: skip


def load_onnx(path: Path, description: Path, registry: Registry) -> Forward:
    import onnxruntime  # an optional dependency: pip install -e ".[export]"

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


def write_weights(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    state = {key: tensor.detach().cpu().clone() for key, tensor in model.state_dict().items()}
    torch.save(state, path)  # tensors only: torch.load(path, weights_only=True) reads it


def load_weights(path: Path, description: Path, registry: Registry) -> Forward:
    """Rebuild the model from the description's config, as a serving process with this project's code does."""
    spec = read_json(description)
    model = build_model(Config.from_dict(spec["config"], strict=False), registry, spec["classes"])
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


FORMATS = {
    "pt2": ExportFormat(".pt2", 1e-4, write_pt2, load_pt2, suffix_required=True),
    "onnx": ExportFormat(".onnx", 1e-4, write_onnx, load_onnx, needs=("onnx", "onnxscript", "onnxruntime")),
    "weights": ExportFormat(".weights.pth", 1e-6, write_weights, load_weights),
}


def export_format(name: str) -> ExportFormat:
    """The format ``name``, refused with one line when unknown or when its packages are missing."""
    if name not in FORMATS:
        raise UsageError(f"--format: unknown format {name!r}; choose one of {', '.join(FORMATS)}")
    missing = [module for module in FORMATS[name].needs if importlib.util.find_spec(module) is None]
    if missing:
        raise UsageError(
            f'--format {name} needs {", ".join(missing)}, which are not installed; pip install -e ".[export]"'
        )
    return FORMATS[name]
