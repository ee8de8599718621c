"""The export formats (how each writes a model, how a serving process loads it back) and ``export_checked``:
the file and its ``.json`` description are written under temporary names, the file is reloaded and compared
with the eager model on the first test batch, and only a file that passes is renamed into place. The example
inputs are that batch, as the model takes them: a tensor, a tuple of tensors (positional arguments) or a dict
of them (keyword arguments)."""

import importlib.util
import io
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from base.batch import call_model, select, tensors_in, tree_map
from base.image_data_loader import ImageDataLoader
from inference.trained import TrainedModel
from parse_config import Config
from trainer.build import build_model
from utils.errors import CheckFailed, UsageError
from utils.registry import Registry
from utils.util import os_error_behind, read_json, storage_error, write_json

# A batch of prepared inputs (as the model takes them) -> its outputs, on the CPU: called as base/batch.py calls models
Forward = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class ExportFormat:
    suffix: str  # the default output file's ending, after the checkpoint's stem
    tolerance: float  # the largest difference from the eager model's logits that passes, per unit of their size
    write: Callable[[torch.nn.Module, Any, Path, list[str]], None]  # (model, example inputs, path, input names)
    load: Callable[[Path, Path, Registry], Forward]  # (file, its .json description, the registry)
    needs: tuple[str, ...] = ()  # modules outside torch it needs (the optional "export" extra)
    suffix_required: bool = False  # a file of another name fails to load (torch.export.load wants .pt2)


def _arguments(example: Any) -> tuple[tuple, dict[str, Any], Any]:
    """(positional, keyword arguments, their dynamic shapes) of a call with ``example``, as call_model calls."""
    batch = torch.export.Dim("batch")  # any batch size, 1 included: the first dimension of every tensor
    dynamic = tree_map(lambda tensor: {0: batch}, example)
    if isinstance(example, dict):
        return (), example, dynamic
    if isinstance(example, tuple | list):
        return tuple(example), {}, tuple(dynamic)
    return (example,), {}, (dynamic,)


def input_names(example: Any, images: bool) -> list[str]:
    """The ONNX inputs' names: a dict's keys, ``input_0``... for a tuple, ``images`` or ``inputs`` for a tensor."""
    if isinstance(example, dict):
        return list(example)
    if isinstance(example, tuple | list):
        return [f"input_{index}" for index in range(len(example))]
    return ["images" if images else "inputs"]


def write_pt2(model: torch.nn.Module, example: Any, path: Path, names: list[str]) -> None:
    args, kwargs, dynamic = _arguments(example)
    program = torch.export.export(model, args, kwargs, dynamic_shapes=dynamic)
    buffer = io.BytesIO()  # a write error inside torch.export.save (a full disk) aborts the whole process
    torch.export.save(program, buffer)
    path.write_bytes(buffer.getbuffer())


def load_pt2(path: Path, description: Path, registry: Registry) -> Forward:
    return torch.export.load(path).module()


