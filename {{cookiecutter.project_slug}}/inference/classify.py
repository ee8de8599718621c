"""Classifying image files in batches: each file is read and prepared exactly as the test split's
images are (the data loader's ``image_reader`` and ``batch_prep``), and the model's top classes and
probabilities are kept. A file that cannot be read is set aside with the reason, not fatal."""

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from inference.trained import TrainedModel
from utils.errors import UsageError, first_sentence
from utils.util import atomic_write

# (the image as uint8 C x H x W or None, why it could not be read or None)
ReadResult = tuple[torch.Tensor | None, str | None]


@dataclass(frozen=True)
class Prediction:
    path: Path
    indices: list[int]  # the top-k classes, most probable first
    probabilities: list[float]


@dataclass
class Classified:
    predictions: list[Prediction] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # (file, why)
    classes_scored: int = 0  # the model's output width


class _ImageFiles(Dataset):
    """The files as images, read in DataLoader workers; a failure is returned, not raised."""

    def __init__(self, paths: list[Path], reader: Callable[[Path], torch.Tensor]) -> None:
        self.paths, self.reader = paths, reader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> ReadResult:
        try:
            return self.reader(self.paths[index]), None
        except (OSError, ValueError, SyntaxError) as err:  # what PIL raises on files that are not images
            return None, " ".join(str(err).split()) or type(err).__name__


@torch.no_grad()
def classify_files(trained: TrainedModel, paths: list[Path], top_k: int) -> Classified:
    """The top ``top_k`` classes of every readable file in ``paths``, in their order, read and prepared by
    ``trained.data`` in its batch size and worker count, on ``trained.device`` in the run's precision."""
    data, device = trained.data, trained.device
    batch_size, prep, amp = data.settings.batch_size, data.batch_prep(device), trained.config.trainer.amp_dtype(device)
    # collate_fn=list keeps the batch as it is: images may be missing or (without image_size) differ in size
    loader = DataLoader(_ImageFiles(paths, data.image_reader()), batch_size=batch_size,
                        num_workers=data.settings.num_workers, collate_fn=list)  # fmt: skip
    # Files kept at their own size (no image_size) must have the training samples' size to be classified.
    trained_shape = trained.input_shape if data.image_size is None else None
    result, start = Classified(), 0
    show_bar = len(paths) > batch_size  # one batch is over before a bar could say anything
    with tqdm(total=len(paths), unit="image", leave=False, disable=None if show_bar else True) as bar:
        for batch in loader:
            batch_paths = paths[start : start + len(batch)]
            images, readable = _stack_readable(batch_paths, batch, result.unreadable, trained_shape)
            if readable:
                probabilities = _probabilities(trained.model, prep(images.to(device), 0, 0), amp)
                top = probabilities.topk(min(top_k, probabilities.size(1)), dim=1)
                top_pairs = zip(top.indices.tolist(), top.values.tolist(), strict=True)
                result.predictions += [Prediction(path, i, p) for path, (i, p) in zip(readable, top_pairs, strict=True)]
                result.classes_scored = probabilities.size(1)
            start += len(batch)
            bar.update(len(batch))
    return result


def _stack_readable(paths: list[Path], batch: list[ReadResult], unreadable: list[tuple[Path, str]],
                    trained_shape: tuple[int, ...] | None) -> tuple[torch.Tensor, list[Path]]:  # fmt: skip
    """The batch's readable images as one uint8 tensor; the others go to ``unreadable`` with the reason. Each
    must have ``trained_shape`` (the model's training samples'), or, for older checkpoints, the batch's first."""
    images, readable = [], []
    for path, (image, reason) in zip(paths, batch, strict=True):
        expected = trained_shape or (tuple(images[0].shape) if images else None)
        if image is not None and expected is not None and tuple(image.shape) != expected:
            which = "the model trained on" if trained_shape else "the first file's"
            shapes = f"{'x'.join(map(str, image.shape))}, not {'x'.join(map(str, expected))} ({which})"
            image, reason = None, f"its size is {shapes}; give the data loader an image_size to resize files"
        if image is None:
            unreadable.append((path, reason or "unreadable"))
            continue
        images.append(image)
        readable.append(path)
    return (torch.stack(images) if images else torch.empty(0)), readable


def _probabilities(model: torch.nn.Module, inputs: torch.Tensor, amp: torch.dtype | None) -> torch.Tensor:
    """The model's class probabilities for a batch; one line when it cannot take the files or does not classify."""
    try:
        with torch.autocast(inputs.device.type, dtype=amp, enabled=amp is not None):
            logits = model(inputs)
    except Exception as err:  # whatever the model raises on images of another size or channel count
        raise UsageError(
            f"the model fails on the files, read as images of shape {tuple(inputs.shape[1:])} ({first_sentence(err)}); "
            "the data loader reads files with as many channels as its mean and std have values, resized to its "
            "image_size: if the model trained on other channels or another size, set those to match"
        ) from None
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.size(1) < 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise UsageError(f"arch: the model returns {shape}; predict.py needs N x classes scores (2 or more classes)")
    return logits.float().softmax(dim=1)


def write_predictions(predictions: list[Prediction], class_name: Callable[[int], str], path: Path) -> None:
    """One CSV row per file: path, class index, class name, probability, then the runners-up
    (``index_2``, ``class_2``, ``probability_2``, ...)."""
    k = max(len(prediction.indices) for prediction in predictions)
    header = ["path", "index", "class", "probability"]
    header += [f"{column}_{rank}" for rank in range(2, k + 1) for column in ("index", "class", "probability")]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for prediction in predictions:
        row: list[object] = [prediction.path.as_posix()]
        for index, probability in zip(prediction.indices, prediction.probabilities, strict=True):
            row += [index, class_name(index), f"{probability:.6f}"]
        writer.writerow(row)
    atomic_write(path, lambda handle: handle.write(text.getvalue().encode("utf-8")))
