"""Tiny synthetic data: 8x8 grey images of a horizontal bar, a vertical bar or a cross (the three
classes) on dim noise. A tiny conv net learns them in an epoch or two; flips and one-pixel shifts
keep the class, so the training batches can be augmented."""

import torch
from torch.utils.data import Dataset

from base.augment import RandomCropFlip
from base.base_data_loader import ImageTensors
from base.image_data_loader import ImageDataLoader

SIZE = 8
CLASSES = ("horizontal", "vertical", "cross")


def striped_images(n_samples: int, seed: int) -> ImageTensors:
    """``n_samples`` uint8 1x8x8 images and their classes, the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, len(CLASSES), (n_samples,), generator=generator)
    images = torch.randint(0, 60, (n_samples, 1, SIZE, SIZE), generator=generator, dtype=torch.uint8)
    offsets = torch.randint(2, SIZE - 3, (n_samples, 2), generator=generator)
    for image, target, (row, column) in zip(images, targets.tolist(), offsets.tolist(), strict=True):
        if CLASSES[target] in ("horizontal", "cross"):
            image[:, row : row + 2, :] = 220
        if CLASSES[target] in ("vertical", "cross"):
            image[:, :, column : column + 2] = 220
    return ImageTensors(images, targets)


class ItemDataset(Dataset):
    """Whole-split tensors read item by item, as a Dataset of files would be: ``(uint8 C x H x W, int)``."""

    def __init__(self, tensors: ImageTensors) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.tensors.inputs[index], int(self.tensors.targets[index])


class TinyTensorLoader(ImageDataLoader):
    """Splits as ``ImageTensors``: the device-resident path (unless ``device_resident`` is false)."""

    mean, std = (0.3,), (0.35,)
    augmentation = RandomCropFlip(padding=1)
    classes = CLASSES

    def __init__(self, n_train: int = 240, n_test: int = 60, **loader_args: object) -> None:
        super().__init__(**loader_args)
        self.n_train, self.n_test = n_train, n_test

    def load_split(self, split: str) -> ImageTensors | Dataset:
        if split == "train":
            return striped_images(self.n_train, seed=0)
        return striped_images(self.n_test, seed=1)


class TinyDatasetLoader(TinyTensorLoader):
    """The same images as a ``Dataset``: the DataLoader path."""

    def load_split(self, split: str) -> ImageTensors | Dataset:
        return ItemDataset(super().load_split(split))  # type: ignore[arg-type]


class TinyFloatLoader(TinyTensorLoader):
    """The same images already scaled to floats in [0, 1], which the loaders refuse: they take uint8 pixels."""

    def load_split(self, split: str) -> ImageTensors | Dataset:
        tensors = super().load_split(split)
        return ImageTensors(tensors.inputs.float() / 255, tensors.targets)  # type: ignore[union-attr]


class TinyHwcLoader(TinyTensorLoader):
    """The same images as N x H x W x C (numpy's and PIL's layout), which the loaders refuse: they take N x C x H x W
    (as ImageTensors or Dataset items of C x H x W)."""

    def load_split(self, split: str) -> ImageTensors | Dataset:
        tensors = super().load_split(split)
        return ImageTensors(tensors.inputs.permute(0, 2, 3, 1).contiguous(), tensors.targets)  # type: ignore[union-attr]


class TinyHwcDatasetLoader(TinyHwcLoader):
    """N x H x W x C images as a ``Dataset`` (H x W x C items): the DataLoader path."""

    def load_split(self, split: str) -> ImageTensors | Dataset:
        return ItemDataset(super().load_split(split))  # type: ignore[arg-type]


class RaggedDataset(ItemDataset):
    """Every fifth image one row short: items of two sizes, which a batch cannot stack."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, target = super().__getitem__(index)
        return (image[:, 1:] if index % 5 == 0 else image), target


class TinyRaggedLoader(TinyTensorLoader):
    """A ``Dataset`` whose images differ in size (a folder of files, not resized), which the loaders refuse."""

    def load_split(self, split: str) -> ImageTensors | Dataset:
        return RaggedDataset(super().load_split(split))  # type: ignore[arg-type]


class TinyRgbLoader(TinyTensorLoader):
    """The same images in three channels, normalised by one mean and std for all three, which the loaders refuse:
    predict.py would read image files as one channel (it reads as many as the mean has values)."""

    def load_split(self, split: str) -> ImageTensors | Dataset:
        tensors = super().load_split(split)
        return ImageTensors(tensors.inputs.expand(-1, 3, -1, -1).contiguous(), tensors.targets)  # type: ignore[union-attr]


class UnnamedTensorLoader(TinyTensorLoader):
    """The same data without class names (a loader of yours that does not set ``classes``)."""

    classes = None


class RareClassLoader(TinyTensorLoader):
    """A fourth class, "dot", so rare that only the last training sample has it (a label no first batch shows:
    a model with three outputs would fail part way through an epoch)."""

    classes = (*CLASSES, "dot")

    def load_split(self, split: str) -> ImageTensors | Dataset:
        tensors = super().load_split(split)
        if split == "train":
            tensors.targets[-1] = 3  # type: ignore[union-attr]
        return tensors


class UnnamedRareClassLoader(RareClassLoader):
    """The rare fourth class without class names: only the labels say there are four."""

    classes = None


class RareLabelDatasetLoader(TinyTensorLoader):
    """``rare_label`` (3: beyond the three classes) on the last sample of the ``rare_in`` split only, read item by
    item (a Dataset) and with no class names to count: nothing before the first epoch can see it."""

    classes = None

    def __init__(self, rare_in: str = "train", rare_label: int = 3, **loader_args: object) -> None:
        super().__init__(**loader_args)  # type: ignore[arg-type]
        self.rare_in, self.rare_label = rare_in, rare_label

    def load_split(self, split: str) -> ImageTensors | Dataset:
        tensors = super().load_split(split)
        if split == self.rare_in:
            tensors.targets[-1] = self.rare_label  # type: ignore[union-attr]
        return ItemDataset(tensors)  # type: ignore[arg-type]


class LearntClassesLoader(TinyTensorLoader):
    """Learns its class names while reading a split, as a loader that reads them from the data does;
    ``reversed_in`` names the split ("train" or "test") whose names come in the opposite order (its labels
    then mean other classes than the checkpoint's)."""

    classes = None

    def __init__(self, reversed_in: str = "", **loader_args: object) -> None:
        super().__init__(**loader_args)  # type: ignore[arg-type]
        self.reversed_in = reversed_in

    def load_split(self, split: str) -> ImageTensors | Dataset:
        self.classes = CLASSES[::-1] if split == self.reversed_in else CLASSES
        return super().load_split(split)


def tiny_tensor_loader(**loader_args: object) -> TinyTensorLoader:
    """A factory function: data_loader.type names only classes, and must say so."""
    return TinyTensorLoader(**loader_args)  # type: ignore[arg-type]
