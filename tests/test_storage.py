"""Storage faults and a second process, provoked for real: a full disk, a read-only folder, two resumes."""

import json
import os
import signal
from pathlib import Path

import pytest
from helpers import describe, run_folders, run_project, start_project, wait_for_line
from test_faults import load, train_args

# Runs a project script with one storage fault injected, chosen by FAULT="<call>:<file name>:<n>":
# the n-th fsync of a temporary file for <file name> fails with ENOSPC (a full disk), or the n-th
# temporary file for it cannot be created, with EROFS (a read-only folder).
FAULTY_DRIVER = """
import errno, os, runpy, sys, tempfile
from pathlib import Path

call, name, nth = os.environ["FAULT"].split(":")
seen = []
real_fsync, real_mkstemp = os.fsync, tempfile.mkstemp

def matches(path):
    if Path(path).name.startswith("." + name + "."):
        seen.append(path)
        return len(seen) == int(nth)
    return False

def fsync(fd):
    if call == "fsync" and matches(os.readlink(f"/proc/self/fd/{fd}")):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_fsync(fd)

def mkstemp(suffix=None, prefix=None, dir=None, text=False):
    if call == "mkstemp" and matches(os.path.join(dir or "", (prefix or "") + "x")):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    return real_mkstemp(suffix, prefix, dir, text)

os.fsync, tempfile.mkstemp = fsync, mkstemp
script = sys.argv.pop(1)
sys.path.insert(0, os.getcwd())
sys.argv[0] = script
runpy.run_path(script, run_name="__main__")
"""


@pytest.fixture
def faulty(tmp_path: Path) -> Path:
    driver = tmp_path / "faulty.py"
    driver.write_text(FAULTY_DRIVER)
    return driver


def run_with_fault(project: Path, driver: Path, fault: str, *args: str):
    os.environ["FAULT"] = fault
    try:
        return run_project(project, str(driver), *args)
    finally:
        del os.environ["FAULT"]


def test_disk_full_while_saving_is_one_line_and_keeps_the_last_checkpoint(
    project: Path, faulty: Path, tmp_path: Path
) -> None:
    result = run_with_fault(project, faulty, "fsync:last.pth:2", *train_args(tmp_path, 3))
    assert result.returncode == 2, describe(result)
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: cannot write") and "last.pth" in line and "No space left on device" in line
    assert "Traceback" not in result.stderr
    [run] = run_folders(tmp_path)
    assert line in (run / "train.log").read_text(), "the error is in train.log too"
    assert load(run / "last.pth")["epoch"] == 1, "the previous last.pth is intact"
    resumed = run_project(project, "train.py", "-r", str(run))
    assert resumed.returncode == 0, describe(resumed)
    assert load(run / "last.pth")["epoch"] == 3


def test_read_only_run_folder_prints_the_metrics_then_one_line(project: Path, faulty: Path, tmp_path: Path) -> None:
    trained = run_project(project, *train_args(tmp_path, 1))
    assert trained.returncode == 0, describe(trained)
    [run] = run_folders(tmp_path)
    result = run_with_fault(project, faulty, "mkstemp:best.test.json:1", "test.py", "-r", str(run))
    assert result.returncode == 2, describe(result)
    assert "test_accuracy" in result.stdout, "the metrics are shown even though they cannot be saved"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Read-only file system" in errors[0] and "best.test.json" in errors[0]
    assert "Traceback" not in result.stderr and not (run / "best.test.json").exists()


def test_a_second_resume_of_a_live_run_is_refused_and_a_dead_ones_lock_taken_over(
    project: Path, tmp_path: Path
) -> None:
    slow = ["--set", 'arch={"type": "SlowConvNet", "args": {"delay": 0.02, "width": 8}}']
    first = run_project(project, *train_args(tmp_path, 1), *slow)
    assert first.returncode == 0, describe(first)
    [run] = run_folders(tmp_path)
    live = start_project(project, "train.py", "-r", str(run), "--set", "trainer.epochs=30")
    wait_for_line(live, "Ctrl-C or SIGTERM")
    second = run_project(project, "train.py", "-r", str(run), "--set", "trainer.epochs=30")
    assert second.returncode == 2, describe(second)
    assert second.stderr.strip() == (
        f"error: run folder {str(run)!r} is in use by process {live.pid} on {os.uname().nodename} "
        f"(since {json.loads((run / 'run.lock').read_text())['since']}); wait for it to finish or stop it "
        f"(if it is gone, delete {str(run / 'run.lock')!r})"
    )
    live.send_signal(signal.SIGKILL)  # dies holding the lock
    live.communicate(timeout=60)
    third = run_project(project, "train.py", "-r", str(run), "--set", "trainer.epochs=2")
    assert third.returncode == 0, describe(third)
    assert "Taking over" in third.stderr and "no longer running" in third.stderr
    assert not (run / "run.lock").exists(), "a finished run leaves no lock"
