"""The device-resident data path: a whole split as one tensor on the training device.

For datasets that fit in device memory (the MNIST sample, MNIST, Fashion-MNIST, CIFAR-10) this
replaces the DataLoader: the uint8 images move to the device once, each epoch slices batches out
of a seeded permutation, and augmentation runs on whole batches on the device. No workers, no
per-sample transforms or collation, no host-to-device copy per batch.
"""

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from utils.dist import rank, shard, world_size

# (float images in [0, 1], generator) -> augmented images of the same shape
BatchAugment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def random_affine(degrees: float = 10, translate: float = 0.1, scale: tuple[float, float] = (0.9, 1.1)) -> BatchAugment:
    """Rotation, shift and zoom drawn per image, like torchvision's RandomAffine but for a whole batch."""

    def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        draws = torch.rand(images.size(0), 4, generator=generator, device=images.device)
        angle = (draws[:, 0] * 2 - 1) * math.radians(degrees)
        zoom = scale[0] + draws[:, 1] * (scale[1] - scale[0])
        # affine_grid works in [-1, 1] coordinates, so a shift of a fraction f of the image is 2f.
        shift = (draws[:, 2:] * 2 - 1) * 2 * translate
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    return augment


def random_crop_flip(padding: int = 4) -> BatchAugment:
    """RandomCrop(size, padding) and RandomHorizontalFlip for a whole batch: whole-pixel shifts, zero fill."""

    def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, height, width = images.shape
        shifts = torch.randint(-padding, padding + 1, (n, 2), generator=generator, device=images.device)
        flip = torch.randint(0, 2, (n,), generator=generator, device=images.device) * 2 - 1
        zero, one = torch.zeros(n, device=images.device), torch.ones(n, device=images.device)
        tx, ty = shifts[:, 0] * 2 / width, shifts[:, 1] * 2 / height
        theta = torch.stack([torch.stack([flip.float(), zero, tx], 1), torch.stack([zero, one, ty], 1)], 1)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)

    return augment


class ResidentLoader:
    """Batches of one split, held on ``device``; iterates like a DataLoader of ``(images, targets)``."""

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        *,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        batch_size: int,
        shuffle: bool,
        seed: int,
        device: torch.device,
        augment: BatchAugment | None = None,
        pad: bool = True,
    ) -> None:
        self.images = images.to(device)  # uint8, N x C x H x W: a quarter of the float size
        self.targets = targets.to(device)
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment
        self.pad = pad  # equal shares under torchrun (training); evaluation needs no padding
        self.n_samples = len(self.targets)
        self.epoch, self.start_batch = 0, 0
        self._augment_generator = torch.Generator(device=device)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """The order of each epoch depends only on the seed and the epoch; ``start_batch`` skips ahead."""
        self.epoch, self.start_batch = epoch, start_batch

    def _share(self) -> int:
        """How many samples this process sees per epoch (all of them outside torchrun)."""
        world = world_size()
        return math.ceil(self.n_samples / world) if self.pad else len(range(rank(), self.n_samples, world))

    def __len__(self) -> int:
        return math.ceil(self._share() / self.batch_size) - self.start_batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.shuffle:
            order_generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n_samples, generator=order_generator).to(self.images.device)
        else:
            order = torch.arange(self.n_samples, device=self.images.device)
        order = shard(order, pad=self.pad)  # under torchrun, this process's share of the same order
        for batch in range(self.start_batch, math.ceil(len(order) / self.batch_size)):
            index = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            images = self.images[index].float().div_(255)
            if self.augment is not None:
                # Seeded per batch, so skipping batches on resume leaves the later ones unchanged.
                batch_seed = ((self.seed * 1_000_003 + self.epoch) * 100_003 + batch) * 1_009 + rank()
                self._augment_generator.manual_seed(batch_seed)
                images = self.augment(images, self._augment_generator)
            yield (images - self.mean) / self.std, self.targets[index]
