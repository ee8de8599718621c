"""Data loaders, named by config.json's ``data_loader.type``. Yours to change and add to: what one returns is
described in base/base_data_loader.py (any data: subclass ``BaseDataLoader``, as CsvTableDataLoader does) and
base/image_data_loader.py (images: subclass ``ImageDataLoader``, as the others do); both take their own
arguments (``batch_size``, ``validation_split``...) from ``data_loader.args`` too.
"""

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from base.augment import RandomAffine, RandomCropFlip
from base.base_data_loader import BaseDataLoader, TensorSplit
from base.image_data_loader import ImageDataLoader
from base.tables import Table, read_csv
from utils.errors import ConfigRefused, UsageError, first_sentence

logger = logging.getLogger(__name__)

DIGITS = tuple("0123456789")


class MnistSampleDataLoader(ImageDataLoader):
    """The MNIST sample shipped with the project: trains offline, in seconds on a CPU."""

    mean, std = (0.1307,), (0.3081,)
    augmentation = RandomAffine(degrees=10, translate=0.1, scale=(0.9, 1.1))
    classes = DIGITS
    image_size = 28

    def __init__(self, data_dir: str = "data/", **loader_args: Any) -> None:
        super().__init__(**loader_args)
        self.data_dir = data_dir

    def load_split(self, split: str) -> TensorSplit:
        path = Path(self.data_dir) / "mnist_sample.npz"  # 4,000 training and 1,000 test digits, uint8
        if not path.is_file():
            raise UsageError(
                f"data_loader.args.data_dir: {str(path)!r} not found; point data_dir at the folder holding "
                "mnist_sample.npz (the project ships it in data/; run from the project root)"
            )
        with np.load(path) as arrays:
            images = torch.from_numpy(arrays[f"{split}_images"]).unsqueeze(1)  # N x 28 x 28 -> N x 1 x 28 x 28
            return TensorSplit(images, torch.from_numpy(arrays[f"{split}_labels"]).long())


class TorchvisionDataLoader(ImageDataLoader):
    """A torchvision dataset that holds its images in memory, downloaded on first use."""

    dataset_name = "MNIST"  # the class in torchvision.datasets

    def __init__(self, data_dir: str = "data/", download: bool = True, **loader_args: Any) -> None:
        super().__init__(**loader_args)
        self.data_dir, self.download = data_dir, download

    def load_split(self, split: str) -> TensorSplit:
        from torchvision import datasets  # here, not at the top: importing torchvision takes a second and a half

        name = self.dataset_name
        try:
            dataset = getattr(datasets, name)(root=self.data_dir, train=split == "train", download=self.download)
        except (OSError, RuntimeError) as err:  # no network (urllib's URLError is an OSError), or no files
            if self.download:
                raise UsageError(
                    f"data_loader.args.download: {name} could not be downloaded into {self.data_dir!r} ({err}); "
                    "check the network, or copy the dataset there and set data_loader.args.download to false"
                ) from None
            raise UsageError(
                f"data_loader.args.data_dir: {name} not found or not readable under {self.data_dir!r} "
                f"({first_sentence(err)}); set data_loader.args.download to true, or point data_dir at a copy"
            ) from None
        images = torch.as_tensor(dataset.data)
        # MNIST-like data is N x H x W, CIFAR-10's N x H x W x C: both become N x C x H x W.
        images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
        return TensorSplit(images.contiguous(), torch.as_tensor(dataset.targets))


class MnistDataLoader(TorchvisionDataLoader):
    """Full MNIST: 60,000 training and 10,000 test digits."""

    dataset_name = "MNIST"
    mean, std = (0.1307,), (0.3081,)
    augmentation = RandomAffine(degrees=10, translate=0.1, scale=(0.9, 1.1))
    classes = DIGITS
    image_size = 28


class FashionMnistDataLoader(TorchvisionDataLoader):
    """Fashion-MNIST: the same shapes as MNIST, ten kinds of clothing instead of digits."""

    dataset_name = "FashionMNIST"
    mean, std = (0.2860,), (0.3530,)
    augmentation = RandomAffine(degrees=10, translate=0.1, scale=(0.9, 1.1))
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    image_size = 28


