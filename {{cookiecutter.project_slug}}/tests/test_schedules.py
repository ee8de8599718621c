"""Learning-rate schedules stepped per optimizer step, with their length filled in from the run, and
a linear warmup; resumed part way through an epoch, they continue exactly."""

import math
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

import train
from parse_config import SchedulerSpec
from tests.hostile import EXTRA, assert_same_weights, interrupt_on_forward, only_run, small_config, write_config
from trainer.schedule import build_schedule
from utils.checkpoint import load_checkpoint

EPOCHS, STEPS_PER_EPOCH = 3, 2  # small_config: 64 training samples in batches of 32
SCHEDULES = {
    "onecycle-with-only-max_lr": {"type": "OneCycleLR", "args": {"max_lr": 0.05}},
    "warmup-then-cosine": {"type": "CosineAnnealingLR", "args": {}, "warmup_steps": 2},
    "onecycle-with-no-args": {"type": "OneCycleLR", "args": {}},  # the MNIST sample's default
}


def config_with(schedule: dict[str, Any], save_dir: Path) -> dict[str, Any]:
    config = small_config(save_dir, epochs=EPOCHS)
    config["arch"]["type"] = "InterruptingNet"
    config["lr_scheduler"] = schedule
    return config


def train_straight(schedule: dict[str, Any], folder: Path) -> dict[str, Any]:
    path = write_config(folder / "config.json", config_with(schedule, folder / "saved"))
    assert train.main(["-c", str(path)], modules=EXTRA) == 0
    return load_checkpoint(only_run(folder / "saved") / "last.pth", resume=True)


@pytest.mark.parametrize("schedule", SCHEDULES.values(), ids=list(SCHEDULES))
def test_per_step_schedule_spans_the_run(schedule: dict[str, Any], tmp_path: Path) -> None:
    last = train_straight(schedule, tmp_path)
    state = last["lr_scheduler"]
    steps = EPOCHS * STEPS_PER_EPOCH
    assert state["last_epoch"] == steps, "stepped once per optimizer step"
    if schedule["type"] == "OneCycleLR":
        assert state["total_steps"] == steps, "total_steps filled in from the run's length"
    else:
        assert state["_schedulers"][1]["T_max"] == steps - 2, "T_max: the steps after the warmup"
        assert state["_milestones"] == [2]
        assert last["optimizer"]["param_groups"][0]["lr"] < 1e-9, "the cosine ends at zero with the run"


def test_a_run_of_one_optimizer_step_keeps_its_per_step_schedule(tmp_path: Path) -> None:
    # One epoch of one batch: the check before the run steps the schedule only as often as the run will.
    config = small_config(tmp_path / "saved", epochs=1)
    config["lr_scheduler"] = SCHEDULES["onecycle-with-no-args"]
    config["data_loader"]["args"]["batch_size"] = 64  # the whole training split
    path = write_config(tmp_path / "config.json", config)
    assert train.main(["-c", str(path)], modules=EXTRA) == 0
    assert load_checkpoint(only_run(tmp_path / "saved") / "last.pth", resume=True)["lr_scheduler"]["total_steps"] == 1


@pytest.mark.parametrize(("args", "peak"), [({}, 0.2), ({"max_lr": 0.05}, 0.05)])
def test_onecycle_peaks_at_the_optimizer_rate_unless_told(args: dict[str, Any], peak: float) -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.2)  # what --lr sets
    scheduler = build_schedule(SchedulerSpec("OneCycleLR", args, None, 0), optimizer, epochs=2, steps_per_epoch=10)
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert max(rates) == pytest.approx(peak) and rates[0] == pytest.approx(peak / 25), "starts at max_lr / 25"


def test_warmup_rises_linearly_to_the_base_rate() -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = build_schedule(SchedulerSpec("CosineAnnealingLR", {}, None, 4), optimizer, epochs=2, steps_per_epoch=5)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(10):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1]), "linear warmup over 4 steps"
    assert rates[5:] == sorted(rates[5:], reverse=True) and math.isclose(rates[-1], 0, abs_tol=1e-9), "then cosine"


@pytest.mark.parametrize("schedule", SCHEDULES.values(), ids=list(SCHEDULES))
def test_a_run_stopped_mid_epoch_resumes_the_schedule_exactly(schedule: dict[str, Any], tmp_path: Path) -> None:
    straight = train_straight(schedule, tmp_path / "straight")
    folder = tmp_path / "stopped"
    path = write_config(folder / "config.json", config_with(schedule, folder / "saved"))
    with interrupt_on_forward(STEPS_PER_EPOCH + 1):  # the first step of epoch 2
        assert train.main(["-c", str(path)], modules=EXTRA) == 128 + signal.SIGINT
    run_dir = only_run(folder / "saved")
    assert load_checkpoint(run_dir / "last.pth", resume=True)["mid_epoch"]["step"] == 1
    assert train.main(["-c", str(path), "--resume", "auto"], modules=EXTRA) == 0
    resumed = load_checkpoint(run_dir / "last.pth", resume=True)
    assert resumed["lr_scheduler"] == straight["lr_scheduler"]
    assert resumed["optimizer"]["param_groups"] == straight["optimizer"]["param_groups"]
    assert_same_weights(resumed["model"], straight["model"], "the resumed run's final weights")
