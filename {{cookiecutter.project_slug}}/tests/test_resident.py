"""The device-resident data path: reproducible batches, resumable mid-epoch, no augmentation in evaluation."""

from pathlib import Path

import pytest
import torch

from base.base_data_loader import BaseDataLoader
from data_loader.data_loaders import MnistSampleDataLoader
from utils.util import ConfigError

DATA_DIR = str(Path(__file__).resolve().parents[1] / "data")
CPU = torch.device("cpu")


def resident_loaders(**args: object) -> tuple:
    loader = MnistSampleDataLoader(DATA_DIR, batch_size=256, validation_split=400, device_resident=True, **args)
    return loader.loaders_for(CPU)


def batches(loader: object, epoch: int, start_batch: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(epoch, start_batch)  # type: ignore[attr-defined]
    return list(loader)  # type: ignore[call-overload]


def test_resident_split_matches_the_dataloader_split() -> None:
    train, valid = resident_loaders()
    assert (train.n_samples, valid.n_samples) == (3600, 400)
    plain = MnistSampleDataLoader(DATA_DIR, batch_size=256, validation_split=400, device_resident=False)
    same, same_valid = plain.loaders_for(CPU)
    assert same is plain and same_valid is not None and len(same_valid.dataset) == 400


def test_epoch_batches_are_reproducible_and_change_between_epochs() -> None:
    train, _ = resident_loaders()
    first, again, other = batches(train, 1), batches(train, 1), batches(train, 2)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0][1], other[0][1])


def test_skipping_batches_leaves_the_later_ones_unchanged() -> None:
    train, _ = resident_loaders()
    full, resumed = batches(train, 3), batches(train, 3, start_batch=5)
    assert len(resumed) == len(full) - 5 == len(train)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(full[5:], resumed, strict=True))


def test_training_batches_are_augmented_but_validation_is_not() -> None:
    augmented, valid = resident_loaders()
    plain, _ = resident_loaders(augment=False)
    assert not torch.equal(batches(augmented, 1)[0][0], batches(plain, 1)[0][0])
    assert torch.equal(batches(valid, 1)[0][0], batches(valid, 2)[0][0])
    # Evaluation images are the DataLoader path's, normalised the same way.
    dataloader_valid = MnistSampleDataLoader(DATA_DIR, batch_size=256, validation_split=400).split_validation()
    assert torch.allclose(next(iter(dataloader_valid))[0], batches(valid, 1)[0][0], atol=1e-6)


def test_a_loader_without_tensors_cannot_be_made_resident() -> None:
    dataset = torch.utils.data.TensorDataset(torch.zeros(8, 1, 4, 4), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ConfigError, match="device_resident: TensorFolder"):
        type("TensorFolder", (BaseDataLoader,), {})(
            dataset, train_transform=None, eval_transform=None, device_resident=True
        )