class Cifar10DataLoader(TorchvisionDataLoader):
    """CIFAR-10: 50,000 training and 10,000 test colour images, 32x32."""

    dataset_name = "CIFAR10"
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    augmentation = RandomCropFlip(padding=4)
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    image_size = 32


class ImageFolderDataLoader(ImageDataLoader):
    """Your own images: ``data_dir/train/<class>/*.png`` to train on, ``data_dir/test/<class>/`` to test.

    The classes are the folder names under ``train/`` (so ``arch.args.num_classes`` may be left out).
    Images are read from disk as they are needed (the DataLoader path), resized and centre-cropped to
    ``image_size``. Training batches are augmented only as asked: ``flip`` mirrors half of them (right
    for photos, wrong for text or digits), ``crop_padding`` shifts them by up to that many pixels.
    """

    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

    def __init__(self, data_dir: str = "data/images/", image_size: int = 64, flip: bool = False,
                 crop_padding: int = 0, **loader_args: Any) -> None:  # fmt: skip
        super().__init__(**loader_args)
        self.data_dir, self.image_size = Path(data_dir), image_size
        self.augmentation = RandomCropFlip(crop_padding, flip) if flip or crop_padding else None

    def class_names(self) -> list[str]:
        """The folders under train/; hidden ones (.ipynb_checkpoints, .git) are not classes."""
        return sorted(_subfolders(self._folder("train")))

    def load_split(self, split: str) -> Dataset:
        folder = self._folder(split)
        # image_reader() reads, resizes and centre-crops each file, as predict.py does
        dataset = _ClassFolders(folder, self.class_names(), self.image_reader())
        if not dataset.samples:
            raise UsageError(
                f"data_loader.args.data_dir: {str(folder)!r} holds no images; put some in its class folders"
            )
        labelled = {label for _, label in dataset.samples}
        empty = [name for label, name in enumerate(dataset.classes) if label not in labelled]
        if split == "train" and empty:  # a class the model would learn to output, with nothing to learn from
            raise UsageError(
                f"data_loader.args.data_dir: class folder {str(folder / empty[0])!r} holds no images; "
                "add some, or remove the folder"
            )
        return dataset

    def _folder(self, split: str) -> Path:
        root = self.data_dir / split
        if not root.is_dir():
            raise UsageError(
                f"data_loader.args.data_dir: {str(root)!r} not found; put images in "
                "<data_dir>/train/<class>/ and <data_dir>/test/<class>/, or point data_dir elsewhere"
            )
        return root


