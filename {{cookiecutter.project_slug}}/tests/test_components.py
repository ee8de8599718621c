"""The pieces the trainer is made of: metric tracking, the non-finite loss watch, checkpoint files and RNG state."""

import errno
import math
import os
import random
import signal
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from parse_config import Config
from tests.tiny import metrics as tiny_metrics
from tests.tiny import tiny_config
from tests.tiny.models import NormHeadNet, TinyConvNet
from trainer.build import build_optimizer
from trainer.checks import check_batch_norm_batches, check_model_fits
from trainer.loss_watch import LossWatch
from utils import signals
from utils.checkpoint import find_checkpoint, load_checkpoint, load_model_weights, save_checkpoint
from utils.dist import launch_command
from utils.errors import UsageError, usage_message
from utils.metric_tracker import MetricTracker, batch_measures
from utils.util import rng_state, set_rng_state, storage_error

CPU = torch.device("cpu")


def test_metric_tracker_weights_by_sample_count() -> None:
    tracker = MetricTracker(["loss", "accuracy"], CPU)
    assert all(math.isnan(value) for value in tracker.result().values())
    tracker.update(1, torch.tensor([4.0, 0.0]))
    tracker.update(3, torch.tensor([2.0, 1.0]))
    # Sample-weighted: loss (1 * 4 + 3 * 2) / 4 = 2.5, not the mean of the batch means (3.0).
    assert tracker.result() == pytest.approx({"loss": 2.5, "accuracy": 0.75})


def test_metric_tracker_continues_from_its_state() -> None:
    # An epoch interrupted part way resumes with the totals it had.
    tracker = MetricTracker(["loss"], CPU)
    tracker.update(2, torch.tensor([1.0]))
    resumed = MetricTracker(["loss"], CPU)
    resumed.load_state_dict(tracker.state_dict())
    resumed.update(2, torch.tensor([3.0]))
    assert resumed.result() == pytest.approx({"loss": 2.0})


def test_metric_tracker_with_the_loss_alone_keeps_float64_sums() -> None:
    tracker = MetricTracker(["loss"], CPU)
    for _ in range(3):
        tracker.update(10**6, torch.tensor([0.1], dtype=torch.float32))
    assert tracker.result()["loss"] == pytest.approx(float(torch.tensor(0.1, dtype=torch.float32)), rel=1e-12)


def test_batch_measures_stack_the_loss_and_each_metric_in_order() -> None:
    generator = torch.Generator().manual_seed(0)
    output, targets = torch.randn(64, 10, generator=generator), torch.randint(0, 10, (64,), generator=generator)
    loss = torch.nn.functional.cross_entropy(output, targets)
    accuracy = (output.argmax(dim=1) == targets).float().mean()
    measures = batch_measures({"accuracy": tiny_metrics.accuracy, "top_10": lambda output, targets: loss.new_ones(())})
    assert torch.equal(measures(loss, output, targets), torch.stack([loss, accuracy, loss.new_ones(())]))
    alone = batch_measures({})(loss, output, targets)
    assert alone.shape == (1,) and alone.data_ptr() == loss.data_ptr()  # no copy for the loss alone


@pytest.mark.parametrize(
    ("first_step", "losses", "check_at", "expected"),
    [
        (1, {1: 1.0, 2: 2.0, 3: 0.5}, [3], [None]),
        (1, {1: 1.0, 2: math.nan, 3: math.inf}, [3], [2]),
        (1, {1: 1.0, 2: 1.0, 3: -math.inf}, [2, 3], [None, 3]),  # found in the window after the first check
        (1, {1: math.nan, 3: 1.0}, [1, 3], [1, None]),  # the next window starts clean
        (41, {41: 1.0, 43: math.nan}, [43], [43]),  # an epoch resumed after step 40; step 42 skipped
        (1, {}, [1, 1], [None, None]),  # nothing added, checked twice at the same step
    ],
)
def test_loss_watch_names_the_first_bad_step(
    first_step: int, losses: dict[int, float], check_at: list[int], expected: list[int | None]
) -> None:
    watch = LossWatch(steps_between_checks=3, first_step=first_step, device=CPU)
    found = []
    for check in check_at:
        for step in [s for s in losses if watch._first_step <= s <= check]:
            watch.add(step, torch.tensor(losses[step]))
        found.append(watch.first_bad_step(check))
    assert found == expected


