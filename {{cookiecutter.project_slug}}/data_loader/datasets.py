"""Datasets that torchvision does not provide."""

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from utils.errors import UsageError

SAMPLE_FILE = "mnist_sample.npz"


class MnistSample(Dataset):
    """The 5,000-digit MNIST sample shipped in ``data/``: 4,000 to train on, 1,000 held out for test.

    Items are ``(uint8 tensor of shape 1x28x28, int label)``, like torchvision's MNIST after ToImage.
    """

    def __init__(self, data_dir: str | Path, train: bool = True) -> None:
        path = Path(data_dir) / SAMPLE_FILE
        if not path.is_file():
            raise UsageError(
                f"data_loader.args.data_dir: {str(path)!r} not found; point data_dir at the folder "
                f"holding {SAMPLE_FILE} (the project ships it in data/; run from the project root)"
            )
        split = "train" if train else "test"
        with np.load(path) as arrays:
            self.images = torch.from_numpy(arrays[f"{split}_images"]).unsqueeze(1)
            self.targets = torch.from_numpy(arrays[f"{split}_labels"]).long()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.targets[index])
