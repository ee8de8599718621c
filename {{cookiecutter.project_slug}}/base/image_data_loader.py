"""Images, one kind of input: a loader of them declares how its batches become the model's input. The
splits hold uint8 images N x C x H x W (0-255); ``ImageDataLoader.batch_prep`` scales them to [0, 1] on the
device, augments training batches and normalises them with the loader's ``mean`` and ``std``."""

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from base.base_data_loader import BaseDataLoader
from base.batch import describe
from base.images import ImageReader
from base.loaders import epoch_seed
from utils.dist import rank
from utils.errors import UsageError

# (float images in [0, 1], generator) -> augmented images of the same shape; see base/augment.py
BatchAugment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class ImageDataLoader(BaseDataLoader):
    """A BaseDataLoader of images. A subclass sets ``mean`` and ``std`` (one value per channel), and may set
    ``augmentation`` (for training batches, from base/augment.py) and ``image_size`` (image files are resized
    and centre-cropped to it; None keeps them as they are)."""

    mean: ClassVar[tuple[float, ...]] = (0.5,)
    std: ClassVar[tuple[float, ...]] = (0.5,)
    augmentation: ClassVar[BatchAugment | None] = None
    image_size: int | None = None

    def image_reader(self) -> ImageReader:
        """Reads an image file as this loader's splits hold their images (uint8, its channels and size)."""
        return ImageReader(len(self.mean), self.image_size)

    def input_preprocessing(self) -> dict[str, Any]:
        return {"preprocessing": "uint8 pixels / 255, then (x - mean) / std per channel", "mean": list(self.mean),
                "std": list(self.std), "image_size": self.image_size}  # fmt: skip

    def batch_prep(self, device: torch.device, augment: bool = False) -> "BatchPrep":
        """uint8 batches on ``device`` -> the model's input: scaled, augmented (``augment``), normalised."""
        return BatchPrep(self.mean, self.std, self.augmentation if augment else None, self.seed, device)


class BatchPrep:
    """uint8 images on the device -> float in [0, 1], augmented (training only), normalised."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], augment: BatchAugment | None, seed: int,
                 device: torch.device) -> None:  # fmt: skip
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.augment = augment
        self.seed = seed
        self.generator = torch.Generator(device=device)

    def __call__(self, images: torch.Tensor, epoch: int, batch: int) -> torch.Tensor:
        # floats would be divided by 255 once too often
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            raise UsageError(
                f"data_loader: its batches hold {describe(images)}; an ImageDataLoader's load_split must give uint8 "
                "images N x C x H x W (0-255), which it scales to [0, 1] and normalises (base/image_data_loader.py); "
                "for other data, subclass BaseDataLoader instead"
            )
        if not images.size(1) == self.mean.numel() == self.std.numel():  # else it broadcasts, or fails unexplained
            raise UsageError(
                f"data_loader: its batches hold images of shape {tuple(images.shape)}, {images.size(1)} channels as "
                f"N x C x H x W, but the loader's mean has {self.mean.numel()} values and its std "
                f"{self.std.numel()}; images are N x H x W x C? permute(0, 3, 1, 2) in load_split; mean and std "
                "need one value per channel"
            )
        images = images.float().div_(255)
        if self.augment is not None:
            # Seeded per batch, so skipping batches on resume leaves the later ones unchanged.
            self.generator.manual_seed((epoch_seed(self.seed, epoch) * 100_003 + batch) * 1_009 + rank())
            images = self.augment(images, self.generator)
        return (images - self.mean) / self.std
