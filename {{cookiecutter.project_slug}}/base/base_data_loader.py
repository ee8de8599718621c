"""What a data loader in data_loader/ is. A subclass sets ``mean`` and ``std`` (one value per channel) and
writes ``load_split("train" | "test")``, which returns uint8 images N x C x H x W (0-255), all of one size:
either ``ImageTensors``, the whole split in memory (it can then sit on the training device: the fast path),
or a ``Dataset`` of ``(uint8 image C x H x W, int label)`` read item by item by a DataLoader (files, for
example). ``BaseDataLoader`` holds out the validation part and builds the loaders. More in README.md's
'Add a dataset'.
"""

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from base.images import ImageReader
from base.loaders import BatchAugment, BatchPrep, EpochOrder, ResidentLoader, StreamingLoader
from utils.errors import ConfigRefused, UsageError
from utils.settings import from_dict, setting

Loader = ResidentLoader | StreamingLoader
# "auto" keeps a split on a GPU only if it takes at most this share of the free memory.
RESIDENT_SHARE_OF_FREE_GPU_MEMORY = 0.25


@dataclass(frozen=True)
class ImageTensors:
    """A whole split in memory: uint8 images N x C x H x W and their integer labels."""

    images: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.images) != len(self.targets):  # one of the files is cut short, or from another set
            raise UsageError(
                f"data_loader: the data holds {len(self.images)} images but {len(self.targets)} labels; check its "
                "files under data_loader.args.data_dir"
            )

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, indices: list[int]) -> "ImageTensors":
        index = torch.tensor(indices, dtype=torch.long)
        return ImageTensors(self.images[index], self.targets[index])


Split = ImageTensors | Dataset


@dataclass(frozen=True)
class LoaderSettings:
    """``data_loader.args`` besides the subclass's own arguments; every key has a default."""

    batch_size: int = setting(64, "an integer >= 1", lambda v: v >= 1)
    shuffle: bool = setting(True, "true or false")
    validation_split: float = setting(0.0, "a fraction such as 0.1 or a number of samples", lambda v: v >= 0)
    num_workers: int = setting(0, "an integer >= 0", lambda v: v >= 0)
    pin_memory: bool = setting(False, "true or false")
    prefetch_factor: int = setting(2, "an integer >= 1", lambda v: v >= 1)
    persistent_workers: bool = setting(False, "true or false")
    device_resident: bool | str = setting("auto", 'true, false or "auto"', lambda v: v in (True, False, "auto"))
    augment: bool = setting(True, "true or false (augment training batches)")


