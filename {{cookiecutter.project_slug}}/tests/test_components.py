"""The pieces the trainer is made of: metric tracking, data splitting, checkpoints and RNG state."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from base.base_data_loader import BaseDataLoader
from data_loader.data_loaders import MnistSampleDataLoader
from model.model import ConvNet
from utils.checkpoint import find_checkpoint, load_checkpoint, load_model_weights, save_checkpoint
from utils.metric_tracker import MetricTracker
from utils.util import ConfigError, rng_state, set_rng_state


class IndexDataset(Dataset):
    """Item i is (tensor(i.0), i), so a target tells which item a batch came from."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.tensor(float(index)), index


def make_loader(size: int = 40, **kwargs: object) -> BaseDataLoader:
    return BaseDataLoader(IndexDataset(size), train_transform=None, eval_transform=None, batch_size=4, seed=7, **kwargs)


def targets(loader: torch.utils.data.DataLoader) -> list[int]:
    return [int(t) for _, batch in loader for t in batch]


def test_metric_tracker_weights_by_sample_count() -> None:
    tracker = MetricTracker(["loss", "accuracy"], torch.device("cpu"))
    assert all(np.isnan(v) for v in tracker.result().values())
    tracker.update(1, [torch.tensor(4.0), torch.tensor(0.0)])
    tracker.update(3, [torch.tensor(2.0), torch.tensor(1.0)])
    assert tracker.count == 4
    # Sample-weighted: loss (1 * 4 + 3 * 2) / 4 = 2.5, not the mean of the batch means (3.0).
    assert tracker.result() == pytest.approx({"loss": 2.5, "accuracy": 0.75})


@pytest.mark.parametrize(("validation_split", "n_val"), [(0.25, 10), (3, 3)])
def test_split_is_disjoint_and_complete(validation_split: float, n_val: int) -> None:
    loader = make_loader(validation_split=validation_split)
    valid = loader.split_validation()
    assert valid is not None
    train_ids, val_ids = targets(loader), targets(valid)
    assert len(val_ids) == n_val and loader.n_samples == 40 - n_val
    assert not set(train_ids) & set(val_ids)
    assert sorted(train_ids + val_ids) == list(range(40))
    assert targets(make_loader(validation_split=validation_split).split_validation()) == val_ids  # seeded


@pytest.mark.parametrize("validation_split", [1.0, 40, -1])
def test_split_that_leaves_no_training_data_is_refused(validation_split: float) -> None:
    with pytest.raises(ConfigError, match=r"data_loader\.args\.validation_split"):
        make_loader(validation_split=validation_split)


def test_test_split_is_unsplit_and_in_order() -> None:
    loader = make_loader(validation_split=0.25, training=False)
    assert loader.split_validation() is None
    assert targets(loader) == list(range(40))


def test_set_epoch_fixes_the_shuffle_order() -> None:
    loader = make_loader()
    loader.set_epoch(1)
    first = targets(loader)
    torch.rand(10)  # the global RNG must not matter
    loader.set_epoch(1)
    assert targets(loader) == first
    loader.set_epoch(2)
    second = targets(loader)
    assert second != first and sorted(second) == sorted(first)


def last_epoch_order(epochs: list[int], num_workers: int) -> list[int]:
    # The loader lives only in here, so its worker processes end when this returns.
    loader = make_loader(num_workers=num_workers)
    for epoch in epochs:
        loader.set_epoch(epoch)
        order = targets(loader)
    return order


@pytest.mark.parametrize("num_workers", [0, 2])
def test_epoch_order_does_not_depend_on_earlier_epochs(num_workers: int) -> None:
    # A run resumed at epoch 2 builds a fresh loader; it must see the uninterrupted run's epoch 2.
    assert last_epoch_order([2], num_workers) == last_epoch_order([1, 2], num_workers)


def test_validation_uses_the_eval_transform(project_root: Path) -> None:
    torch.manual_seed(0)
    loader = MnistSampleDataLoader(str(project_root / "data"), validation_split=100, seed=1)
    valid = loader.split_validation()
    assert valid is not None
    assert torch.equal(valid.dataset[0][0], valid.dataset[0][0])
    # The training part does augment, so the check above can tell the two apart.
    assert not torch.equal(loader.dataset[0][0], loader.dataset[0][0])


def small_model(num_classes: int = 10) -> ConvNet:
    return ConvNet(in_channels=1, num_classes=num_classes, width=4)


def test_checkpoint_roundtrip(tmp_path: Path) -> None:
    model = small_model()
    state = {"model": model.state_dict(), "config": {"name": "x", "lr": 0.1}, "epoch": 3}
    path = tmp_path / "last.pth"
    save_checkpoint(state, path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # no temporary file left behind
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and loaded["config"] == state["config"]
    assert torch.load(path, weights_only=True).keys() == state.keys()
    fresh = small_model()
    load_model_weights(fresh, loaded["model"], path)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


class Payload:
    """An arbitrary object: unpickling it would run code, so weights_only must refuse it."""


def test_checkpoint_with_pickled_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "config": {}, "x": Payload()}, path)
    with pytest.raises(ConfigError, match="cannot be loaded") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), (b"not a checkpoint", "cannot be loaded"), ({"a": 1}, "not written by this")],
)
def test_load_checkpoint_refuses_other_files(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "c.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(ConfigError, match=message) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_find_checkpoint_prefers_best_then_newest_run(tmp_path: Path) -> None:
    for run in ("20240101-000000", "20240102-000000"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "last.pth").touch()
    (tmp_path / "20240102-000000" / "best.pth").touch()
    assert find_checkpoint(tmp_path) == tmp_path / "20240102-000000" / "best.pth"
    assert find_checkpoint(tmp_path / "20240101-000000") == tmp_path / "20240101-000000" / "last.pth"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no best.pth or last.pth"):
        find_checkpoint(tmp_path / "empty")


def test_load_model_weights_names_mismatched_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"head\.2\.weight \(3, 16\) vs \(10, 16\)") as err:
        load_model_weights(small_model(10), small_model(3).state_dict(), tmp_path / "c.pth")
    assert "head.2.bias" in str(err.value) and str(tmp_path / "c.pth") in str(err.value)


def draws() -> tuple[float, float, float, list[float]]:
    return random.random(), float(np.random.rand()), float(np.random.randn()), torch.rand(3).tolist()


def test_rng_state_roundtrip_through_a_checkpoint(tmp_path: Path) -> None:
    np.random.randn()  # leaves a cached Gaussian, which the state must carry too
    save_checkpoint({"model": {}, "config": {}, "rng": rng_state()}, tmp_path / "c.pth")
    expected = draws()
    draws()
    set_rng_state(load_checkpoint(tmp_path / "c.pth")["rng"])
    assert draws() == expected
