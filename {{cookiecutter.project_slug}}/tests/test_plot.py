"""plot.py: learning curves of one or several runs as a PNG, the --summary table of an experiment's runs,
and one line with exit code 2 for what it cannot use."""

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

import plot
import train
from logger.metrics_csv import read_rows
from logger.runs import differing_settings, read_config, run_label
from tests.hostile import (
    EXTRA,
    Result,
    assert_unchanged,
    interrupt_on_forward,
    run_dirs,
    run_test,
    run_train,
    small_config,
    snapshot,
    write_config,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory, logging_restored_after_module: None) -> Path:
    """saved/tiny with three runs of two epochs: a finished one (lr 0.02, tested), a finished one at
    lr 0.01, and one stopped by Ctrl-C in its second epoch."""
    folder = tmp_path_factory.mktemp("plot")
    config = write_config(folder / "config.json", small_config(folder / "saved", epochs=2))
    assert train.main(["-c", str(config)], modules=EXTRA) == 0
    assert train.main(["-c", str(config), "--lr", "0.01"], modules=EXTRA) == 0
    with interrupt_on_forward(4):  # the second step of epoch 2 (two steps per epoch)
        assert train.main(["-c", str(config), "--set", "arch.type=InterruptingNet"], modules=EXTRA) == 130
    return folder / "saved" / "tiny"


def run_plot(capsys: pytest.CaptureFixture[str], *argv: Any) -> Result:
    capsys.readouterr()
    code = plot.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return Result(code, captured.err, captured.out)


def assert_png(path: Path) -> None:
    image = pytest.importorskip("matplotlib.image")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 200, pixels.shape


