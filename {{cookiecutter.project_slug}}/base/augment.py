"""Batch augmentations: whole batches of float images in [0, 1] on the training device, drawn from a
seeded generator. Both data paths use them (see base/loaders.py), so a dataset writes its
augmentation once. Name one in a data loader's ``augmentation`` attribute."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _warp(images: torch.Tensor, theta: torch.Tensor, mode: str) -> torch.Tensor:
    """Apply one 2x3 affine matrix per image (in [-1, 1] coordinates), filling with zeros."""
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)


@dataclass(frozen=True)
class RandomAffine:
    """Rotation, shift and zoom drawn per image, like torchvision's RandomAffine (for digits)."""

    degrees: float = 10
    translate: float = 0.1  # the largest shift, as a fraction of the image size
    scale: tuple[float, float] = (0.9, 1.1)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        draws = torch.rand(images.size(0), 4, generator=generator, device=images.device)
        angle = (draws[:, 0] * 2 - 1) * math.radians(self.degrees)
        zoom = self.scale[0] + draws[:, 1] * (self.scale[1] - self.scale[0])
        shift = (draws[:, 2:] * 2 - 1) * 2 * self.translate  # the image spans 2 in grid coordinates
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        rows = [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)]
        return _warp(images, torch.stack(rows, 1), mode="bilinear")


@dataclass(frozen=True)
class RandomCropFlip:
    """RandomCrop(size, padding) and RandomHorizontalFlip: whole-pixel shifts with zero fill, and (with
    ``flip``) a mirror image half of the time, as for CIFAR-10. ``padding=0`` only flips."""

    padding: int = 4
    flip: bool = True

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, height, width = images.shape
        device = images.device
        shifts = torch.randint(-self.padding, self.padding + 1, (n, 2), generator=generator, device=device)
        flip = torch.randint(0, 2, (n,), generator=generator, device=device).float() * 2 - 1
        flip = flip if self.flip else torch.ones_like(flip)  # drawn either way: the same shifts for the same seed
        zero, one = torch.zeros(n, device=device), torch.ones(n, device=device)
        tx, ty = shifts[:, 0] * 2 / width, shifts[:, 1] * 2 / height
        rows = [torch.stack([flip, zero, tx], 1), torch.stack([zero, one, ty], 1)]
        return _warp(images, torch.stack(rows, 1), mode="nearest")
