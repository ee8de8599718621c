"""The Trainer computes what a hand-written loop computes: same seed, same losses (CPU)."""

from pathlib import Path

import pytest
import torch

from benchmarks.bench_trainer import benchmark_config, main, run_hand_written, run_trainer

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SMALL = ["device=cpu", "arch.args.width=8", "data_loader.args.batch_size=128"]


def test_trainer_losses_equal_the_hand_written_loop() -> None:
    config = benchmark_config(PROJECT_ROOT / "config.json", 2, SMALL)
    hand = run_hand_written(config, torch.device("cpu"))
    trainer = run_trainer(config, torch.device("cpu"))
    assert len(trainer.epoch_losses) == len(hand.epoch_losses) == 2
    assert trainer.epoch_losses == pytest.approx(hand.epoch_losses, abs=1e-6, rel=0)
    assert hand.epoch_losses[1] < hand.epoch_losses[0]  # it trained, so the comparison means something


def test_benchmark_prints_its_table(capsys: pytest.CaptureFixture[str]) -> None:
    quick = [*SMALL, "data_loader.args.augment=false"]
    args = ["-c", str(PROJECT_ROOT / "config.json"), "--epochs", "1", *(a for s in quick for a in ("--set", s))]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:3] == ["path", "epoch", "s"]
    assert lines[2].startswith("hand-written") and lines[3].startswith("Trainer")
    assert lines[4].startswith("ratio Trainer/hand-written: time ")