def test_one_run_is_drawn_beside_it_by_default(experiment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    first = run_dirs(experiment.parent)[0]
    result = run_plot(capsys, first)
    assert result.code == 0, result.err
    assert_png(first / "curves.png")
    (first / "curves.png").unlink()


def test_two_runs_are_overlaid_in_one_picture(experiment: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    pytest.importorskip("matplotlib")
    first, second, _ = run_dirs(experiment.parent)
    result = run_plot(capsys, first, second, "-o", tmp_path / "both.png")
    assert result.code == 0, result.err
    assert_png(tmp_path / "both.png")


@pytest.mark.parametrize(("suffix", "starts"), [(".pdf", b"%PDF"), (".svg", b"<?xml"), (".jpg", b"\xff\xd8")])
def test_the_picture_has_the_format_its_name_says(
    experiment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str, starts: bytes
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / f"curves{suffix}"
    assert run_plot(capsys, run_dirs(experiment.parent)[0], "-o", out).code == 0
    assert out.read_bytes().startswith(starts)


def test_a_run_with_no_finished_epoch_is_left_out_with_a_warning(
    experiment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    fresh = run_without_epochs(tmp_path)
    result = run_plot(capsys, run_dirs(experiment.parent)[0], fresh, "-o", tmp_path / "curves.png")
    assert result.code == 0, result.err
    assert f"Leaving out {fresh}: no finished epoch yet" in result.err
    assert_png(tmp_path / "curves.png")


def test_labels_name_the_run_and_the_settings_that_differ(experiment: Path) -> None:
    first, second, _ = run_dirs(experiment.parent)
    settings = differing_settings([read_config(first), read_config(second)])
    assert settings == [{"optimizer.args.lr": "0.02"}, {"optimizer.args.lr": "0.01"}]
    assert run_label(second, settings[1]) == f"{second.name} (optimizer.args.lr=0.01)"
    assert run_label(first, {}) == first.name


def test_without_matplotlib_one_line_says_how_to_install_it(
    experiment: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import matplotlib.figure now fails
    before = snapshot(experiment)
    result = run_plot(capsys, experiment)
    assert result.code == 2
    assert 'pip install -e ".[plot]"' in result.error_line()
    assert_unchanged(before, snapshot(experiment))


def summary_table(capsys: pytest.CaptureFixture[str], *argv: Any) -> list[dict[str, str]]:
    """The --summary table as one dict per run (columns split on runs of two or more spaces)."""
    result = run_plot(capsys, "--summary", *argv)
    assert result.code == 0, result.err
    header, *lines = result.out.splitlines()
    columns = header.split()
    starts = [header.index(column) for column in columns]
    ends = [*starts[1:], None]
    return [{c: line[s:e].strip() for c, s, e in zip(columns, starts, ends, strict=True)} for line in lines]


def test_summary_of_finished_and_stopped_runs(experiment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second, stopped = run_dirs(experiment.parent)
    assert run_test(capsys, "-r", first / "best.pth", modules=EXTRA).code == 0
    table = summary_table(capsys, experiment)
    assert [row["run"] for row in table] == [first.name, second.name, stopped.name]
    assert [row["status"] for row in table] == ["finished", "finished", "stopped"]
    assert [row["epochs"] for row in table] == ["2/2", "2/2", "1/2"]
    for row, run in zip(table, (first, second, stopped), strict=True):
        losses = {epoch: values["val_loss"] for epoch, values in read_rows(run / "metrics.csv").items()}
        best_epoch = min(losses, key=losses.__getitem__)
        assert (row["best_val_loss"], row["best_epoch"]) == (f"{losses[best_epoch]:.4f}", str(best_epoch))
    tested = json.loads((first / "best.test.json").read_text())
    assert table[0]["test_accuracy"] == f"{tested['test_accuracy']:.4f}"
    assert table[0]["tested_epoch"] == str(tested["epoch"])
    assert table[1]["test_accuracy"] == "-", "test.py did not run on it"
    assert [row["arch.type"] for row in table] == ["TinyConvNet", "TinyConvNet", "InterruptingNet"]
    assert [row["optimizer.args.lr"] for row in table] == ["0.02", "0.01", "0.02"]


def test_summary_columns_keep_their_order_whichever_run_was_tested(
    experiment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The test metrics come before the settings that differ, even when only a later run has them."""
    _, second, stopped = run_dirs(experiment.parent)
    for run in (second, stopped):
        shutil.copytree(run, tmp_path / "tiny" / run.name, ignore=shutil.ignore_patterns("*.test.json"))
    assert run_test(capsys, "-r", tmp_path / "tiny" / stopped.name / "last.pth", modules=EXTRA).code == 0
    header = list(summary_table(capsys, tmp_path / "tiny")[0])
    assert header[:5] == ["run", "status", "epochs", "best_val_loss", "best_epoch"]
    assert header.index("test_accuracy") < header.index("optimizer.args.lr"), header


def test_summary_of_a_run_resumed_with_more_epochs_counts_them(
    experiment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "tiny" / run_dirs(experiment.parent)[1].name
    shutil.copytree(run_dirs(experiment.parent)[1], run)
    assert run_train(capsys, "-r", run, "--set", "trainer.epochs=3", modules=EXTRA).code == 0
    [row] = summary_table(capsys, tmp_path / "tiny")
    assert (row["status"], row["epochs"]) == ("finished", "3/3"), "the settings it last ran with (config-resume)"


@pytest.mark.parametrize(
    ("change", "status"),
    [("lock", "running"), ("error", "failed"), ("killed", "failed"), ("quiet", "finished")],
    ids=["live-lock", "error-line", "killed-mid-run", "no-info-lines"],
)
def test_summary_status_from_what_the_folder_holds(experiment: Path, tmp_path: Path, change: str, status: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    run = tmp_path / "tiny" / "20240102-030405"
    shutil.copytree(run_dirs(experiment.parent)[1], run)
    log = run / "train.log"
    if change == "lock":
        (run / "run.lock").write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    elif change == "error":
        log.write_text(log.read_text() + "2024-01-02 03:04:05 ERROR error: error: cannot write 'last.pth'\n")
    else:  # no ending line: killed, or a run logging only warnings (verbosity 0)
        lines = [line for line in log.read_text().splitlines() if "Done." not in line]
        log.write_text("\n".join(lines[:3] if change == "killed" else lines) + "\n")
        if change == "killed":
            (run / "last.pth").unlink()
    assert [row["status"] for row in summary_table(capsys, run)] == [status]


def not_a_run(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def run_without_epochs(tmp_path: Path) -> Path:
    run = tmp_path / "fresh"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "train.log").write_text("")
    return run


def run_with_unreadable_metrics(tmp: Path, run: Path) -> Path:
    copy = shutil.copytree(run, tmp / "copy")
    (copy / "metrics.csv").write_bytes(bytes(range(128, 256)))  # not UTF-8
    return copy


BAD_INPUT = {
    "summary-of-unreadable-metrics": (
        lambda tmp, run: ["--summary", run_with_unreadable_metrics(tmp, run)],
        "metrics.csv' cannot be read",
    ),
    "missing-run": (lambda tmp, run: [tmp / "nope"], "does not exist"),
    "not-a-run": (lambda tmp, run: [not_a_run(tmp)], "is not a run folder"),
    "output-in-missing-folder": (lambda tmp, run: [run, "-o", tmp / "missing" / "c.png"], "does not exist"),
    "output-is-a-folder": (lambda tmp, run: [run, "-o", tmp], "is a folder"),
    "output-of-no-picture-format": (lambda tmp, run: [run, "-o", tmp / "c.xyz"], "names no picture format"),
    "run-without-epochs": (lambda tmp, run: [run_without_epochs(tmp)], "no finished epoch yet"),
    "summary-of-missing": (lambda tmp, run: ["--summary", tmp / "nope"], "does not exist"),
    "summary-with-output": (lambda tmp, run: ["--summary", run, "-o", tmp / "c.png"], "--summary prints a table"),
}


@pytest.mark.parametrize(("make_argv", "expected"), BAD_INPUT.values(), ids=list(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(experiment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          make_argv: Any, expected: str) -> None:  # fmt: skip
    pytest.importorskip("matplotlib")  # so that the refusal is about the input, not a missing package
    argv = make_argv(tmp_path, run_dirs(experiment.parent)[0])  # may write a run to refuse into tmp_path
    before = snapshot(tmp_path, experiment)
    result = run_plot(capsys, *argv)
    assert result.code == 2
    assert expected in result.error_line()
    assert_unchanged(before, snapshot(tmp_path, experiment))


def test_a_run_folder_a_user_has_been_in_still_plots(experiment: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A spreadsheet re-saved metrics.csv as "CSV UTF-8" (with a byte order mark), and a file manager copied
    a config-resume record: both used to be tracebacks (KeyError 'epoch'; int('3 (copy)'))."""
    pytest.importorskip("matplotlib")
    run = shutil.copytree(run_dirs(experiment.parent)[0], tmp_path / "run")
    metrics = run / "metrics.csv"
    metrics.write_text(metrics.read_text(encoding="utf-8"), encoding="utf-8-sig")
    (run / "config-resume-3 (copy).json").write_text("{}", encoding="utf-8")
    assert run_plot(capsys, run, "-o", tmp_path / "c.png").code == 0
    assert_png(tmp_path / "c.png")
    summary = run_plot(capsys, "--summary", run)
    assert summary.code == 0, summary.err
    assert "2/2" in summary.out, summary.out
