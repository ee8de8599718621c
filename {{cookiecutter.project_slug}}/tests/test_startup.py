"""A stop signal while a run is starting (Ctrl-C, or a scheduler's SIGTERM): one line, exit 128+N, and no
run folder left behind. A refusal once train.log is open: its one line is in train.log too, read once."""

import json
import os
import re
import signal
from pathlib import Path

import pytest

import train
import trainer.run_start
from base.base_trainer import BaseTrainer
from tests.hostile import EXTRA, only_run, run_train, tracked_config
from tests.tiny import TINY, tiny_config
from utils.errors import UsageError


def signalled(signal_number: int) -> object:
    """A stand-in for a start-up step that receives ``signal_number`` (sent to this very process)."""

    def step(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signal_number)

    return step


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize(
    ("target", "name"),
    # before the run folder exists, and just after
    [(BaseTrainer, "check_one_batch"), (trainer.run_start, "log_setup")],
    ids=["before-the-run-folder", "after-the-run-folder"],
)
def test_a_stop_signal_during_start_up_is_one_line_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], target: object, name: str,
    signal_number: int,
) -> None:  # fmt: skip
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(tmp_path / "saved")), encoding="utf-8")
    monkeypatch.setattr(target, name, signalled(signal_number))
    handler = signal.getsignal(signal.SIGTERM)
    # Ctrl-C raises KeyboardInterrupt even where this process was started with SIGINT ignored (a background job).
    ctrl_c = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert train.main(["-c", str(config)], modules=TINY) == 128 + signal_number
    finally:
        signal.signal(signal.SIGINT, ctrl_c)
    err = capsys.readouterr().err
    said = f"error: interrupted by {signal.Signals(signal_number).name} before training started; nothing was saved"
    assert err.strip().splitlines()[-1] == said
    assert "Traceback" not in err
    runs = list((tmp_path / "saved" / "tiny").glob("*")) if (tmp_path / "saved" / "tiny").exists() else []
    assert runs == [], "no empty run folder is left behind"
    assert signal.getsignal(signal.SIGTERM) is handler, "SIGTERM is handled as before once train.main returns"


def test_a_refusal_after_train_log_opened_writes_its_error_line_there_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It read 'ERROR error: error: ...'."""
    config_path = tracked_config(tmp_path, ["csv"])
    assert run_train(capsys, "-c", config_path, "--set", "trainer.epochs=1", modules=EXTRA).code == 0
    run_dir = only_run(tmp_path / "saved")

    def full_disk(*args: object, **kwargs: object) -> None:  # what a checkpoint that cannot be written raises
        raise UsageError(f"cannot write '{run_dir}/last.pth': No space left on device; free some space")

    monkeypatch.setattr(BaseTrainer, "fit", full_disk)
    refused = run_train(capsys, "-r", run_dir, "--set", "trainer.epochs=2", modules=EXTRA)
    assert refused.code == 2
    line = refused.error_line()
    assert line.startswith("error: cannot write"), line
    [logged] = [text for text in (run_dir / "train.log").read_text(encoding="utf-8").splitlines() if " ERROR " in text]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d [\d:,]+ ERROR utils\.cli: " + re.escape(line), logged), logged
