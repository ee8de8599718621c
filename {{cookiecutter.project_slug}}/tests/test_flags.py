"""Command-line flags: a shortcut and a --set of the same key, numbers that are not numbers, devices,
and flags argparse itself refuses (one line for every entry point)."""

from pathlib import Path
from types import ModuleType

import pytest
import torch

import export
import plot
import predict
import test as test_script  # the project's test.py
import train
from benchmarks import bench_trainer
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
    "lr-nan": (["--lr", "nan"], "optimizer.args.lr: expected a finite number, got NaN"),
    "lr-beyond-floats": (["--lr", "1e999"], "optimizer.args.lr: expected a finite number, got Infinity"),
    "lr-infinite-set": (["--set", "optimizer.args.lr=Infinity"], "optimizer.args.lr: expected a finite number"),
    "bs-beyond-the-split": (["--bs", "1000"], "data_loader.args.batch_size: 1000 is more than the 64 training samples"),
}


@pytest.mark.parametrize(("args", "message"), REFUSED.values(), ids=list(REFUSED))
def test_refused_flags_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    path = write_config(tmp_path / "config.json", small_config(tmp_path / "saved"))
    result = run_train(capsys, "-c", path, *args)
    assert result.code == 2
    assert message in result.only_line()
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


# (entry point, arguments, what the one error line says): argparse's own refusals, made one line
# (sweep.py's, when the project has it, are in test_sweep.py)
ARGPARSE_REFUSALS = {
    "train-unknown-flag": (
        train,
        ["--epochs", "3"],
        "unrecognized arguments: --epochs 3; a config key is set with "
        "--set KEY.PATH=VALUE, such as --set trainer.epochs=20; see train.py --help",
    ),  # fmt: skip
    "train-close-flag": (train, ["--lr-rate", "0.1"], "unrecognized arguments: --lr-rate 0.1 (did you mean --lr?)"),
    "train-not-a-float": (train, ["--lr", "abc"], "argument --lr: invalid float value: 'abc'; see train.py --help"),
    "train-two-starts": (train, ["-r", "x", "--init-from", "y"], "argument --init-from: not allowed with argument -r"),
    "test-no-checkpoint": (test_script, [], "the following arguments are required: -r/--resume; see test.py --help"),
    "predict-no-images": (predict, ["-r", "x"], "the following arguments are required: INPUT (or --split train|test)"),
    "predict-files-and-split": (predict, ["-r", "x", "a.png", "--split", "test"], "give INPUT files or --split, not"),
    "predict-unknown-split": (predict, ["-r", "x", "--split", "val"], "argument --split: invalid choice: 'val'"),
    "export-no-format": (export, ["-r", "x"], "the following arguments are required: --format"),
    "plot-unknown-flag": (plot, ["run", "--metrics", "loss"], "unrecognized arguments: --metrics loss; see plot.py"),
    "bench-no-epochs": (bench_trainer, ["--epochs", "0"], "--epochs 0: time at least 1 epoch"),
}


@pytest.mark.parametrize(("entry_point", "args", "message"), ARGPARSE_REFUSALS.values(), ids=list(ARGPARSE_REFUSALS))
def test_argparse_refusals_are_one_line(
    capsys: pytest.CaptureFixture[str], entry_point: ModuleType, args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        entry_point.main(args)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: ") and message in err, err
