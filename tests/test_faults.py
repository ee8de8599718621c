"""Each fault in the generated README's table, provoked for real against a baked project."""

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import EXTENDABLE, describe, run_folders, run_project, start_project, wait_for, wait_for_line

# Small and quick, but several dozen steps per epoch so a signal lands inside one.
FAST = [
    "-d", "cpu", "--set", "arch.args.width=8", "--set", "data_loader.args.validation_split=400",
    "--set", 'trainer.loggers=["csv"]', "--set", "trainer.save_period=1", "--set", "trainer.keep_last=0",
    *EXTENDABLE,
]  # fmt: skip


def train_args(save_dir: Path, epochs: int, *extra: str) -> list[str]:
    return [
        "train.py", "-c", "config.json", *FAST, "--set", f"trainer.epochs={epochs}",
        "--set", f"trainer.save_dir={json.dumps(str(save_dir))}", *extra,
    ]  # fmt: skip


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = load(a)["model"], load(b)["model"]
    assert first.keys() == second.keys()
    different = [key for key in first if not torch.equal(first[key], second[key])]
    assert not different, f"weights differ in {different}"


@pytest.fixture(scope="module")
def straight_run(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four epochs in one go: the reference every interrupted run must match exactly."""
    save_dir = tmp_path_factory.mktemp("straight")
    result = run_project(project, *train_args(save_dir, 4))
    assert result.returncode == 0, describe(result)
    [run] = run_folders(save_dir)
    return run


def test_resume_at_half_time_is_bit_identical(project: Path, straight_run: Path, tmp_path: Path) -> None:
    first = run_project(project, *train_args(tmp_path, 2))
    assert first.returncode == 0, describe(first)
    [run] = run_folders(tmp_path)
    second = run_project(project, "train.py", "-r", str(run / "last.pth"), "--set", "trainer.epochs=4")
    assert second.returncode == 0, describe(second)
    for epoch in range(1, 5):
        assert load(run / f"epoch-{epoch}.pth")["metrics"] == load(straight_run / f"epoch-{epoch}.pth")["metrics"]
    assert_same_weights(run / "last.pth", straight_run / "last.pth")

    again = run_project(project, "train.py", "-r", str(run / "last.pth"))
    assert again.returncode == 0, describe(again)
    assert "Nothing to do" in again.stderr and "--set trainer.epochs=N" in again.stderr


def test_sigterm_mid_epoch_saves_and_auto_resume_finishes_identically(
    project: Path, straight_run: Path, tmp_path: Path
) -> None:
    # Verbosity 2 logs every log_step (20) batches; signal as soon as epoch 2 reaches step 20 of 57.
    process = start_project(project, *train_args(tmp_path, 4), "--set", "trainer.verbosity=2")
    wait_for_line(process, "epoch 2 step 20/")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "resume with: python train.py -r" in stderr and "Traceback" not in stderr
    [run] = run_folders(tmp_path)
    stopped = load(run / "last.pth")
    assert stopped["epoch"] == 1 and stopped["mid_epoch"]["epoch"] == 2 and stopped["mid_epoch"]["step"] >= 20

    resumed = run_project(project, *train_args(tmp_path, 4), "--set", "trainer.verbosity=2", "--resume", "auto")
    assert resumed.returncode == 0, describe(resumed)
    assert run_folders(tmp_path) == [run], "auto-resume continues the same run folder"
    assert_same_weights(run / "last.pth", straight_run / "last.pth")
    assert load(run / "epoch-4.pth")["metrics"] == load(straight_run / "epoch-4.pth")["metrics"]


def test_sigterm_to_the_whole_job_with_worker_processes_saves_mid_epoch(project: Path, tmp_path: Path) -> None:
    # scancel and a preemption signal every process of the job, DataLoader workers included.
    workers = ["--set", "data_loader.args.device_resident=false", "--set", "data_loader.args.num_workers=2"]
    process = start_project(project, *train_args(tmp_path, 1), *workers, "--set", "trainer.verbosity=2",
                            own_group=True)  # fmt: skip
    wait_for_line(process, "epoch 1 step 20/")
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM at epoch 1, step" in stderr and "Traceback" not in stderr
    [run] = run_folders(tmp_path)
    assert load(run / "last.pth")["mid_epoch"]["step"] >= 20


def test_persistent_worker_processes_end_with_the_run(project: Path, tmp_path: Path) -> None:
    # Workers ignore stop signals (the main process saves first), and exit once the run is over: the process
    # hung at exit when multiprocessing's SIGTERM to them went unheard.
    workers = ["--set", "data_loader.args.device_resident=false", "--set", "data_loader.args.num_workers=2"]
    persistent = [*workers, "--set", "data_loader.args.persistent_workers=true"]
    result = run_project(project, *train_args(tmp_path, 1), *persistent, timeout=120)
    assert result.returncode == 0, describe(result)
    [run] = run_folders(tmp_path)
    evaluated = run_project(project, "test.py", "-r", str(run), *persistent, timeout=120)
    assert evaluated.returncode == 0, describe(evaluated)


def test_ctrl_c_saves_mid_epoch_state(project: Path, tmp_path: Path) -> None:
    slow = ["--set", 'arch={"type": "SlowConvNet", "args": {"delay": 0.5, "width": 8}}']
    process = start_project(project, *train_args(tmp_path, 1), *slow, "--resume", "auto")
    wait_for_line(process, "Ctrl-C or SIGTERM")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT, stderr
    assert "stopped by SIGINT at epoch 1, step" in stderr
    [run] = run_folders(tmp_path)
    assert load(run / "last.pth")["mid_epoch"]["step"] >= 1


def test_second_signal_stops_at_once(project: Path, tmp_path: Path) -> None:
    slow = ["--set", 'arch={"type": "SlowConvNet", "args": {"delay": 2.0, "width": 8}}']
    process = start_project(project, *train_args(tmp_path, 1), *slow)
    wait_for_line(process, "Ctrl-C or SIGTERM")
    process.send_signal(signal.SIGTERM)
    wait_for_line(process, "SIGTERM received")
    process.send_signal(signal.SIGTERM)  # the step still has most of its 2 s to go
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGTERM, "the second signal ends the process without saving"
    [run] = run_folders(tmp_path)
    assert not (run / "last.pth").exists()


STALL_ON_SECOND_LAST_SAVE = """
import os, runpy, sys, time
from pathlib import Path

marker = Path(sys.argv.pop(1))
real_replace, saves = os.replace, []

def stalled_replace(src, dst):
    # The checkpoint is written to a temporary file; hang before it is renamed into place.
    if Path(dst).name == "last.pth":
        saves.append(dst)
        if len(saves) == 2:
            marker.write_text(str(src))
            time.sleep(600)
    real_replace(src, dst)

os.replace = stalled_replace
sys.path.insert(0, os.getcwd())
sys.argv[0] = "train.py"
runpy.run_path("train.py", run_name="__main__")
"""


def test_sigkill_mid_save_keeps_the_previous_checkpoint(project: Path, tmp_path: Path) -> None:
    driver, marker, save_dir = tmp_path / "driver.py", tmp_path / "stalled", tmp_path / "saved"
    driver.write_text(STALL_ON_SECOND_LAST_SAVE)
    process = start_project(project, str(driver), str(marker), *train_args(save_dir, 3)[1:])
    wait_for(marker.exists, what="the second save of last.pth to start")
    process.kill()
    process.communicate(timeout=30)
    [run] = run_folders(save_dir)
    assert list(run.glob(".last.pth.*.tmp")), "the killed save leaves only its temporary file"
    assert load(run / "last.pth")["epoch"] == 1, "last.pth is still the complete epoch-1 state"

    resumed = run_project(project, "train.py", "-r", str(run))
    assert resumed.returncode == 0, describe(resumed)
    assert "left by a run killed while saving" in resumed.stderr
    assert not list(run.glob(".*.tmp"))
    assert load(run / "last.pth")["epoch"] == 3


def test_sigkill_mid_epoch_resumes_from_the_last_epoch(project: Path, tmp_path: Path) -> None:
    process = start_project(project, *train_args(tmp_path, 3))
    # last.pth is written after epoch-1.pth: waiting for the first could kill before it (seen under load).
    wait_for(lambda: list(tmp_path.glob("*/*/last.pth")), what="epoch 1 to be saved")
    process.kill()
    process.communicate(timeout=30)
    [run] = run_folders(tmp_path)
    assert load(run / "last.pth")["epoch"] in (1, 2)
    resumed = run_project(project, "train.py", "-r", str(run / "last.pth"))
    assert resumed.returncode == 0, describe(resumed)
    assert load(run / "last.pth")["epoch"] == 3


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_last_good(project: Path, tmp_path: Path) -> None:
    # 3,600 samples in batches of 64 make 57 steps per epoch: forward pass 60 is epoch 2, step 3.
    nan_model = ["--set", 'arch={"type": "NaNOnSteps", "args": {"first": 60, "last": 10000, "width": 8}}']
    result = run_project(project, *train_args(tmp_path, 3), *nan_model)
    assert result.returncode == 1, describe(result)
    assert "error: loss became NaN or infinite at epoch 2, step 3" in result.stderr
    assert "Traceback" not in result.stderr
    [run] = run_folders(tmp_path)
    last = load(run / "last.pth")
    assert last["epoch"] == 1 and "mid_epoch" not in last
    assert all(torch.isfinite(value).all() for value in last["model"].values() if value.is_floating_point())


def test_nan_loss_can_skip_the_batch_instead(project: Path, tmp_path: Path) -> None:
    nan_model = ["--set", 'arch={"type": "NaNOnSteps", "args": {"first": 5, "last": 7, "width": 8}}']
    result = run_project(project, *train_args(tmp_path, 1), *nan_model, "--set", "trainer.nonfinite_loss=skip")
    assert result.returncode == 0, describe(result)
    assert result.stderr.count("batch skipped") == 3
    [run] = run_folders(tmp_path)
    assert load(run / "last.pth")["metrics"]["loss"] < 2.3  # finite, and it learned


def test_pickled_object_in_checkpoint_is_refused(project: Path, tmp_path: Path) -> None:
    forged = tmp_path / "forged.pth"
    torch.save({"model": {}, "config": {}, "payload": subprocess.CompletedProcess([], 0)}, forged)
    for script in ("train.py", "test.py"):
        result = run_project(project, script, "-r", str(forged))
        assert result.returncode == 2, describe(result)
        assert result.stderr.startswith(f"error: checkpoint {str(forged)!r} cannot be loaded")
        assert "Traceback" not in result.stderr


def test_checkpoint_of_another_shape_names_the_keys(project: Path, straight_run: Path, tmp_path: Path) -> None:
    evaluate = run_project(project, "test.py", "-r", str(straight_run / "last.pth"), "--set", "arch.args.width=16")
    assert evaluate.returncode == 2, describe(evaluate)
    assert "does not fit ConvNet" in evaluate.stderr
    assert "features.0.0.weight (8, 1, 3, 3) vs (16, 1, 3, 3)" in evaluate.stderr

    copy = tmp_path / "run"
    shutil.copytree(straight_run, copy)
    resume = run_project(project, "train.py", "-r", str(copy), "--set", "arch.args.width=16")
    assert resume.returncode == 2, describe(resume)
    assert resume.stderr.startswith("error: arch: cannot change when resuming")
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in straight_run.iterdir())
