"""The Trainer computes what a hand-written loop computes: same seed, same losses (CPU)."""

from itertools import islice
from pathlib import Path

import pytest
import torch

from benchmarks.bench_trainer import benchmark_config, hand_written_epochs, main, trainer_epochs

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SMALL = ["device=cpu", "arch.args.width=8", "data_loader.args.batch_size=128"]


def test_trainer_losses_equal_the_hand_written_loop() -> None:
    config = benchmark_config(PROJECT_ROOT / "config.json", SMALL)
    hand = [epoch.loss for epoch in islice(hand_written_epochs(config, torch.device("cpu")), 2)]
    trainer = [epoch.loss for epoch in islice(trainer_epochs(config, torch.device("cpu")), 2)]
    assert trainer == pytest.approx(hand, abs=1e-6, rel=0)
    assert hand[1] < hand[0]  # it trained, so the comparison means something


def test_benchmark_prints_its_table(capsys: pytest.CaptureFixture[str]) -> None:
    quick = [*SMALL, "data_loader.args.augment=false"]
    args = ["-c", str(PROJECT_ROOT / "config.json"), "--epochs", "2", *(a for s in quick for a in ("--set", s))]
    assert main(args) == 0
    title, header, hand, trainer, ratio = capsys.readouterr().out.splitlines()
    assert "1 warm-up + 2 timed epochs per path" in title
    assert header.split()[:3] == ["path", "warm-up", "s"]
    assert hand.startswith("hand-written") and trainer.startswith("Trainer")
    assert all(float(value) > 0 for row in (hand, trainer) for value in row.split()[1:])
    assert ratio.startswith("ratio Trainer/hand-written: time ") and "median of 2 paired epochs" in ratio


def test_benchmark_refuses_zero_epochs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["-c", str(PROJECT_ROOT / "config.json"), "--epochs", "0"])
    assert exit_info.value.code == 2
    assert "--epochs 0: time at least 1 epoch" in capsys.readouterr().err
