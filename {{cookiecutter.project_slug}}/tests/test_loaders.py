"""BaseDataLoader and its two data paths: splitting, epoch order, augmentation, resuming part way."""

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from base.base_data_loader import BaseDataLoader, ImageTensors
from base.base_model import BaseModel
from base.image_data_loader import ImageDataLoader
from base.loaders import ResidentLoader, StreamingLoader
from tests.hostile import _namespace, only_run, run_test, run_train, write_config
from tests.tiny import TINY, tiny_config
from tests.tiny.data_loaders import ItemDataset, TinyDatasetLoader, TinyTensorLoader, striped_images
from utils.errors import UsageError

CPU = torch.device("cpu")
Batches = list[tuple[torch.Tensor, torch.Tensor]]


class NumberedImages(ImageDataLoader):
    """Sample i is a 1x2x2 image filled with i and labelled i, so a batch tells which samples it holds.
    ``as_dataset`` hands the split over as a Dataset (the DataLoader path) instead of as tensors."""

    def __init__(self, n_samples: int = 40, as_dataset: bool = False, **loader_args: Any) -> None:
        super().__init__(**{"batch_size": 4, "seed": 7, **loader_args})
        self.n_samples, self.as_dataset = n_samples, as_dataset

    def load_split(self, split: str) -> Any:
        labels = torch.arange(self.n_samples)
        tensors = ImageTensors(labels.to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous(), labels)
        return ItemDataset(tensors) if self.as_dataset else tensors


def batches(loader: Any, epoch: int = 1, start_batch: int = 0) -> Batches:
    loader.set_epoch(epoch, start_batch)
    return list(loader)


def labels(loader: Any, epoch: int = 1) -> list[int]:
    return [int(label) for _, targets in batches(loader, epoch) for label in targets]


def assert_same_batches(first: Batches, second: Batches) -> None:
    assert len(first) == len(second)
    for (images, targets), (other_images, other_targets) in zip(first, second, strict=True):
        assert torch.equal(targets, other_targets)
        assert torch.equal(images, other_images)


@pytest.mark.parametrize("as_dataset", [False, True], ids=["tensors", "dataset"])
@pytest.mark.parametrize(("validation_split", "n_valid"), [(0.25, 10), (3, 3)], ids=["fraction", "count"])
def test_split_is_disjoint_complete_and_seeded(as_dataset: bool, validation_split: float, n_valid: int) -> None:
    train, valid = NumberedImages(as_dataset=as_dataset, validation_split=validation_split).train_loaders(CPU)
    assert valid is not None
    train_ids, valid_ids = labels(train), labels(valid)
    assert (train.n_samples, valid.n_samples) == (40 - n_valid, n_valid)
    assert not set(train_ids) & set(valid_ids)
    assert sorted(train_ids + valid_ids) == list(range(40))
    _, same_seed = NumberedImages(validation_split=validation_split).train_loaders(CPU)
    _, other_seed = NumberedImages(validation_split=validation_split, seed=8).train_loaders(CPU)
    assert labels(same_seed) == valid_ids
    assert labels(other_seed) != valid_ids


def test_no_validation_split_means_no_validation_loader() -> None:
    train, valid = NumberedImages().train_loaders(CPU)
    assert valid is None and train.n_samples == 40


@pytest.mark.parametrize("validation_split", [1.0, 1.5, 40, 41, -1])
def test_split_that_leaves_no_training_data_is_refused(validation_split: float) -> None:
    with pytest.raises(UsageError, match=r"data_loader\.args\.validation_split"):
        NumberedImages(validation_split=validation_split).train_loaders(CPU)


@pytest.mark.parametrize("as_dataset", [False, True], ids=["tensors", "dataset"])
def test_test_split_is_unsplit_and_in_order(as_dataset: bool) -> None:
    loader = NumberedImages(as_dataset=as_dataset, validation_split=0.25).test_loader(CPU)
    assert labels(loader) == list(range(40))


@pytest.mark.parametrize("as_dataset", [False, True], ids=["tensors", "dataset"])
def test_the_seed_and_the_epoch_fix_the_order(as_dataset: bool) -> None:
    train, _ = NumberedImages(as_dataset=as_dataset).train_loaders(CPU)
    first = labels(train, epoch=1)
    torch.rand(10)  # the global RNG must not matter
    assert labels(train, epoch=1) == first
    second = labels(train, epoch=2)
    assert second != first and sorted(second) == sorted(first)
    other_seed, _ = NumberedImages(as_dataset=as_dataset, seed=8).train_loaders(CPU)
    assert labels(other_seed, epoch=1) != first


def last_epoch_order(epochs: list[int], **loader_args: Any) -> list[int]:
    # The loader lives only in here, so its worker processes end when this returns.
    train, _ = NumberedImages(**loader_args).train_loaders(CPU)
    return [labels(train, epoch) for epoch in epochs][-1]


@pytest.mark.parametrize(
    "loader_args",
    [{}, {"as_dataset": True}, {"as_dataset": True, "num_workers": 2}],
    ids=["resident", "dataloader", "dataloader-2-workers"],
)
def test_epoch_order_does_not_depend_on_earlier_epochs(loader_args: dict[str, Any]) -> None:
    # A run resumed at epoch 2 builds a fresh loader; it must see the uninterrupted run's epoch 2.
    assert last_epoch_order([2], **loader_args) == last_epoch_order([1, 2], **loader_args)


