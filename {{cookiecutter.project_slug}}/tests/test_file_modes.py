"""Files a run writes get the usual permissions, ``0o666 & ~umask`` (0644 under umask 022): teammates can
read checkpoints and records, and a umask of 077 keeps them private. Folders get ``0o777 & ~umask``."""

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile import only_run, run_dirs, run_test, run_train, small_config, write_config


@pytest.fixture(params=[0o022, 0o077, 0o002], ids=["umask-022", "umask-077", "umask-002"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_run_files_follow_the_umask(tmp_path: Path, capsys: pytest.CaptureFixture[str], umask: int) -> None:
    save_dir = tmp_path / "saved"
    config = write_config(tmp_path / "config.json", small_config(save_dir, epochs=2, save_period=1))
    assert run_train(capsys, "-c", config).code == 0
    run_dir = only_run(save_dir)
    # config-resume-N.json (a resume that changes a setting), origin.json (a rewind), *.test.json (test.py).
    assert run_train(capsys, "-r", run_dir, "--set", "trainer.epochs=3").code == 0
    assert run_train(capsys, "-r", run_dir / "epoch-1.pth").code == 0
    assert run_test(capsys, "-r", run_dir).code == 0

    files = sorted(path for path in save_dir.rglob("*") if path.is_file())
    names = {path.name for path in files}
    assert {"last.pth", "best.pth", "epoch-1.pth", "config.json", "config-resume-2.json", "origin.json"} <= names
    assert {"best.test.json", "train.log"} <= names
    wrong = {str(path.relative_to(save_dir)): oct(mode(path)) for path in files if mode(path) != 0o666 & ~umask}
    assert not wrong, f"expected {oct(0o666 & ~umask)}: {wrong}"
    folders = [save_dir / "tiny", *run_dirs(save_dir)]
    wrong = {str(path): oct(mode(path)) for path in folders if mode(path) != 0o777 & ~umask}
    assert not wrong, f"expected {oct(0o777 & ~umask)}: {wrong}"
