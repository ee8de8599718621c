"""Write MNIST-shaped data as torchvision's four uncompressed IDX files, tiled from the shipped sample.

python .dev/write_mnist_idx.py SAMPLE.npz ROOT N_TRAIN   # ROOT/MNIST/raw/; the test split gets N_TRAIN // 6
"""

import sys
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: two zero bytes, the type (8 = unsigned byte), the number of dimensions, then each size
    as a big-endian int32."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def main(sample_path: str, root: str, n_train: str) -> None:
    sample = np.load(sample_path)
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, prefix, count in (("train", "train", int(n_train)), ("test", "t10k", int(n_train) // 6)):
        repeats = -(-count // len(sample[f"{split}_labels"]))
        write_idx(raw / f"{prefix}-images-idx3-ubyte", np.tile(sample[f"{split}_images"], (repeats, 1, 1))[:count])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.tile(sample[f"{split}_labels"], repeats)[:count])
    print(f"wrote {n_train} training images to {raw}")


if __name__ == "__main__":
    main(*sys.argv[1:])
