"""Command-line flags: a shortcut and a --set of the same key, numbers that are not numbers, devices."""

from pathlib import Path

import pytest
import torch

from tests.hostile import run_test, run_train, small_config, write_config
from utils.util import resolve_device

# (arguments, what the one error line says); each is refused before anything is written
REFUSED = {
    "lr-twice": (["--lr", "0.01", "--set", "optimizer.args.lr=0.1"], "--lr and --set optimizer.args.lr=..."),
    "bs-twice": (["--bs", "8", "--set", "data_loader.args.batch_size=4"], "--bs and --set data_loader.args.batch_size"),
    "device-twice": (["-d", "cpu", "--set", "device=cpu"], "--device and --set device=... both set device"),
    "lr-not-a-number": (["--set", "optimizer.args.lr=abc"], 'optimizer.args.lr: expected a number, got "abc"'),
    "decay-as-text": (["--set", 'optimizer.args.weight_decay="0.1"'], "optimizer.args.weight_decay: expected a number"),
    "width-not-a-number": (["--set", "arch.args.width=wide"], 'arch.args.width: expected a number, got "wide"'),
    "lr-nan": (["--lr", "nan"], 'optimizer.args.lr: expected a number, got "nan"'),
}


@pytest.mark.parametrize(("args", "message"), REFUSED.values(), ids=list(REFUSED))
def test_refused_flags_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    path = write_config(tmp_path / "config.json", small_config(tmp_path / "saved"))
    result = run_train(capsys, "-c", path, *args)
    assert result.code == 2
    assert message in result.error_line()
    assert not (tmp_path / "saved").exists()


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an Apple GPU")
def test_mps_where_there_is_none_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path / "config.json", small_config(tmp_path / "saved"))
    result = run_train(capsys, "-c", path, "-d", "mps")
    assert result.code == 2
    assert result.error_line().startswith("error: device: 'mps' asked for, but this machine has no usable Apple GPU")
    assert "--device cpu" in result.error_line()


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    for cuda, mps, expected in [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda mps=mps: mps)
        assert resolve_device("auto").type == expected


def test_test_py_names_the_run_it_evaluates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path / "config.json", small_config(tmp_path / "saved"))
    assert run_train(capsys, "-c", path).code == 0
    result = run_test(capsys, "-r", tmp_path / "saved" / "tiny")
    assert result.code == 0
    [run] = list((tmp_path / "saved" / "tiny").iterdir())
    assert f"Evaluating {run / 'best.pth'} (epoch 1)" in result.err
