"""Data loaders, named by config.json's ``data_loader.type``.

Each one picks a dataset and its transforms; splitting, seeding and batching (``batch_size``,
``shuffle``, ``validation_split``, ``num_workers``, ``pin_memory``) live in ``BaseDataLoader``.
Training transforms augment; evaluation transforms (validation and test) only normalise.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2

from base.base_data_loader import BaseDataLoader, ResidentSource
from data_loader.datasets import MnistSample
from data_loader.resident import BatchAugment, random_affine, random_crop_flip
from utils.util import ConfigError

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def _transforms(
    mean: tuple[float, ...],
    std: tuple[float, ...],
    augmentation: Sequence[v2.Transform],
    resize: Sequence[v2.Transform] = (),
) -> tuple[v2.Compose, v2.Compose]:
    """(train, evaluation) pipelines: the same resize and normalisation, augmentation only in train."""
    to_float = v2.ToDtype(torch.float32, scale=True)
    normalize = v2.Normalize(mean, std)
    train = v2.Compose([v2.ToImage(), *resize, *augmentation, to_float, normalize])
    evaluation = v2.Compose([v2.ToImage(), *resize, to_float, normalize])
    return train, evaluation


def _digit_augmentation(augment: bool) -> list[v2.Transform]:
    return [v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))] if augment else []


def _batch_affine(augment: bool) -> BatchAugment | None:
    """The device-resident twin of ``_digit_augmentation``."""
    return random_affine(degrees=10, translate=0.1, scale=(0.9, 1.1)) if augment else None


def _torchvision_dataset(factory: type, data_dir: str, training: bool, download: bool) -> Dataset:
    try:
        return factory(root=data_dir, train=training, download=download)
    except RuntimeError as err:
        raise ConfigError(
            f"data_loader.args.data_dir: {factory.__name__} not found under {data_dir!r} ({err}); "
            "set data_loader.args.download to true, or point data_dir at a copy"
        ) from None


class MnistSampleDataLoader(BaseDataLoader):
    """The MNIST sample shipped with the project: trains offline, in about a minute on a CPU."""

    def __init__(
        self, data_dir: str = "data/", training: bool = True, augment: bool = True, **loader_args: Any
    ) -> None:
        train_tf, eval_tf = _transforms(MNIST_MEAN, MNIST_STD, _digit_augmentation(augment))
        dataset = MnistSample(data_dir, train=training)
        resident = ResidentSource(dataset.images, dataset.targets, MNIST_MEAN, MNIST_STD, _batch_affine(augment))
        super().__init__(
            dataset,
            train_transform=train_tf,
            eval_transform=eval_tf,
            training=training,
            resident_source=resident,
            **loader_args,
        )


class MnistDataLoader(BaseDataLoader):
    """Full MNIST (60,000 train / 10,000 test) through torchvision, downloaded on first use."""

    dataset_class: type = datasets.MNIST
    mean, std = MNIST_MEAN, MNIST_STD

    def __init__(
        self,
        data_dir: str = "data/",
        training: bool = True,
        augment: bool = True,
        download: bool = True,
        **loader_args: Any,
    ) -> None:
        train_tf, eval_tf = _transforms(self.mean, self.std, _digit_augmentation(augment))
        dataset = _torchvision_dataset(self.dataset_class, data_dir, training, download)
        images = dataset.data.unsqueeze(1)  # uint8 N x 28 x 28 -> N x 1 x 28 x 28
        resident = ResidentSource(images, dataset.targets, self.mean, self.std, _batch_affine(augment))
        super().__init__(
            dataset,
            train_transform=train_tf,
            eval_transform=eval_tf,
            training=training,
            resident_source=resident,
            **loader_args,
        )


class FashionMnistDataLoader(MnistDataLoader):
    """Fashion-MNIST: the same shapes as MNIST, ten kinds of clothing instead of digits."""

    dataset_class = datasets.FashionMNIST
    mean, std = FASHION_MEAN, FASHION_STD


class Cifar10DataLoader(BaseDataLoader):
    """CIFAR-10 (50,000 train / 10,000 test colour images, 32x32), downloaded on first use."""

    def __init__(
        self,
        data_dir: str = "data/",
        training: bool = True,
        augment: bool = True,
        download: bool = True,
        **loader_args: Any,
    ) -> None:
        augmentation = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()] if augment else []
        train_tf, eval_tf = _transforms(CIFAR10_MEAN, CIFAR10_STD, augmentation)
        dataset = _torchvision_dataset(datasets.CIFAR10, data_dir, training, download)
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2)  # uint8 N x H x W x C -> N x C x H x W
        targets = torch.tensor(dataset.targets)
        batch_augment = random_crop_flip(padding=4) if augment else None
        resident = ResidentSource(images, targets, CIFAR10_MEAN, CIFAR10_STD, batch_augment)
        super().__init__(
            dataset,
            train_transform=train_tf,
            eval_transform=eval_tf,
            training=training,
            resident_source=resident,
            **loader_args,
        )


class ImageFolderDataLoader(BaseDataLoader):
    """Your own images: ``data_dir/train/<class>/*.png`` to train on, ``data_dir/test/<class>/`` to test."""

    def __init__(
        self,
        data_dir: str = "data/images/",
        training: bool = True,
        augment: bool = True,
        image_size: int = 64,
        **loader_args: Any,
    ) -> None:
        root = Path(data_dir) / ("train" if training else "test")
        if not root.is_dir():
            raise ConfigError(
                f"data_loader.args.data_dir: {str(root)!r} not found; put images in "
                "<data_dir>/train/<class>/ and <data_dir>/test/<class>/, or point data_dir elsewhere"
            )
        resize = [v2.Resize(image_size), v2.CenterCrop(image_size)]
        augmentation = [v2.RandomHorizontalFlip()] if augment else []
        train_tf, eval_tf = _transforms((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), augmentation, resize)
        dataset = datasets.ImageFolder(root)
        super().__init__(dataset, train_transform=train_tf, eval_transform=eval_tf, training=training, **loader_args)
