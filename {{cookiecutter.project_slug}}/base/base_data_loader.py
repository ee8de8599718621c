"""What a data loader in data_loader/ is. A subclass writes ``load_split("train" | "test")``, which returns
either a ``TensorSplit``, the whole split in memory (inputs and targets as tensors of any dtype and shape: it
can then sit on the training device, the fast path), or a map-style ``Dataset`` whose items are
``(inputs, target)``, read item by item by a DataLoader (files, for example). Inputs are a tensor, a tuple or a
dict of tensors; a target is what the loss takes. ``collate_fn`` batches items of different sizes (padding);
``batch_prep`` turns a batch's inputs on the device into the model's (ImageDataLoader: scaling, augmentation,
normalisation). A loader may define ``read_inputs(path)``: a file's samples, as its splits hold inputs, for
predict.py to run the model on. ``BaseDataLoader`` holds out the validation part and builds the loaders. More
in docs/models-and-data.md, 'Add a dataset'.
"""

import dataclasses
import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from base.batch import sample_count, select, tensors_in
from base.loaders import BatchTransform, EpochOrder, ResidentLoader, StreamingLoader
from utils.errors import ConfigRefused, UsageError
from utils.settings import from_dict, setting

logger = logging.getLogger(__name__)
Loader = ResidentLoader | StreamingLoader
# "auto" keeps a split on a GPU only if it takes at most this share of the free memory.
RESIDENT_SHARE_OF_FREE_GPU_MEMORY = 0.25
MAX_WORKERS = 256  # worker processes (and batches each reads ahead): more would only exhaust the machine


@dataclass(frozen=True)
class TensorSplit:
    """A whole split in memory: ``inputs`` (a tensor, or a tuple or dict of tensors) and ``targets`` (a tensor, or
    a tuple or dict of them), each tensor holding one sample per row."""

    inputs: Any
    targets: Any

    def __post_init__(self) -> None:
        counts = {len(tensor) for tensor in tensors_in((self.inputs, self.targets))}
        if len(counts) > 1:  # one of the files is cut short, or from another set
            raise UsageError(
                f"data_loader: the split's tensors hold different numbers of samples ({describe_counts(self)}); "
                "check its files under data_loader.args.data_dir"
            )

    def __len__(self) -> int:
        return sample_count((self.inputs, self.targets))  # every tensor holds as many (__post_init__)

    def subset(self, indices: list[int]) -> "TensorSplit":
        index = torch.tensor(indices, dtype=torch.long)
        return TensorSplit(select(self.inputs, index), select(self.targets, index))

    def __getitem__(self, index: int) -> tuple[Any, Any]:  # an item, as a Dataset's: the DataLoader path
        return select(self.inputs, index), select(self.targets, index)


def describe_counts(split: TensorSplit) -> str:
    inputs, targets = (", ".join(str(len(t)) for t in tensors_in(part)) for part in (split.inputs, split.targets))
    return f"inputs {inputs}; targets {targets}"


ImageTensors = TensorSplit  # its name when splits held only images: (images, labels)
Split = TensorSplit | Dataset


@dataclass(frozen=True)
class LoaderSettings:
    """``data_loader.args`` besides the subclass's own arguments; every key has a default."""

    batch_size: int = setting(64, "an integer >= 1", lambda v: v >= 1)
    shuffle: bool = setting(True, "true or false")
    validation_split: float = setting(0.0, "a fraction such as 0.1 or a number of samples", lambda v: v >= 0)
    num_workers: int = setting(0, f"an integer from 0 to {MAX_WORKERS}", lambda v: 0 <= v <= MAX_WORKERS)
    pin_memory: bool = setting(False, "true or false")
    prefetch_factor: int = setting(2, f"an integer from 1 to {MAX_WORKERS}", lambda v: 1 <= v <= MAX_WORKERS)
    persistent_workers: bool = setting(False, "true or false")
    device_resident: bool | str = setting("auto", 'true, false or "auto"', lambda v: v in (True, False, "auto"))
    augment: bool = setting(True, "true or false (augment training batches)")


