"""Base class for data loaders: a DataLoader that owns its train/validation split."""

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from data_loader.resident import BatchAugment, ResidentLoader
from utils.dist import shard, world_size
from utils.util import ConfigError, seed_worker

# "auto" keeps a split on a GPU only if it takes at most this share of the free memory.
RESIDENT_SHARE_OF_FREE_GPU_MEMORY = 0.25


@dataclass(frozen=True)
class ResidentSource:
    """What a loader offers for the device-resident path: its whole dataset as tensors, and how to
    normalise and augment it in batches."""

    images: torch.Tensor  # uint8, N x C x H x W
    targets: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: BatchAugment | None


class TransformedDataset(Dataset):
    """Applies ``transform`` to the inputs of ``(input, target)`` pairs from another dataset.

    It lets the training and validation parts of one dataset use different transforms.
    """

    def __init__(self, dataset: Dataset, transform: Callable[[Any], Any] | None) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        sample, target = self.dataset[index]
        return (self.transform(sample) if self.transform else sample), target


class EpochSampler(Sampler[int]):
    """Indices in an order fixed by ``(seed, epoch)``, optionally starting part way through.

    Nothing carries over from one epoch to the next, so a run resumed at any epoch (or, with
    ``start``, at any batch of it) sees exactly the batches an uninterrupted run would.
    """

    def __init__(self, n_samples: int, seed: int, shuffle: bool) -> None:
        self.n_samples = n_samples
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch = epoch
        self.start = start

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n_samples, generator=generator).tolist()
        else:
            order = list(range(self.n_samples))
        # Under torchrun every process draws the same order and keeps its own share of it.
        return iter(shard(order)[self.start :])

    def __len__(self) -> int:
        return math.ceil(self.n_samples / world_size()) - self.start


