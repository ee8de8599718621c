"""The Trainer computes what a hand-written loop computes: same seed, same losses (CPU); and the
benchmark that compares their speed runs."""

import json
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks.bench_trainer import benchmark_config, hand_written_epochs, main, trainer_epochs
from tests.tiny import TINY

CPU = torch.device("cpu")


def test_trainer_losses_equal_the_hand_written_loop(config_file: Path) -> None:
    config = benchmark_config(config_file, [])
    hand = [epoch.loss for epoch in islice(hand_written_epochs(config, TINY, CPU), 2)]
    trainer = [epoch.loss for epoch in islice(trainer_epochs(config, TINY, CPU), 2)]
    assert trainer == pytest.approx(hand, abs=1e-6, rel=0)
    assert hand[1] < hand[0]  # it trained, so the comparison means something


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