class BaseDataLoader:
    """Builds a run's loaders: ``train_loaders(device)`` for training and validation, ``test_loader(device)``."""

    classes: tuple[str, ...] | None = None  # the class names, by label (load_split may set them); None: not known
    # A list of items -> one batch, as torch's DataLoader takes it (to pad items of different sizes); None: torch's
    # default_collate. A split in memory with a collate_fn is read item by item, through it.
    collate_fn: Callable[[list[Any]], Any] | None = None

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

    def __new__(cls, *args: Any, **kwargs: Any) -> "BaseDataLoader":
        """A loader written when BaseDataLoader itself prepared images sets ``mean`` and ``std`` on a plain
        BaseDataLoader: it is made an ImageDataLoader, so that a project updated from then trains as before."""
        from base.image_data_loader import ImageDataLoader  # here: that module builds on this one

        if hasattr(cls, "mean") and not issubclass(cls, ImageDataLoader):
            logger.info("data_loader.type: %s sets mean and std on a BaseDataLoader, as loaders written before "
                        "ImageDataLoader did; it is read as an ImageDataLoader (subclass that instead)",
                        cls.__name__)  # fmt: skip
            cls = _as_image_loader(cls, ImageDataLoader)
        return super().__new__(cls)

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
        n_train, batch_size = len(train_indices), self.settings.batch_size
        if batch_size > n_train:  # every batch would be smaller than it says
            raise ConfigRefused(f"data_loader.args.batch_size: {batch_size} is more than the {n_train} training "
                                f"samples; use at most {n_train}")  # fmt: skip
        train = self._loader(_subset(data, train_indices), device, training=True)
        valid = self._loader(_subset(data, valid_indices), device) if valid_indices else None
        return train, valid

    def test_loader(self, device: torch.device) -> Loader:
        return self.prediction_loader("test", device)

    def prediction_loader(self, source: str | Path, device: torch.device) -> Loader:
        """Every sample of the split ``source`` ("train" or "test"), or of the inputs ``read_inputs`` reads from
        the file ``source``, in order and not augmented, prepared as test.py prepares the test split."""
        if isinstance(source, Path):
            inputs = self.read_inputs(source)
            data: Split = TensorSplit(inputs, torch.zeros(sample_count(inputs)))  # no targets: nothing to compare
        else:
            data = self.load_split(source)
        if len(data) == 0:  # a loader of yours with no test samples: nothing to evaluate or export on
            what = f"input file {str(source)!r}" if isinstance(source, Path) else f"{source} split"
            raise UsageError(f"data_loader: {type(self).__name__}'s {what} has no samples; give it some")
        return self._loader(data, device)

    def read_inputs(self, path: Path) -> Any:
        """The samples of the file ``path`` as this loader's splits hold inputs (predict.py's input files)."""
        raise UsageError(
            f"predict.py: {type(self).__name__} defines no read_inputs(path) to read input files with; predict on "
            "a split of its data with --split test (or train), or define read_inputs in the loader"
        )

    def input_preprocessing(self) -> dict[str, Any]:
        """How raw samples become the model's inputs, for a serving process to do the same (export.py writes it
        into each export's description); plain data: nothing to say."""
        return {}

    def batch_prep(self, device: torch.device, augment: bool = False) -> BatchTransform:
        """What turns a batch's inputs, on ``device``, into the model's (``augment``: a training batch). Here they
        go as they are; ImageDataLoader scales, augments and normalises images."""
        return lambda inputs, epoch, batch: inputs

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
        prep = self.batch_prep(device, augment=training and self.settings.augment)
        batch_size = self.settings.batch_size
        loader: Loader
        in_memory = isinstance(data, TensorSplit)
        if in_memory and self.collate_fn is None and self._resident(data, device):
            loader = ResidentLoader(data.inputs, data.targets, order, prep, batch_size, device)
        else:
            loader = StreamingLoader(data, order, prep, batch_size, device, self._worker_options(), self.collate_fn)
        if in_memory and len(data) > 0 and _integer_tensor(data.targets):  # every label, without reading inputs
            loader.highest_label = int(data.targets.max())
        return loader

    def _resident(self, data: TensorSplit, device: torch.device) -> bool:
        wanted = self.settings.device_resident
        if wanted is False or device.type != "cuda":
            return wanted is not False  # on the CPU the data is in memory anyway
        needed = sum(tensor.numel() * tensor.element_size() for tensor in tensors_in((data.inputs, data.targets)))
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


@functools.cache
def _as_image_loader(cls: type, image_loader: type) -> type:
    """One ImageDataLoader subclass per such loader class, named as it is."""
    return type(cls.__name__, (cls, image_loader), {"__module__": cls.__module__})


def _subset(data: Split, indices: list[int]) -> Split:
    return data.subset(indices) if isinstance(data, TensorSplit) else Subset(data, indices)


def _integer_tensor(targets: Any) -> bool:
    return isinstance(targets, torch.Tensor) and not targets.is_floating_point() and targets.dtype != torch.bool