def test_training_is_augmented_but_validation_and_test_are_not() -> None:
    augmented, valid = TinyTensorLoader(validation_split=0.25, batch_size=60).train_loaders(CPU)
    plain, plain_valid = TinyTensorLoader(validation_split=0.25, batch_size=60, augment=False).train_loaders(CPU)
    assert valid is not None and plain_valid is not None
    first, unaugmented = batches(augmented), batches(plain)
    assert torch.equal(first[0][1], unaugmented[0][1])  # the same samples...
    assert not torch.equal(first[0][0], unaugmented[0][0])  # ... augmented
    assert_same_batches(batches(valid, epoch=1), batches(valid, epoch=2))
    assert_same_batches(batches(valid), batches(plain_valid))
    # Evaluation images are the stored ones, only scaled and normalised.
    test_images, _ = batches(TinyTensorLoader(batch_size=60).test_loader(CPU))[0]
    expected = (striped_images(60, seed=1).inputs.float() / 255 - 0.3) / 0.35
    assert torch.allclose(test_images, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("loader_class", "args"),
    [(TinyDatasetLoader, {}), (TinyTensorLoader, {"device_resident": False})],
    ids=["dataset", "tensors-not-resident"],
)
def test_dataloader_path_gives_the_resident_paths_batches(loader_class: type, args: dict[str, Any]) -> None:
    common = {"batch_size": 32, "validation_split": 0.25, "seed": 3}
    resident_train, resident_valid = TinyTensorLoader(**common).train_loaders(CPU)
    train, valid = loader_class(**common, **args).train_loaders(CPU)
    assert isinstance(resident_train, ResidentLoader) and isinstance(train, StreamingLoader)
    assert len(train) == len(resident_train) and train.n_samples == resident_train.n_samples
    for epoch in (1, 2):
        assert_same_batches(batches(train, epoch), batches(resident_train, epoch))
        assert_same_batches(batches(valid, epoch), batches(resident_valid, epoch))
    test = loader_class(**common, **args).test_loader(CPU)
    assert_same_batches(batches(test), batches(TinyTensorLoader(**common).test_loader(CPU)))


@pytest.mark.parametrize("loader_class", [TinyTensorLoader, TinyDatasetLoader], ids=["resident", "dataloader"])
def test_skipping_batches_leaves_the_later_ones_unchanged(loader_class: type) -> None:
    train, _ = loader_class(batch_size=32).train_loaders(CPU)
    full = batches(train, epoch=3)
    resumed = batches(train, epoch=3, start_batch=5)
    assert len(resumed) == len(full) - 5 == len(train)
    assert_same_batches(full[5:], resumed)


def test_a_dataset_cannot_be_made_device_resident() -> None:
    with pytest.raises(UsageError, match=r"data_loader\.args\.device_resident: TinyDatasetLoader"):
        TinyDatasetLoader(device_resident=True).train_loaders(CPU)


def test_unknown_loader_argument_is_refused() -> None:
    with pytest.raises(UsageError, match=r"data_loader\.args\.batch_sise: unknown key; did you mean 'batch_size'"):
        TinyTensorLoader(batch_sise=8)


def test_a_split_with_more_images_than_labels_is_one_line() -> None:
    """A label file cut short would otherwise drop the images past its end without a word."""
    with pytest.raises(UsageError, match=r"different numbers of samples \(inputs 3; targets 2\)"):
        ImageTensors(torch.zeros(3, 1, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))


class FeaturesLoader(BaseDataLoader):
    """Not images: 8 float features per sample, 3 classes, which a BaseDataLoader gives the model as they are."""

    def load_split(self, split: str) -> ImageTensors:
        generator = torch.Generator().manual_seed(0 if split == "train" else 1)
        targets = torch.randint(0, 3, (240,), generator=generator)
        return ImageTensors(torch.randn(240, 8, generator=generator) + 3 * targets[:, None].float(), targets)


class FeaturesNet(BaseModel):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


@pytest.mark.parametrize("resident", [True, False], ids=["resident", "dataloader"])
def test_data_that_is_not_images_trains_and_tests_as_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], resident: bool
) -> None:
    registry = dataclasses.replace(TINY, models=_namespace(FeaturesNet), data_loaders=_namespace(FeaturesLoader))
    config = tiny_config(tmp_path / "saved", epochs=10)
    config["arch"] = {"type": "FeaturesNet", "args": {"num_classes": 3}}
    config["data_loader"] = {"type": "FeaturesLoader", "args": {"batch_size": 32, "validation_split": 0.2}}
    config["data_loader"]["args"]["device_resident"] = resident
    assert run_train(capsys, "-c", write_config(tmp_path / "config.json", config), modules=registry).code == 0
    run = only_run(tmp_path / "saved")
    assert run_test(capsys, "-r", run, modules=registry).code == 0
    assert json.loads((run / "best.test.json").read_text())["test_accuracy"] > 0.9


@pytest.mark.parametrize("as_dataset", [False, True], ids=["resident", "dataloader"])
@pytest.mark.parametrize("validation_split", [0, 8])
def test_shuffle_false_trains_in_the_split_s_own_order(as_dataset: bool, validation_split: int) -> None:
    loader = NumberedImages(as_dataset=as_dataset, shuffle=False, validation_split=validation_split)
    train, valid = loader.train_loaders(CPU)
    held_out = sorted(int(label) for _, labels in batches(valid) for label in labels) if valid else []
    expected = [label for label in range(40) if label not in held_out]
    for epoch in (1, 2):
        assert [int(label) for _, labels in batches(train, epoch) for label in labels] == expected
    assert len(held_out) == validation_split
    assert not held_out or held_out != list(range(validation_split)), "the validation samples are still drawn at random"
