"""Ctrl-C while a run is starting: one line, exit 130, and no run folder left behind."""

import json
from pathlib import Path

import pytest

import train
from tests.tiny import TINY, tiny_config
from trainer.trainer import Trainer


def interrupt(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("target", "name"),
    [(Trainer, "check_one_batch"), (train, "log_setup")],  # before the run folder exists, and just after
    ids=["before-the-run-folder", "after-the-run-folder"],
)
def test_ctrl_c_during_start_up_is_one_line_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], target: object, name: str
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(tmp_path / "saved")), encoding="utf-8")
    monkeypatch.setattr(target, name, interrupt)
    assert train.main(["-c", str(config)], modules=TINY) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "error: interrupted before training started; nothing was saved"
    assert "Traceback" not in err
    runs = list((tmp_path / "saved" / "tiny").glob("*")) if (tmp_path / "saved" / "tiny").exists() else []
    assert runs == [], "no empty run folder is left behind"
