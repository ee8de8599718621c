"""The two ways a run feeds batches to the model, both yielding ``(inputs, target)`` on the device, prepared by
the data loader's ``batch_prep``: ``ResidentLoader`` slices batches out of a split held on the device,
``StreamingLoader`` reads them with a torch DataLoader (workers, for files) and copies each over. An epoch's
order depends only on the seed and the epoch, and an epoch can start part way, so a resumed run sees the
batches an unstopped one would.
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

from base.batch import move_to, select, tensors_in
from utils.dist import rank, world_size
from utils.errors import UsageError
from utils.signals import ignore_stop_signals
from utils.util import seed_worker

Batch = Any  # (inputs, target) (base/batch.py), or what a Dataset's items and collate_fn make
# (a batch's inputs on the device, epoch, batch number) -> the model's inputs: a loader's batch_prep
BatchTransform = Callable[[Any, int, int], Any]


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


class _EpochBatches:
    """What both loaders share: the batch size, the epoch to iterate, and where in it to start."""

    def __init__(self, order: EpochOrder, prep: BatchTransform, batch_size: int, device: torch.device) -> None:
        self.order, self.prep, self.batch_size, self.device = order, prep, batch_size, device
        self.epoch, self.start_batch = 0, 0
        self.n_samples = order.n_samples
        # Set by the BaseDataLoader when the split is in memory with integer targets (None otherwise): the Trainer
        # and test.py check a classifier's outputs against it before any epoch, not only against the first batch.
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
    """Batches sliced out of a whole split held on the device: every tensor of its inputs and targets, by the
    same indices."""

    def __init__(self, inputs: Any, targets: Any, order: EpochOrder, prep: BatchTransform,
                 batch_size: int, device: torch.device) -> None:  # fmt: skip
        super().__init__(order, prep, batch_size, device)
        self.inputs = move_to(inputs, device)  # as the split holds them (uint8 images: a quarter of the float size)
        self.targets = move_to(targets, device)

    def __iter__(self) -> Iterator[Batch]:
        for batch, index in enumerate(self.index_batches(self.device), start=self.start_batch):
            yield self.prep(select(self.inputs, index), self.epoch, batch), select(self.targets, index)


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
    """Batches read by a torch DataLoader (``workers`` holds its worker and pinning options), put together by
    ``collate_fn`` (a list of items -> a batch, as the DataLoader takes it; None: torch's default_collate)."""

    def __init__(self, dataset: Dataset, order: EpochOrder, prep: BatchTransform, batch_size: int,
                 device: torch.device, workers: dict, collate_fn: Callable[[list], Any] | None = None,
                 ) -> None:  # fmt: skip
        super().__init__(order, prep, batch_size, device)
        self.generator = torch.Generator()
        if workers.get("num_workers"):
            end_workers_at_exit()
        self.loader = DataLoader(dataset, batch_sampler=_IndexLists(self), generator=self.generator,
                                 worker_init_fn=start_worker, collate_fn=collate_fn or collate_same_shape,
                                 **workers)  # fmt: skip
        self.num_workers = self.loader.num_workers

    def __iter__(self) -> Iterator[Batch]:
        self.generator.manual_seed(epoch_seed(self.order.seed, self.epoch))  # worker seeds, for transforms of yours
        for number, batch in enumerate(self.loader, start=self.start_batch):
            batch = move_to(batch, self.device, non_blocking=True)
            if isinstance(batch, tuple | list) and len(batch) == 2:  # (inputs, target): the inputs are prepared
                yield self.prep(batch[0], self.epoch, number), batch[1]
            else:  # items of another structure, which a Trainer subclass's batch_loss takes apart
                yield batch


def collate_same_shape(items: list[Any]) -> Any:
    """torch's default_collate, with one line for the mistake it cannot stack: items of one batch whose tensors
    differ in shape (sequences of several lengths, files of several sizes). Checked only once stacking failed."""
    try:
        return default_collate(items)
    except RuntimeError:
        inputs = [tensors_in(item[0] if isinstance(item, tuple | list) and item else item) for item in items]
        shapes = sorted({tuple(tensors[0].shape) for tensors in inputs if tensors})  # each item's first input
        if len(shapes) < 2:
            raise
        raise UsageError(
            f"data_loader: the items of one batch differ in shape ({shapes[0]} and {shapes[1]}), so they cannot be "
            "stacked; give the loader a collate_fn that pads them (see base/base_data_loader.py), or make them one "
            "size (ImageFolderDataLoader: data_loader.args.image_size)"
        ) from None


class _IndexLists:
    """The DataLoader's batch sampler: the current epoch's batches as lists of indices."""

    def __init__(self, batches: _EpochBatches) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        return (index.tolist() for index in self.batches.index_batches())

    def __len__(self) -> int:
        return len(self.batches)
