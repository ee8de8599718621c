"""The two ways a run feeds batches to the model, both yielding ``(images, targets)`` on the device, prepared
by ``BatchPrep``: ``ResidentLoader`` slices batches out of a split held on the device, ``StreamingLoader``
reads them with a torch DataLoader (workers, for files) and copies each over. An epoch's order depends only on
the seed and the epoch, and an epoch can start part way, so a resumed run sees the batches an unstopped one would.
"""

import atexit
import functools
import math
import multiprocessing
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from utils.dist import rank, world_size
from utils.errors import UsageError
from utils.signals import ignore_stop_signals
from utils.util import seed_worker

Batch = tuple[torch.Tensor, torch.Tensor]
# (float images in [0, 1], generator) -> augmented images of the same shape; see base/augment.py
BatchAugment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffle order: the same for every run with this seed."""
    return seed * 1_000_003 + epoch


@dataclass
class EpochOrder:
    """Which samples an epoch visits, in which order, and this process's share of them."""

    n_samples: int
    seed: int
    shuffle: bool
    pad: bool  # training: equal shares under torchrun (see indices)

    def indices(self, epoch: int) -> torch.Tensor:
        """This process's share of the epoch's order: every world_size-th sample (every process draws the
        same order). With ``pad``, the first few are repeated so that all shares are equal: every process
        must take the same number of training steps, or the gradient all-reduce waits forever."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            order = torch.randperm(self.n_samples, generator=generator)
        else:
            order = torch.arange(self.n_samples)
        world = world_size()
        if self.pad:
            order = torch.cat([order, order[: -len(order) % world]])
        return order[rank() :: world]

    def share(self) -> int:
        """How many samples this process sees per epoch (all of them outside torchrun)."""
        world = world_size()
        return math.ceil(self.n_samples / world) if self.pad else len(range(rank(), self.n_samples, world))


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
        if images.dtype != torch.uint8 or images.dim() != 4:  # floats would be divided by 255 once too often
            raise UsageError(
                f"data_loader: its batches hold {str(images.dtype).removeprefix('torch.')} of shape "
                f"{tuple(images.shape)}; load_split must give uint8 images N x C x H x W (0-255), which the loaders "
                "scale to [0, 1] and normalise (see base/base_data_loader.py)"
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


class _EpochBatches:
    """What both loaders share: the batch size, the epoch to iterate, and where in it to start."""

    def __init__(self, order: EpochOrder, prep: BatchPrep, batch_size: int, device: torch.device) -> None:
        self.order, self.prep, self.batch_size, self.device = order, prep, batch_size, device
        self.epoch, self.start_batch = 0, 0
        self.n_samples = order.n_samples
        # Set by the BaseDataLoader when the split is in memory (None otherwise): the Trainer and test.py check
        # the model's outputs against it before any epoch, not only against the first batch's labels.
        self.highest_label: int | None = None

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Iterate ``epoch`` next (its order depends only on seed and epoch), skipping ``start_batch`` batches."""
        self.epoch, self.start_batch = epoch, start_batch

    def batches_per_epoch(self) -> int:
        """This process's batches in a whole epoch (``len`` counts those left after ``start_batch``)."""
        return math.ceil(self.order.share() / self.batch_size)

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start_batch

    def index_batches(self, device: torch.device | None = None) -> Iterator[torch.Tensor]:
        """The current epoch's batches as index tensors (on ``device``: one copy per epoch, not per batch)."""
        order = self.order.indices(self.epoch).to(device or "cpu")
        for batch in range(self.start_batch, math.ceil(len(order) / self.batch_size)):
            yield order[batch * self.batch_size : (batch + 1) * self.batch_size]


class ResidentLoader(_EpochBatches):
    """Batches sliced out of a whole split held on the device."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, order: EpochOrder, prep: BatchPrep,
                 batch_size: int, device: torch.device) -> None:  # fmt: skip
        super().__init__(order, prep, batch_size, device)
        self.images = images.to(device)  # uint8: a quarter of the float size
        self.targets = targets.to(device)

    def __iter__(self) -> Iterator[Batch]:
        for batch, index in enumerate(self.index_batches(self.device), start=self.start_batch):
            yield self.prep(self.images[index], self.epoch, batch), self.targets[index]


def start_worker(worker_id: int) -> None:
    """Each DataLoader worker: its stop signals left to the main process, its RNGs seeded."""
    ignore_stop_signals()
    seed_worker(worker_id)


@functools.cache
def end_workers_at_exit() -> None:
    """Workers ignore SIGTERM (start_worker), and multiprocessing ends the workers still running at exit (an
    error ended the epoch) with SIGTERM and then waits: they are killed first, or it would wait forever."""
    atexit.register(_kill_workers)


def _kill_workers() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # torch's handler would report each as a failed worker
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()


class StreamingLoader(_EpochBatches):
    """Batches read by a torch DataLoader (``workers`` holds its worker and pinning options)."""

    def __init__(self, dataset: Dataset, order: EpochOrder, prep: BatchPrep, batch_size: int,
                 device: torch.device, workers: dict) -> None:  # fmt: skip
        super().__init__(order, prep, batch_size, device)
        self.generator = torch.Generator()
        if workers.get("num_workers"):
            end_workers_at_exit()
        self.loader = DataLoader(dataset, batch_sampler=_IndexLists(self), generator=self.generator,
                                 worker_init_fn=start_worker, collate_fn=collate_same_size, **workers)  # fmt: skip
        self.num_workers = self.loader.num_workers

    def __iter__(self) -> Iterator[Batch]:
        self.generator.manual_seed(epoch_seed(self.order.seed, self.epoch))  # worker seeds, for transforms of yours
        for batch, (images, targets) in enumerate(self.loader, start=self.start_batch):
            images = images.to(self.device, non_blocking=True)
            yield self.prep(images, self.epoch, batch), targets.to(self.device, non_blocking=True)


def collate_same_size(items: list[Any]) -> Any:
    """torch's default_collate, with one line for the mistake it cannot stack: images of one batch that
    differ in size (a Dataset that does not resize its files). Checked only once stacking has failed."""
    try:
        return default_collate(items)
    except RuntimeError:
        images = [item[0] for item in items if isinstance(item, tuple | list) and item]
        shapes = sorted({tuple(image.shape) for image in images if isinstance(image, torch.Tensor)})
        if len(shapes) < 2:
            raise
        raise UsageError(
            f"data_loader: the images of a split differ in size ({shapes[0]} and {shapes[1]} in one batch); every "
            "image of a split must have the same size: resize them in the Dataset, or set the loader's image_size "
            "if it takes one (ImageFolderDataLoader: data_loader.args.image_size)"
        ) from None


class _IndexLists:
    """The DataLoader's batch sampler: the current epoch's batches as lists of indices."""

    def __init__(self, batches: _EpochBatches) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        return (index.tolist() for index in self.batches.index_batches())

    def __len__(self) -> int:
        return len(self.batches)
