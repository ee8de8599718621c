"""A kill at any moment a file is being saved loses nothing: ``--resume auto`` (what a requeued job runs)
then ends with exactly the checkpoints of a run that was never interrupted.

The kill is simulated deterministically: the N-th rename of ``utils.util.atomic_write`` raises a
BaseException instead of renaming, and the test then leaves behind what a real ``kill -9`` would (the
temporary file, and a run.lock naming a process that is gone). Every N of a straight run is tried.
"""

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.hostile import (
    Killed,
    assert_same_weights,
    atomic_renames,
    dead_pid,
    run_dirs,
    run_train,
    small_config,
    write_config,
    write_lock,
)

EPOCHS = 4


def kill_config(save_dir: Path) -> dict[str, Any]:
    """4 epochs, every epoch saved; dropout, so that a resume must restore the RNG to match bit for bit;
    a monitor whose best is usually not the last epoch here, so best.pth is not simply last.pth."""
    config = small_config(save_dir, epochs=EPOCHS, save_period=1, keep_last=0, monitor="max val_accuracy")
    config["arch"]["args"]["dropout"] = 0.2
    config["optimizer"]["args"]["lr"] = 0.1
    return config


def checkpoints(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The run's checkpoints (read without the digest check, which other tests cover, to keep this one fast)."""
    return {path.name: torch.load(path, weights_only=True) for path in sorted(run_dir.glob("*.pth"))}


def test_a_kill_at_any_write_then_resume_auto_ends_like_a_straight_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    straight_config = write_config(tmp_path / "straight" / "config.json", kill_config(tmp_path / "straight" / "saved"))
    with atomic_renames() as writes:
        assert run_train(capsys, "-c", straight_config).code == 0
    straight_run = run_dirs(tmp_path / "straight" / "saved")[0]
    names = [path.name for path in writes]
    assert all(path.parent == straight_run for path in writes), writes
    assert names[0] == "config.json" and names.count("last.pth") == EPOCHS, names
    expected = checkpoints(straight_run)
    assert sorted(expected) == sorted({"best.pth", "last.pth", *(f"epoch-{n}.pth" for n in range(1, EPOCHS + 1))})

    failures = []
    pid = dead_pid()
    for kill_at, name in enumerate(names, start=1):
        label = f"kill at write {kill_at} of {len(names)} ({name})"
        try:
            check_kill_and_resume(tmp_path / f"kill-{kill_at:02d}", kill_at, pid, expected, capsys)
        except AssertionError as err:
            failures.append(f"{label}: {err}")
    assert not failures, "\n".join(failures)


def check_kill_and_resume(
    folder: Path, kill_at: int, pid: int, expected: dict[str, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    save_dir = folder / "saved"
    config = write_config(folder / "config.json", kill_config(save_dir))
    with atomic_renames(kill_at=kill_at), pytest.raises(Killed):
        run_train(capsys, "-c", config)
    killed = run_dirs(save_dir)  # none if a kill before the run folder was complete removed it
    assert len(killed) <= 1, killed
    for run_dir in killed:
        assert list(run_dir.glob(".*.killed.tmp")), "the kill left no temporary file behind"
        write_lock(run_dir, pid)  # what a kill -9 leaves, whatever the handlers did on the way out
    had_last = any((run_dir / "last.pth").is_file() for run_dir in killed)

    resumed = run_train(capsys, "-c", config, "--resume", "auto")
    assert resumed.code == 0, resumed.err
    runs = run_dirs(save_dir)
    if had_last:  # the same config: continue the killed run in its folder
        assert runs == killed, f"expected to continue {killed}, got {runs}"
        assert f"left by process {pid} that is no longer running" in resumed.err, "no log line on taking the lock"
        assert "Removing ." in resumed.err, "the stale temporary file was not removed with a log line"
    else:  # nothing to continue from: a new run, from scratch
        assert len(runs) == len(killed) + 1 and runs[:-1] == killed, runs
        assert "no earlier run" in resumed.err, resumed.err
    final = runs[-1]
    assert not (final / "run.lock").exists(), "run.lock left behind"
    assert not list(final.glob(".*.tmp")), f"temporary files left: {list(final.glob('.*.tmp'))}"
    got = checkpoints(final)
    assert sorted(got) == sorted(expected), f"{sorted(got)} != {sorted(expected)}"
    for file_name, state in expected.items():
        assert got[file_name]["epoch"] == state["epoch"], f"{file_name}: epoch {got[file_name]['epoch']}"
        assert "mid_epoch" not in got[file_name], file_name
        assert_same_weights(got[file_name]["model"], state["model"], file_name)
        assert got[file_name]["metrics"] == state["metrics"], f"{file_name}: metrics differ"
    recorded = json.loads((final / "config.json").read_text(encoding="utf-8"))
    straight = expected["last.pth"]["config"]
    assert (
        recorded
        == got["last.pth"]["config"]
        == {**straight, "trainer": {**straight["trainer"], "save_dir": str(save_dir)}}
    )