def test_checkpoint_roundtrip(tmp_path: Path) -> None:
    model = TinyConvNet()
    config = {"arch": {"type": "TinyConvNet"}, "data_loader": {"type": "TinyTensorLoader"}}
    state = {"arch": "TinyConvNet", "model": model.state_dict(), "config": config, "epoch": 3}
    path = tmp_path / "last.pth"
    save_checkpoint(state, path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # no temporary file left behind
    assert len(torch.load(path, weights_only=True)["digest"]) == 64, "a SHA-256 digest travels with the state"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask, "readable by the team, as the umask says"
    loaded = load_checkpoint(path)
    assert loaded.keys() == state.keys()
    assert loaded["epoch"] == 3 and loaded["config"] == state["config"]
    fresh = TinyConvNet()
    load_model_weights(fresh, loaded["model"], path)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


class Payload:
    """An arbitrary object: unpickling it would run code, so weights_only must refuse it."""


def test_checkpoint_with_pickled_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "config": {}, "x": Payload()}, path)
    with pytest.raises(UsageError, match="cannot be loaded") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"not a checkpoint", "cannot be loaded: it is not a file written by torch.save; pass a .pth file"),
        ("npz", "cannot be loaded: it is not a file written by torch.save; pass a .pth file"),  # a zip too
        ({"a": 1}, "not written by this project's trainer"),
        ([1, 2], "not written by this project's trainer"),
    ],
    ids=["missing", "not-torch", "numpy-npz", "other-dict", "not-a-dict"],
)
def test_load_checkpoint_refuses_other_files(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "c.pth"
    if content == "npz":
        with path.open("wb") as handle:
            np.savez(handle, images=np.zeros((2, 3), dtype=np.uint8))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(UsageError, match=message) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def make_runs(experiment: Path, files: dict[str, list[str]]) -> None:
    for run, names in files.items():
        (experiment / run).mkdir(parents=True)
        for name in names:
            (experiment / run / name).touch()


def test_find_checkpoint_prefers_best_then_newest_run(tmp_path: Path) -> None:
    make_runs(tmp_path, {"20240101-000000": ["last.pth"], "20240102-000000": ["last.pth", "best.pth"]})
    assert find_checkpoint(tmp_path) == tmp_path / "20240102-000000" / "best.pth"
    assert find_checkpoint(tmp_path / "20240101-000000") == tmp_path / "20240101-000000" / "last.pth"
    last_first = ("last.pth", "best.pth")
    assert find_checkpoint(tmp_path, prefer=last_first) == tmp_path / "20240102-000000" / "last.pth"
    assert find_checkpoint(tmp_path / "x.pth") == tmp_path / "x.pth"  # a file is taken as it is
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no best.pth or last.pth"):
        find_checkpoint(tmp_path / "empty")


def test_find_checkpoint_orders_runs_of_the_same_second_by_number(tmp_path: Path) -> None:
    runs = ["20240101-000000", "20240101-000000-2", "20240101-000000-9", "20240101-000000-10"]
    make_runs(tmp_path, {run: ["last.pth"] for run in runs})
    assert find_checkpoint(tmp_path) == tmp_path / "20240101-000000-10" / "last.pth"


def test_load_model_weights_names_mismatched_keys(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"head\.1\.weight \(3, 8\) vs \(10, 8\)") as err:
        load_model_weights(TinyConvNet(num_classes=10), TinyConvNet(num_classes=3).state_dict(), tmp_path / "c.pth")
    assert "head.1.bias" in str(err.value) and str(tmp_path / "c.pth") in str(err.value)
    renamed = {f"module.{key}": value for key, value in TinyConvNet().state_dict().items()}
    with pytest.raises(UsageError, match=r"missing: features\.0\.weight.*unexpected: module\.features"):
        load_model_weights(TinyConvNet(), renamed, tmp_path / "c.pth")


def draws() -> tuple[float, float, float, list[float]]:
    return random.random(), float(np.random.rand()), float(np.random.randn()), torch.rand(3).tolist()


def test_rng_state_roundtrip_through_a_checkpoint(tmp_path: Path) -> None:
    np.random.randn()  # leaves a cached Gaussian, which the state must carry too
    save_checkpoint({"model": {}, "config": {}, "rng": rng_state()}, tmp_path / "c.pth")
    expected = draws()
    draws()
    set_rng_state(torch.load(tmp_path / "c.pth", weights_only=True)["rng"])
    assert draws() == expected


@pytest.mark.parametrize(
    ("number", "fix"),
    [
        (errno.ENOSPC, "; free some space"),
        (errno.EACCES, "; fix the folder's permissions"),
        (errno.EROFS, "; write to another folder"),
        (errno.ENOENT, "; create the folder or write to another one"),
        (errno.EIO, "; free some space or fix the folder's permissions"),
    ],
)
def test_a_failed_write_names_the_fix_for_its_cause(tmp_path: Path, number: int, fix: str) -> None:
    target = tmp_path / "out" / "last.pth"
    message = str(storage_error(target, OSError(number, os.strerror(number))))
    assert message == f"cannot write {str(target)!r}: {os.strerror(number)}{fix}"


class RefusingDataset(torch.utils.data.Dataset):
    """Every item is refused, as an unreadable image file is by the image-folder loader."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        raise UsageError(f"image file 'broken-{index}.png' cannot be read (truncated); remove or replace it")


def test_a_refusal_raised_in_a_data_loader_worker_is_still_one_line() -> None:
    with pytest.raises(UsageError) as err:
        next(iter(torch.utils.data.DataLoader(RefusingDataset(), num_workers=1)))
    assert "Original Traceback" in str(err.value), "the DataLoader wraps it in the worker's traceback"
    assert usage_message(err.value) == "image file 'broken-0.png' cannot be read (truncated); remove or replace it"
    assert usage_message(UsageError("raised  in\nthis process")) == "raised in this process"


@pytest.mark.parametrize(
    ("env", "command"),
    [
        ({}, "python train.py -r last.pth"),
        ({"LOCAL_RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}, "torchrun --nproc_per_node=2 train.py -r"),
        ({"LOCAL_RANK": "0", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}, "torchrun --nnodes=2 --nproc_per_node=4 <"),
    ],
    ids=["plain", "one-node", "two-nodes"],
)
def test_the_resume_command_is_launched_as_the_run_was(
    env: dict[str, str], command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert launch_command("train.py -r last.pth").startswith(command)


@pytest.mark.parametrize(("targets", "refused"), [(torch.linspace(1, 4, 8), False), (torch.arange(8) % 4, True)])
def test_only_integer_labels_are_checked_against_the_outputs_width(targets: torch.Tensor, refused: bool) -> None:
    regressor = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 1))  # one output: a regression

    def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(output.reshape(-1), target.float())

    if refused:
        with pytest.raises(UsageError, match="arch.args.num_classes: Sequential outputs 1 classes"):
            check_model_fits(regressor, mse, {}, torch.rand(8, 1, 2, 2), targets)
    else:
        assert check_model_fits(regressor, mse, {}, torch.rand(8, 1, 2, 2), targets).shape == (8, 1)


@pytest.mark.parametrize(
    ("model", "batch_size", "refused"),
    [(NormHeadNet, 63, True), (NormHeadNet, 32, False), (TinyConvNet, 63, False)],
    ids=["one-value-per-channel", "no-batch-of-one", "8x8-maps-per-channel"],
)
def test_batch_norm_is_refused_a_last_batch_of_one_only_where_it_fails(
    model: type, batch_size: int, refused: bool
) -> None:
    network = model()
    network.train()
    try:  # what the last batch of 64 samples in batches of batch_size does in training
        network(torch.rand(64 % batch_size or batch_size, 1, 8, 8))
        fails = False
    except ValueError:
        fails = True
    assert fails is refused
    if refused:
        with pytest.raises(UsageError, match=f"batch_size: {batch_size} leaves 1 of the 64 training samples"):
            check_batch_norm_batches(network, partial(network, torch.rand(1, 1, 8, 8)), 64, batch_size)
    else:
        check_batch_norm_batches(network, partial(network, torch.rand(1, 1, 8, 8)), 64, batch_size)
    assert network.training, "the model is left in training mode"


@pytest.mark.parametrize(("optimizer", "fused", "built"), [("RMSprop", None, True), ("Adam", None, True),
                                                          ("RMSprop", True, False)])  # fmt: skip
def test_fused_null_is_the_default_for_optimizers_without_a_fused_kernel(
    tmp_path: Path, optimizer: str, fused: bool | None, built: bool
) -> None:
    config = tiny_config(tmp_path)
    config["optimizer"] = {"type": optimizer, "args": {"lr": 0.01, "fused": fused}}
    model = TinyConvNet()
    if built:
        assert type(build_optimizer(Config.from_dict(config), model)).__name__ == optimizer
    else:
        with pytest.raises(UsageError, match="optimizer.args.fused: unknown key"):
            build_optimizer(Config.from_dict(config), model)


@pytest.mark.parametrize(
    ("seconds_per_step", "votes_at"),
    [(2.0, [1, 3, 5, 7, 9]), (12.0, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), (0.001, [1])],
)
def test_processes_vote_to_stop_every_few_seconds_of_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seconds_per_step: float, votes_at: list[int]
) -> None:
    """torchrun SIGKILLs its processes 30 s after passing a SIGTERM on: with votes only at log steps (every
    20), steps of 2 s left the signal unsaved. Now they vote every VOTE_SECONDS (5 s) of steps, and a
    signal stops them at the next vote."""
    now, steps_done, votes = [0.0], [0], []  # a fake clock, the steps so far, the step of each vote
    monkeypatch.setattr(signals.time, "perf_counter", lambda: now[0])
    real_all_reduce = signals.all_reduce
    monkeypatch.setattr(signals, "all_reduce", lambda *args: votes.append(steps_done[0]) or real_all_reduce(*args))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        stop = signals.GracefulStop()
        for _ in range(10):
            steps_done[0] += 1
            now[0] += seconds_per_step
            assert not stop.agreed(must_vote=False, device=CPU)
        assert votes == votes_at
        stop.signal_number = signal.SIGTERM  # arrives between votes: acted on at the next one
        steps_done[0] += 1
        assert stop.agreed(must_vote=True, device=CPU) and votes[-1] == 11
    finally:
        dist.destroy_process_group()