def _subfolders(root: Path) -> list[str]:
    return [entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")]


# The files torchvision's ImageFolder takes as images.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class _ClassFolders(Dataset):
    """The images under ``root/<class>/`` as (image, label), a label for each of the training split's
    ``classes``, so that a test folder that lacks one keeps the same labels."""

    def __init__(self, root: Path, classes: list[str], loader: Callable[[str], torch.Tensor]) -> None:
        self.classes, self.loader = classes, loader
        self.samples = [(str(path), label) for label, name in enumerate(classes) if (root / name).is_dir()
                        for path in sorted((root / name).rglob("*"))
                        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()]  # fmt: skip
        unknown = sorted(name for name in _subfolders(root) if name not in classes)
        if unknown:  # no label to give them: say so rather than drop them unseen
            logger.warning("%s: %s not among the training classes (%s); left out", root,
                           ", ".join(unknown), ", ".join(classes))  # fmt: skip

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        try:
            return self.loader(path), label
        except (OSError, ValueError, SyntaxError) as err:  # what PIL raises on files that are not images
            raise UsageError(
                f"image file {path!r} cannot be read ({first_sentence(err)}); remove or replace it "
                "and run again (a stopped training run continues with train.py -r)"
            ) from None


@dataclass(frozen=True)
class _TrainFacts:
    """What the train file fixes for every split: the feature columns, the class names (classification) and
    the features' mean and standard deviation over the training part."""

    table: Table
    features: list[str]
    classes: list[str] | None
    mean: torch.Tensor
    std: torch.Tensor


class CsvTableDataLoader(BaseDataLoader):
    """A table in two CSV files, ``train_csv`` and ``test_csv``, each a header row and one row per sample.

    The inputs are the ``features`` columns (default: every column but ``target``) as float32 N x F,
    standardised with the mean and standard deviation of the training part: the train file less its validation
    rows, drawn from ``seed`` as every run of the config draws them, so test.py and predict.py standardise as
    training did. ``task`` "classification": the ``target`` column holds class names (the train file's, sorted),
    the targets are their int64 labels; "regression": it holds numbers, the targets are float32 N x 1.
    The default is the Iris table shipped in data/ (the species from four measurements, in cm).
    """

    def __init__(self, train_csv: str = "data/iris_train.csv", test_csv: str = "data/iris_test.csv",
                 target: str = "species", features: list[str] | None = None, task: str = "classification",
                 **loader_args: Any) -> None:  # fmt: skip
        super().__init__(**loader_args)
        if task not in ("classification", "regression"):
            raise ConfigRefused(f'data_loader.args.task: {task!r} is neither "classification" nor "regression"')
        if not isinstance(features, list | None):
            raise ConfigRefused(f"data_loader.args.features: {features!r} is not a list of column names, or null")
        self.paths = {"train": Path(train_csv), "test": Path(test_csv)}
        self.target, self.features, self.task = target, features, task

    def class_names(self) -> list[str] | None:
        return self._train_facts.classes

    def load_split(self, split: str) -> TensorSplit:
        table = self._train_facts.table if split == "train" else self._read(split)
        return TensorSplit(self.prepared_features(table), self._targets(table))

    def read_inputs(self, path: Path) -> torch.Tensor:
        """The feature columns of the CSV file ``path`` (predict.py's input), prepared as the splits' are."""
        return self.prepared_features(read_csv(path, "predict.py's input"))

    def input_preprocessing(self) -> dict[str, Any]:
        facts = self._train_facts
        return {"preprocessing": "the features' columns, in this order, then (x - mean) / std per column",
                "features": facts.features, "mean": facts.mean.tolist(), "std": facts.std.tolist()}  # fmt: skip

    def prepared_features(self, table: Table) -> torch.Tensor:
        facts = self._train_facts
        return (table.numbers(facts.features, "data_loader.args.features") - facts.mean) / facts.std

    def _targets(self, table: Table) -> torch.Tensor:
        if self.task == "regression":
            return table.numbers([self.target], "data_loader.args.target")
        classes = self._train_facts.classes or []
        names = table.column(self.target, "data_loader.args.target")
        for line, name in zip(table.lines, names, strict=True):
            if name not in classes:  # an empty cell too
                raise UsageError(f"{str(table.path)!r} line {line}: {self.target} {name!r} is not one of the train "
                                 f"file's classes ({', '.join(classes)}); fix the cell, or drop the row")  # fmt: skip
        return torch.tensor([classes.index(name) for name in names], dtype=torch.long)

    def _read(self, split: str) -> Table:
        return read_csv(self.paths[split], f"data_loader.args.{split}_csv")

    @functools.cached_property
    def _train_facts(self) -> _TrainFacts:
        table = self._read("train")
        names = table.column(self.target, "data_loader.args.target")
        features = self.features if self.features is not None else [n for n in table.columns if n != self.target]
        if not features or self.target in features:
            raise ConfigRefused(f"data_loader.args.features: {features} must name one column or more, and not the "
                                f"target {self.target!r}")  # fmt: skip
        values = table.numbers(features, "data_loader.args.features")
        training, _ = self._split(len(values))
        std, mean = torch.std_mean(values[training], dim=0, correction=0)
        classes = sorted({name for name in names if name}) if self.task == "classification" else None
        # A constant column is divided by 1, not 0: it becomes 0s rather than NaNs.
        return _TrainFacts(table, features, classes, mean, std.masked_fill(std == 0, 1))
