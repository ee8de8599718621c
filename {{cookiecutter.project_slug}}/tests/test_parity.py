"""The Trainer computes what a hand-written loop computes: same seed, same losses (CPU), with no
more tensor operations per step; and the benchmark that compares their speed runs."""

import json
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.bench_trainer import LIMIT_OVERRIDES, benchmark_config, hand_written_epochs, main, trainer_epochs
from tests.tiny import TINY

CPU = torch.device("cpu")


def test_trainer_losses_equal_the_hand_written_loop(config_file: Path) -> None:
    config = benchmark_config(config_file, [])
    hand = [epoch.loss for epoch in islice(hand_written_epochs(config, TINY, CPU), 2)]
    trainer = [epoch.loss for epoch in islice(trainer_epochs(config, TINY, CPU), 2)]
    assert trainer == pytest.approx(hand, abs=1e-6, rel=0)
    assert hand[1] < hand[0]  # it trained, so the comparison means something


class OpCounter(TorchDispatchMode):
    """Counts the tensor operations that do work (views excluded): on a GPU each is a kernel launch."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.count += not func.is_view
        return func(*args, **(kwargs or {}))


def ops_in_second_epoch(epochs_of: Any, config_file: Path, n_train: int) -> int:
    overrides = [f"data_loader.args.n_train={n_train}", "trainer.log_step=1000"]  # no progress checks mid-epoch
    epochs = epochs_of(benchmark_config(config_file, overrides), TINY, CPU)
    next(epochs)  # the first epoch also creates the optimizer's state
    with OpCounter() as counter:
        next(epochs)
    return counter.count


def test_the_trainer_launches_no_more_operations_per_step_than_the_hand_written_loop(config_file: Path) -> None:
    # On a GPU, a small model's step is bound by kernel launches: each extra one showed as ~1% per
    # epoch on an H100. The difference between 20 and 10 steps (batch 32) cancels per-epoch work.
    per_step = {}
    for name, epochs_of in (("hand-written", hand_written_epochs), ("Trainer", trainer_epochs)):
        ten, twenty = (ops_in_second_epoch(epochs_of, config_file, n_train) for n_train in (320, 640))
        per_step[name] = (twenty - ten) / 10
    assert per_step["Trainer"] <= per_step["hand-written"], per_step


def test_benchmark_prints_its_table(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(config_file), "--epochs", "2"], modules=TINY) == 0
    title, header, hand, trainer, ratio = capsys.readouterr().out.splitlines()
    assert title.startswith("TinyConvNet, 240 samples, batch 32, 1 warm-up + 2 timed epochs per path")
    assert header.split()[:3] == ["path", "warm-up", "s"]
    assert hand.startswith("hand-written") and trainer.startswith("Trainer")
    for row in (hand, trainer):
        warmup_seconds, epoch_seconds, samples_per_second, peak_mib = map(float, row.split()[1:])
        assert min(warmup_seconds, epoch_seconds, samples_per_second) > 0
        assert peak_mib >= 0  # 0 where the process's peak memory cannot be read (outside Linux)
    assert ratio.startswith("ratio Trainer/hand-written: time ") and "median of 2 paired epochs" in ratio


def test_benchmark_adds_the_limit_and_the_trainer_with_metrics(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", str(config_file), "--epochs", "1", "--limit", "--with-metrics"], modules=TINY) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [row.split()[0] for row in lines[2:6]] == ["hand-written", "Trainer", "Trainer+metrics", "limit"]
    ratios = [line.split(":")[0] for line in lines[6:]]
    assert ratios == ["ratio Trainer/hand-written", "ratio Trainer/limit", "ratio Trainer+metrics/limit"]
    assert all("median of 1 paired epochs" in line for line in lines[6:])


def test_the_limit_turns_every_speed_option_on(config_file: Path) -> None:
    limit = benchmark_config(config_file, LIMIT_OVERRIDES)
    assert limit.data_loader.args["device_resident"] is True and limit.optimizer.args["fused"] is True
    assert (limit.trainer.compile, limit.trainer.amp, limit.trainer.channels_last) == ("default", "auto", True)


def test_benchmark_reports_a_bad_override(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(config_file), "--set", "trainer.epoch=2"], modules=TINY) == 2
    assert capsys.readouterr().err.startswith("error: --set trainer.epoch: unknown key; did you mean 'epochs'?")


def test_benchmark_refuses_zero_epochs(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["-c", str(config_file), "--epochs", "0"], modules=TINY)
    assert exit_info.value.code == 2
    assert "--epochs 0: time at least 1 epoch" in capsys.readouterr().err


def test_benchmark_config_leaves_out_what_a_plain_loop_lacks(config: dict[str, Any], tmp_path: Path) -> None:
    config["lr_scheduler"] = {"type": "StepLR", "args": {"step_size": 1}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    loaded = benchmark_config(path, ["optimizer.args.lr=0.5"])
    assert (loaded.metrics, loaded.trainer.monitor, loaded.lr_scheduler) == ([], "off", None)
    assert loaded.data_loader.args["validation_split"] == 0 and loaded.optimizer.args["lr"] == 0.5
