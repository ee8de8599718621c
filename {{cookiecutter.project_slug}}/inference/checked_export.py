"""Export a trained model and check it at once: the file and its ``.json`` description are written
under temporary names, the file is reloaded as a serving process would load it, its outputs on real
test images are compared with the eager model's, and only a file that passes is renamed into place."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from inference.exporters import ExportFormat, Forward
from inference.trained import TrainedModel
from parse_config import Registry
from utils.errors import CheckFailed, UsageError
from utils.util import storage_error, write_json


def description_path(output: Path) -> Path:
    """Where the description of an export goes: beside it, ``<file>.json``."""
    return output.with_name(output.name + ".json")


def export_checked(trained: TrainedModel, name: str, spec: ExportFormat, output: Path, registry: Registry) -> float:
    """Write ``trained.model`` to ``output`` in format ``spec`` and return the largest absolute difference
    between its outputs and the eager model's; raise ``CheckFailed`` (writing nothing) above the tolerance."""
    images = test_images(trained)
    with staged(output, description_path(output)) as (file_tmp, description_tmp):
        write_json(describe(trained, name, output, images), description_tmp)
        _write(spec, trained.model, images, file_tmp)
        reloaded = spec.load(file_tmp, description_tmp, registry)
        difference = largest_difference(trained.model, reloaded, [images, images[:1]])  # two batch sizes
        if not difference <= spec.tolerance:  # NaN fails too
            raise CheckFailed(
                f"the {name} export's outputs differ from the model's by up to {difference:.3g} on test images, "
                f"more than the tolerance {spec.tolerance:g}; nothing was written"
            )
    return difference


def test_images(trained: TrainedModel) -> torch.Tensor:
    """The first batch of the test split, prepared as test.py prepares it, of at least two images: an
    example batch of one would make torch.export take the batch size for a constant 1."""
    images, _ = next(iter(trained.data.test_loader(trained.device)))
    return (images if len(images) > 1 else torch.cat([images, images])).contiguous()


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
            "dtype": "float32",
            "preprocessing": "uint8 pixels / 255, then (x - mean) / std per channel",
            "mean": list(data.mean),
            "std": list(data.std),
            "image_size": data.image_size,
        },
        "config": trained.config.to_dict(),
    }


def _write(spec: ExportFormat, model: torch.nn.Module, images: torch.Tensor, path: Path) -> None:
    try:
        spec.write(model, images, path)
    except OSError as err:
        raise storage_error(path, err) from None
    except Exception as err:  # a model the exporter cannot trace: its first line says why (--debug: all)
        text = str(err).strip()
        reason = text.splitlines()[0] if text else type(err).__name__
        raise UsageError(f"{type(model).__name__} cannot be exported: {reason}") from err


@torch.no_grad()
def largest_difference(model: torch.nn.Module, reloaded: Forward, batches: list[torch.Tensor]) -> float:
    return max((reloaded(batch).float() - model(batch).float()).abs().max().item() for batch in batches)


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
            temp.unlink(missing_ok=True)