class BaseDataLoader:
    """Builds a run's loaders: ``train_loaders(device)`` for training and validation, ``test_loader(device)``."""

    mean: ClassVar[tuple[float, ...]] = (0.5,)
    std: ClassVar[tuple[float, ...]] = (0.5,)
    augmentation: ClassVar[BatchAugment | None] = None  # for training batches, from base/augment.py
    classes: tuple[str, ...] | None = None  # the class names, by label (load_split may set them); None: not known
    image_size: int | None = None  # image files are resized and centre-cropped to this; None: kept as they are

    def class_names(self) -> list[str] | None:
        """The class names by label (checkpoints keep them, and the model's ``num_classes`` defaults to their count)."""
        return list(self.classes) if self.classes is not None else None

    @classmethod
    def argument_names(cls) -> list[str]:
        """Every key ``data_loader.args`` may hold for this class: the named parameters of each ``__init__``
        from its own down to BaseDataLoader's (which the ``**loader_args`` pass through), and the LoaderSettings."""
        names = {field.name for field in dataclasses.fields(LoaderSettings)}
        for klass in cls.__mro__[: cls.__mro__.index(BaseDataLoader)]:
            if "__init__" in vars(klass):
                parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]  # not self
                names |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        return sorted(names)

    def __init__(self, seed: int = 0, **loader_args: Any) -> None:
        self.seed = seed
        self.settings = from_dict(LoaderSettings, loader_args, "data_loader.args", strict=True)

    def load_split(self, split: str) -> Split:
        """The ``"train"`` or ``"test"`` split; see the module docstring."""
        raise NotImplementedError(f"{type(self).__name__} must define load_split(split)")

    def train_loaders(self, device: torch.device) -> tuple[Loader, Loader | None]:
        """The training loader and, when ``validation_split`` holds some out, the validation loader."""
        data = self.load_split("train")
        train_indices, valid_indices = self._split(len(data))
        train = self._loader(_subset(data, train_indices), device, training=True)
        valid = self._loader(_subset(data, valid_indices), device) if valid_indices else None
        return train, valid

    def test_loader(self, device: torch.device) -> Loader:
        data = self.load_split("test")
        if len(data) == 0:  # a loader of yours with no test samples: nothing to evaluate or export on
            raise UsageError(f"data_loader: {type(self).__name__}'s test split has no samples; give it some")
        return self._loader(data, device)

    def image_reader(self) -> ImageReader:
        """Reads an image file as this loader's splits hold their images (uint8, its channels and size)."""
        return ImageReader(len(self.mean), self.image_size)

    def batch_prep(self, device: torch.device, augment: BatchAugment | None = None) -> BatchPrep:
        """uint8 batches on ``device`` -> the model's input: scaled, ``augment``-ed (training only), normalised."""
        return BatchPrep(self.mean, self.std, augment, self.seed, device)

    def _split(self, n_samples: int) -> tuple[list[int], list[int]]:
        """(training, validation) indices, drawn with a private generator seeded from ``seed``."""
        fraction = self.settings.validation_split
        n_valid = fraction if isinstance(fraction, int) else round(n_samples * fraction)
        if n_valid == 0 and fraction > 0:  # else the run goes on without the validation it asked for
            raise ConfigRefused(
                f"data_loader.args.validation_split: {fraction} of {n_samples} training samples holds out none; "
                "give a count instead (1 or more), or 0 to train without validation"
            )
        if n_valid >= n_samples:
            raise ConfigRefused(
                f"data_loader.args.validation_split: {fraction} leaves no training data "
                f"out of {n_samples} samples; use a fraction below 1 or a smaller count"
            )
        order = torch.randperm(n_samples, generator=torch.Generator().manual_seed(self.seed)).tolist()
        training = order[n_valid:]
        # shuffle false trains in the split's own order (a curriculum, a debugging run), not in this draw's
        return (training if self.settings.shuffle else sorted(training)), order[:n_valid]

    def _loader(self, data: Split, device: torch.device, training: bool = False) -> Loader:
        """One loader over ``data``. A ``training`` one shuffles and augments as the settings say and, under
        torchrun, pads every process's share to the same length, shuffled or not: a process with one batch
        more would wait forever in that batch's gradient all-reduce."""
        shuffle = training and self.settings.shuffle
        order = EpochOrder(len(data), self.seed, shuffle=shuffle, pad=training)  # type: ignore[arg-type]
        prep = self.batch_prep(device, self.augmentation if training and self.settings.augment else None)
        batch_size = self.settings.batch_size
        loader: Loader
        if isinstance(data, ImageTensors) and self._resident(data, device):
            loader = ResidentLoader(data.images, data.targets, order, prep, batch_size, device)
        else:
            dataset = TensorDataset(data.images, data.targets) if isinstance(data, ImageTensors) else data
            loader = StreamingLoader(dataset, order, prep, batch_size, device, self._worker_options())
        if isinstance(data, ImageTensors) and len(data) > 0:  # one pass over the labels, without reading images
            loader.highest_label = int(data.targets.max())
        return loader

    def _resident(self, data: ImageTensors, device: torch.device) -> bool:
        wanted = self.settings.device_resident
        if wanted is False or device.type != "cuda":
            return wanted is not False  # on the CPU the data is in memory anyway
        needed = data.images.numel() * data.images.element_size()
        free, _ = torch.cuda.mem_get_info(device)
        fits = needed <= RESIDENT_SHARE_OF_FREE_GPU_MEMORY * free
        if not fits and wanted is True:
            raise UsageError(
                f"data_loader.args.device_resident: the data needs {needed / 2**20:.0f} MiB, more than "
                f"{RESIDENT_SHARE_OF_FREE_GPU_MEMORY:.0%} of the {free / 2**20:.0f} MiB free on {device}; "
                'set device_resident to "auto" or false'
            )
        return fits

    def _worker_options(self) -> dict[str, Any]:
        if self.settings.device_resident is True:
            raise ConfigRefused(
                f"data_loader.args.device_resident: {type(self).__name__} reads its data from files as it goes, "
                "so it cannot hold it on the device; set device_resident to false"
            )
        options: dict[str, Any] = {
            "num_workers": self.settings.num_workers,
            # Pinned memory only speeds up copies to a GPU; without one it is refused with a warning.
            "pin_memory": self.settings.pin_memory and torch.cuda.is_available(),
        }
        if self.settings.num_workers > 0:
            options.update(prefetch_factor=self.settings.prefetch_factor,
                           persistent_workers=self.settings.persistent_workers)  # fmt: skip
        return options


def _subset(data: Split, indices: list[int]) -> Split:
    return data.subset(indices) if isinstance(data, ImageTensors) else Subset(data, indices)