@contextmanager
def _quiet(level: int, *logger_names: str) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def write_onnx(model: torch.nn.Module, example: Any, path: Path, names: list[str]) -> None:
    args, kwargs, dynamic = _arguments(example)
    # One self-contained file (weights inside), which limits a model to ONNX's 2 GB. The ONNX optimiser logs each
    # of its passes at INFO; that several inputs share the batch dimension, which ONNX names once, is no news.
    with _quiet(logging.WARNING, "onnxscript", "onnx_ir"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints with another axis")
        torch.onnx.export(model, args, path, kwargs=kwargs, dynamo=True, input_names=names, output_names=["logits"],
                          dynamic_shapes=dynamic, external_data=False, verbose=False)  # fmt: skip


def load_onnx(path: Path, description: Path, registry: Registry) -> Forward:
    import onnxruntime  # an optional dependency: pip install -e ".[export]"

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = read_json(description)["input"]["names"]

    def forward(*args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        arrays = [tensor.numpy() for tensor in tensors_in((args, kwargs))]
        return torch.from_numpy(session.run(None, dict(zip(names, arrays, strict=True)))[0])

    return forward


def write_weights(model: torch.nn.Module, example: Any, path: Path, names: list[str]) -> None:
    state = {key: tensor.detach().cpu().clone() for key, tensor in model.state_dict().items()}
    with path.open("wb") as handle:  # a full disk is then an OSError (behind torch's RuntimeError)
        torch.save(state, handle)  # tensors only: torch.load(path, weights_only=True) reads it


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


def description_path(output: Path) -> Path:
    return output.with_name(output.name + ".json")


def export_checked(
    trained: TrainedModel, name: str, spec: ExportFormat, output: Path, registry: Registry
) -> tuple[float, float]:
    """Write ``trained.model`` to ``output`` in format ``spec`` and return (the largest absolute difference
    between its outputs and the eager model's, the most allowed); raise ``CheckFailed`` (writing nothing) above."""
    example = test_inputs(trained)
    check_one_tensor(trained.model, example)
    names = input_names(example, isinstance(trained.data, ImageDataLoader))
    with staged(output, description_path(output)) as (file_tmp, description_tmp):
        write_json(describe(trained, name, output, example, names), description_tmp)
        _write(spec, trained.model, example, file_tmp, names)
        reloaded = spec.load(file_tmp, description_tmp, registry)
        batches = [example, select(example, slice(0, 1))]  # two batch sizes
        difference, largest = largest_difference(trained.model, reloaded, batches)
        allowed = spec.tolerance * max(1.0, largest)  # float32 rounding grows with the size of the outputs
        if not difference <= allowed:  # NaN fails too
            raise CheckFailed(
                f"the {name} export's outputs differ from the model's by up to {difference:.3g} on the test batch, "
                f"more than the tolerance {allowed:.3g}; nothing was written"
            )
    return difference, allowed


def test_inputs(trained: TrainedModel) -> Any:
    """The inputs of the first batch of the test split, prepared as test.py prepares them, of at least two
    samples: an example batch of one would make torch.export take the batch size for a constant 1."""
    inputs, _ = next(iter(trained.data.test_loader(trained.device)))
    doubled = len(tensors_in(inputs)[0]) < 2
    return tree_map(lambda tensor: (torch.cat([tensor, tensor]) if doubled else tensor).contiguous(), inputs)


@torch.no_grad()
def check_one_tensor(model: torch.nn.Module, example: Any) -> None:
    """The formats, and the check after writing, take a model with one tensor out."""
    output = call_model(model, example)
    if not isinstance(output, torch.Tensor):
        raise UsageError(
            f"arch: {type(model).__name__} returns a {type(output).__name__}; export.py exports a model that returns "
            "one tensor (export the part that does, or return only the logits)"
        )


def describe(trained: TrainedModel, name: str, output: Path, example: Any, names: list[str]) -> dict[str, Any]:
    """What a serving process needs besides the file: the inputs it takes, the class names, the config."""
    one_tensor = isinstance(example, torch.Tensor)
    specs = [_tensor_spec(tensor) for tensor in tensors_in(example)]
    return {
        "file": output.name,
        "format": name,
        "checkpoint": str(trained.checkpoint_path),
        "epoch": trained.epoch,
        "mid_epoch": trained.mid_epoch,
        "classes": trained.classes,
        "input": {
            "names": names,  # ONNX's; a tuple is the model's positional arguments, a dict its keyword arguments
            **(_tensor_spec(example) if one_tensor else {"each": dict(zip(names, specs, strict=True))}),
            **trained.data.input_preprocessing(),
        },  # fmt: skip
        "config": trained.config.to_dict(),
    }


def _tensor_spec(tensor: torch.Tensor) -> dict[str, Any]:
    return {"shape": ["batch", *tensor.shape[1:]], "dtype": str(tensor.dtype).removeprefix("torch.")}


def _write(spec: ExportFormat, model: torch.nn.Module, example: Any, path: Path, names: list[str]) -> None:
    printed = io.StringIO()  # torch.export prints the traced graph (a hundred lines) before failing on a model
    try:
        with _quiet(logging.ERROR, "torch.fx.experimental.symbolic_shapes"), redirect_stderr(printed):
            spec.write(model, example, path, names)
        sys.stderr.write(printed.getvalue())  # what an export that worked said stays in view
    except Exception as err:  # a model the exporter cannot trace: its first line says why (--debug: all)
        if isinstance(err, OSError | RuntimeError) and os_error_behind(err) is not None:  # a full disk...
            raise storage_error(path, err) from None
        cause = err
        while cause.__cause__ is not None:  # the ONNX exporter wraps torch.export's error, which names the cause
            cause = cause.__cause__
        text = str(cause).strip()
        reason = text.splitlines()[0] if text else type(cause).__name__
        raise UsageError(f"{type(model).__name__} cannot be exported: {reason} (--debug shows where)") from err


@torch.no_grad()
def largest_difference(model: torch.nn.Module, reloaded: Forward, batches: list[Any]) -> tuple[float, float]:
    """(the largest absolute difference between the two on ``batches`` of inputs, the largest absolute eager output)."""
    expected = [call_model(model, batch).float() for batch in batches]
    differences = [call_model(reloaded, batch).float() - out for batch, out in zip(batches, expected, strict=True)]
    difference = max(gap.abs().max().item() for gap in differences)
    return difference, max(out.abs().max().item() for out in expected)


@contextmanager
def staged(*paths: Path) -> Iterator[list[Path]]:
    """Temporary paths beside ``paths``, renamed onto them when the block succeeds and removed otherwise."""
    # The name keeps its ending: torch.export.load wants a file ending in .pt2.
    temporary = [path.with_name(f".tmp-{os.getpid()}-{path.name}") for path in paths]
    try:
        yield temporary
        for temp, path in zip(temporary, paths, strict=True):
            os.replace(temp, path)
    finally:
        for temp in temporary:
            with suppress(OSError):  # a read-only folder, where it was never made: the error that said so counts
                temp.unlink(missing_ok=True)