class BaseDataLoader(DataLoader):
    """Loads the training part (``training=True``) or the test split (``training=False``).

    In training mode ``validation_split`` (a fraction, or a number of samples) is held out with a
    generator seeded from ``seed``, and ``split_validation()`` returns a loader for it that uses
    ``eval_transform``. The shuffle order of each epoch depends only on ``seed`` and the epoch
    number (see ``set_epoch``), so a resumed run sees the same batches as an uninterrupted one.
    With ``training=False`` it loads the test split, in order.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        train_transform: Callable[[Any], Any] | None,
        eval_transform: Callable[[Any], Any] | None,
        batch_size: int = 64,
        shuffle: bool = True,
        validation_split: float | int = 0.0,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int = 2,
        persistent_workers: bool = False,
        training: bool = True,
        seed: int = 0,
        device_resident: bool | str = False,
        resident_source: ResidentSource | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"data_loader.args.batch_size: expected an integer >= 1, got {batch_size}")
        if num_workers < 0:
            raise ConfigError(f"data_loader.args.num_workers: expected an integer >= 0, got {num_workers}")
        if device_resident not in (True, False, "auto"):
            raise ConfigError(
                f'data_loader.args.device_resident: expected true, false or "auto", got {device_resident!r}'
            )
        if device_resident is True and resident_source is None:
            raise ConfigError(
                f"data_loader.args.device_resident: {type(self).__name__} reads its data from files as it goes, "
                "so it cannot hold it on the device; set device_resident to false"
            )
        self.seed = seed
        self.shuffle = shuffle and training
        self.device_resident = device_resident
        self.resident_source = resident_source
        self.split_indices: tuple[list[int], list[int]] | None = None
        self.shuffle = shuffle and training
        self.device_resident = device_resident
        self.resident_source = resident_source
        self.split_indices: tuple[list[int], list[int]] | None = None
        self._loader_kwargs: dict[str, Any] = {
            "batch_size": batch_size,
            "num_workers": num_workers,
            # Pinned memory only speeds up copies to a GPU; without one it is refused with a warning.
            "pin_memory": pin_memory and torch.cuda.is_available(),
            "worker_init_fn": seed_worker,
        }
        if num_workers > 0:
            # Fresh workers each epoch (the default) draw their seeds from the per-epoch generator,
            # so a resumed run's augmentation matches an uninterrupted one; persistent workers
            # start faster but carry their random state across epochs, so resume is then inexact.
            self._loader_kwargs.update(prefetch_factor=prefetch_factor, persistent_workers=persistent_workers)
        self._validation_set: Dataset | None = None
        if training:
            train_idx, val_idx = self._split(len(dataset), validation_split, seed)  # type: ignore[arg-type]
            self.split_indices = train_idx, val_idx
            if val_idx:
                self._validation_set = TransformedDataset(Subset(dataset, val_idx), eval_transform)
            dataset = TransformedDataset(Subset(dataset, train_idx), train_transform)
        else:
            dataset = TransformedDataset(dataset, eval_transform)
            shuffle = False
        self.n_samples = len(dataset)  # type: ignore[arg-type]
        sampler = EpochSampler(self.n_samples, seed, self.shuffle)
        super().__init__(dataset, sampler=sampler, generator=torch.Generator(), **self._loader_kwargs)

    @staticmethod
    def _split(n_samples: int, validation_split: float | int, seed: int) -> tuple[list[int], list[int]]:
        if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)):
            raise ConfigError(
                "data_loader.args.validation_split: expected a fraction such as 0.1 or a number of samples, "
                f"got {validation_split!r}"
            )
        n_val = validation_split if isinstance(validation_split, int) else round(n_samples * validation_split)
        if not 0 <= n_val < n_samples:
            raise ConfigError(
                f"data_loader.args.validation_split: {validation_split} leaves no training data "
                f"out of {n_samples} samples; use a fraction below 1 or a smaller count"
            )
        # A private generator: the split never touches (or reseeds) any global RNG.
        order = torch.randperm(n_samples, generator=torch.Generator().manual_seed(seed)).tolist()
        return order[n_val:], order[:n_val]

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Fix this epoch's order (and worker seeds) from the seed and the epoch; skip ``start_batch`` batches."""
        self.sampler.set_epoch(epoch, start_batch * self.batch_size)  # type: ignore[attr-defined, operator]
        self.generator.manual_seed(self.seed * 1_000_003 + epoch)

    def split_validation(self) -> DataLoader | None:
        if self._validation_set is None:
            return None
        # Its own generator, so validation never draws from the global RNG that training uses.
        generator = torch.Generator().manual_seed(self.seed)
        share = shard(range(len(self._validation_set)), pad=False)  # type: ignore[arg-type]
        return DataLoader(self._validation_set, sampler=list(share), generator=generator, **self._loader_kwargs)

    def loaders_for(
        self, device: torch.device
    ) -> tuple["BaseDataLoader | ResidentLoader", DataLoader | ResidentLoader | None]:
        """The (main, validation) loaders to use on ``device``: device-resident ones when
        ``device_resident`` allows it and the data fits, else this DataLoader and its validation part."""
        source = self.resident_source
        if source is None or self.device_resident is False or not self._fits(source, device):
            return self, self.split_validation()
        common = {"mean": source.mean, "std": source.std, "batch_size": self.batch_size, "seed": self.seed}
        if self.split_indices is None:  # the test split
            test = ResidentLoader(source.images, source.targets, shuffle=False, device=device, **common)
            return test, None
        train_idx, val_idx = (torch.tensor(part, dtype=torch.long) for part in self.split_indices)
        train = ResidentLoader(
            source.images[train_idx], source.targets[train_idx], shuffle=self.shuffle, device=device,
            augment=source.augment, **common,
        )  # fmt: skip
        valid = None
        if len(val_idx):
            valid = ResidentLoader(
                source.images[val_idx], source.targets[val_idx], shuffle=False, device=device, pad=False, **common
            )
        return train, valid

    def _fits(self, source: ResidentSource, device: torch.device) -> bool:
        if device.type != "cuda":
            return True  # the dataset is in host memory already
        needed = source.images.numel() * source.images.element_size()
        free, _ = torch.cuda.mem_get_info(device)
        fits = needed <= RESIDENT_SHARE_OF_FREE_GPU_MEMORY * free
        if not fits and self.device_resident is True:
            raise ConfigError(
                f"data_loader.args.device_resident: the data needs {needed / 2**20:.0f} MiB, more than a quarter "
                f'of the {free / 2**20:.0f} MiB free on {device}; set device_resident to "auto" or false'
            )
        return fits
