"""The export formats (how each writes a model, how a serving process loads it back) and ``export_checked``:
the file and its ``.json`` description are written under temporary names, the file is reloaded and compared
with the eager model on test images, and only a file that passes is renamed into place."""

import importlib.util
import io
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from base.image_data_loader import ImageDataLoader
from inference.trained import TrainedModel
from parse_config import Config
from trainer.build import build_model
from utils.errors import CheckFailed, UsageError
from utils.registry import Registry
from utils.util import os_error_behind, read_json, storage_error, write_json

Forward = Callable[[torch.Tensor], torch.Tensor]  # a batch of prepared images -> logits, on the CPU


@dataclass(frozen=True)
class ExportFormat:
    suffix: str  # the default output file's ending, after the checkpoint's stem
    tolerance: float  # the largest difference from the eager model's logits that passes, per unit of their size
    write: Callable[[torch.nn.Module, torch.Tensor, Path], None]  # (model, example batch, path)
    load: Callable[[Path, Path, Registry], Forward]  # (file, its .json description, the registry)
    needs: tuple[str, ...] = ()  # modules outside torch it needs (the optional "export" extra)
    suffix_required: bool = False  # a file of another name fails to load (torch.export.load wants .pt2)


def _batch_dim() -> Any:
    return torch.export.Dim("batch")  # any batch size, 1 included


def write_pt2(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    program = torch.export.export(model, (example,), dynamic_shapes=({0: _batch_dim()},))
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


def write_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    # One self-contained file (weights inside), which limits a model to ONNX's 2 GB.
    with _quiet(logging.WARNING, "onnxscript", "onnx_ir"):  # the ONNX optimiser logs each of its passes at INFO
        torch.onnx.export(model, (example,), path, dynamo=True, input_names=["images"], output_names=["logits"],
                          dynamic_shapes=({0: _batch_dim()},), external_data=False, verbose=False)  # fmt: skip


def load_onnx(path: Path, description: Path, registry: Registry) -> Forward:
    import onnxruntime  # an optional dependency: pip install -e ".[export]"

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


def write_weights(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
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
    images = test_images(trained)
    check_one_tensor(trained.model, images)
    with staged(output, description_path(output)) as (file_tmp, description_tmp):
        write_json(describe(trained, name, output, images), description_tmp)
        _write(spec, trained.model, images, file_tmp)
        reloaded = spec.load(file_tmp, description_tmp, registry)
        difference, largest = largest_difference(trained.model, reloaded, [images, images[:1]])  # two batch sizes
        allowed = spec.tolerance * max(1.0, largest)  # float32 rounding grows with the size of the outputs
        if not difference <= allowed:  # NaN fails too
            raise CheckFailed(
                f"the {name} export's outputs differ from the model's by up to {difference:.3g} on test images, "
                f"more than the tolerance {allowed:.3g}; nothing was written"
            )
    return difference, allowed


def test_images(trained: TrainedModel) -> torch.Tensor:
    """The first batch of the test split, prepared as test.py prepares it, of at least two images: an
    example batch of one would make torch.export take the batch size for a constant 1."""
    images, _ = next(iter(trained.data.test_loader(trained.device)))
    return (images if len(images) > 1 else torch.cat([images, images])).contiguous()


@torch.no_grad()
def check_one_tensor(model: torch.nn.Module, images: torch.Tensor) -> None:
    """The formats, and the check after writing, take a model with one tensor out."""
    output = model(images)
    if not isinstance(output, torch.Tensor):
        raise UsageError(
            f"arch: {type(model).__name__} returns a {type(output).__name__}; export.py exports a model that returns "
            "one tensor (export the part that does, or return only the logits)"
        )


def describe(trained: TrainedModel, name: str, output: Path, images: torch.Tensor) -> dict[str, Any]:
    """What a serving process needs besides the file: the input it takes, the class names, the config."""
    data = trained.data
    return {
        "file": output.name,
        "format": name,
        "checkpoint": str(trained.checkpoint_path),
        "epoch": trained.epoch,
        "mid_epoch": trained.mid_epoch,
        "classes": trained.classes,
        "input": {
            "shape": ["batch", *images.shape[1:]],
            "dtype": str(images.dtype).removeprefix("torch."),
            **(image_preprocessing(data) if isinstance(data, ImageDataLoader) else {}),
        },  # fmt: skip
        "config": trained.config.to_dict(),
    }


def image_preprocessing(data: ImageDataLoader) -> dict[str, Any]:
    """How an image loader's files become the model's input, for a serving process to do the same."""
    return {"preprocessing": "uint8 pixels / 255, then (x - mean) / std per channel", "mean": list(data.mean),
            "std": list(data.std), "image_size": data.image_size}  # fmt: skip


def _write(spec: ExportFormat, model: torch.nn.Module, images: torch.Tensor, path: Path) -> None:
    printed = io.StringIO()  # torch.export prints the traced graph (a hundred lines) before failing on a model
    try:
        with _quiet(logging.ERROR, "torch.fx.experimental.symbolic_shapes"), redirect_stderr(printed):
            spec.write(model, images, path)
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
def largest_difference(model: torch.nn.Module, reloaded: Forward, batches: list[torch.Tensor]) -> tuple[float, float]:
    """(the largest absolute difference between the two on ``batches``, the largest absolute eager output)."""
    expected = [model(batch).float() for batch in batches]
    difference = max(
        (reloaded(batch).float() - out).abs().max().item() for batch, out in zip(batches, expected, strict=True)
    )
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
