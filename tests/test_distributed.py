"""torchrun on the CPU (gloo): two processes train one run, agree with one process, stop and resume."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import describe, run_folders, run_project, start_project, wait_for, wait_for_line

TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
QUICK = ["-d", "cpu", "--set", "arch.args.width=8", "--set", 'trainer.loggers=["csv"]']


def save_to(path: Path) -> list[str]:
    return ["--set", f"trainer.save_dir={json.dumps(str(path))}"]


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


# Prints a checkpoint's loss and metrics on the validation split, evaluated by one process.
VALIDATE_ALONE = """
import json, sys
from pathlib import Path
from inference.trained import load_trained_model
from train import PROJECT_MODULES
from trainer.build import build_loss_and_metrics, trainer_class_named
trained = load_trained_model(Path(sys.argv[1]), [], PROJECT_MODULES)
_, valid_loader = trained.data.train_loaders(trained.device)
criterion, metrics = build_loss_and_metrics(trained.config, PROJECT_MODULES)
trainer_class = trainer_class_named(trained.config, PROJECT_MODULES)
evaluator = trainer_class.for_evaluation(criterion, metrics, trained.config.trainer, trained.device)
print(json.dumps(evaluator.evaluate(trained.model, valid_loader)))
"""


def test_two_processes_train_one_run_that_loads_anywhere(default_project: Path, tmp_path: Path) -> None:
    epochs = ["--set", "trainer.epochs=2"]
    result = run_project(default_project, *TORCHRUN, "train.py", *QUICK, *epochs, *save_to(tmp_path))
    assert result.returncode == 0, describe(result)
    assert "Distributed: world size 2, backend gloo" in result.stderr
    [run] = run_folders(tmp_path)  # exactly one run folder, written by rank 0
    assert sorted(p.name for p in run.iterdir()) == ["best.pth", "config.json", "last.pth", "metrics.csv", "train.log"]
    assert result.stderr.count("epoch 2/2") == 1, "only rank 0 reports epochs"
    last = load(run / "last.pth")
    assert not any(key.startswith("module.") for key in last["model"])
    # The val_ numbers it logged are those of the model it saved: every process validated with rank 0's
    # BatchNorm statistics (each had updated its own in its last step).
    alone = run_project(default_project, "-c", VALIDATE_ALONE, str(run / "last.pth"))
    assert alone.returncode == 0, describe(alone)
    for name, value in json.loads(alone.stdout).items():
        assert last["metrics"][f"val_{name}"] == pytest.approx(value, abs=1e-6), name
    evaluate = run_project(default_project, "test.py", "-r", str(run), "-d", "cpu")
    assert evaluate.returncode == 0, describe(evaluate)
    assert json.loads((run / "best.test.json").read_text())["samples"] == 1000
    alone = json.loads((run / "best.test.json").read_text())

    # test.py under torchrun shares the test split out and reports it once, with the same numbers.
    shared = run_project(default_project, *TORCHRUN, "test.py", "-r", str(run), "-d", "cpu")
    assert shared.returncode == 0, describe(shared)
    assert shared.stdout.count("test_accuracy") == 1 and shared.stderr.count("best.test.json") == 1, describe(shared)
    together = json.loads((run / "best.test.json").read_text())
    assert together["class_report"]["confusion_matrix"] == alone["class_report"]["confusion_matrix"]
    assert together["test_accuracy"] == pytest.approx(alone["test_accuracy"])

    # Its one-cycle schedule was laid out over two processes' steps: one process is refused, in one line.
    resumed = run_project(default_project, "train.py", "-r", str(run), "-d", "cpu")
    assert resumed.returncode == 2, describe(resumed)
    assert resumed.stderr.startswith(
        "error: torchrun --nproc_per_node: the checkpoint was trained with 2 processes, this run has 1"
    ), describe(resumed)


def test_one_process_under_torchrun_still_joins_a_process_group(default_project: Path, tmp_path: Path) -> None:
    single = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    result = run_project(default_project, *single, "train.py", *QUICK, "--set", "trainer.epochs=1", *save_to(tmp_path))
    assert result.returncode == 0, describe(result)
    assert "Distributed: world size 1, backend gloo" in result.stderr
    [run] = run_folders(tmp_path)
    assert load(run / "last.pth")["epoch"] == 1


def test_unshuffled_processes_get_equal_shares_of_an_odd_count(default_project: Path, tmp_path: Path) -> None:
    """7,001 training samples in batches of 50: unpadded, one process would have a 71st batch and wait
    forever in its gradient all-reduce (as it did when only shuffled loaders were padded)."""
    unshuffled = ["--set", "data_loader.args.shuffle=false", "--set", "data_loader.args.validation_split=2999"]
    args = [*QUICK, *unshuffled, "--set", "trainer.epochs=1", "--bs", "50", *save_to(tmp_path)]
    result = run_project(default_project, *TORCHRUN, "train.py", *args, timeout=240)
    assert result.returncode == 0, describe(result)
    [run] = run_folders(tmp_path)
    assert load(run / "last.pth")["epoch"] == 1


def test_two_processes_match_one_with_the_same_global_batch(default_project: Path, tmp_path: Path) -> None:
    # No batch norm, dropout, augmentation or shuffling: then only the summation order differs.
    same = [
        *QUICK, "--set", "arch.args.batch_norm=false", "--set", "arch.args.dropout=0",
        "--set", "data_loader.args.augment=false", "--set", "data_loader.args.shuffle=false",
        "--set", "data_loader.args.validation_split=3000", "--set", 'optimizer={"type": "SGD", "args": {"lr": 0.05}}',
        "--set", "lr_scheduler=null", "--set", "trainer.epochs=1",
    ]  # fmt: skip
    one = run_project(default_project, "train.py", *same, "--bs", "100", *save_to(tmp_path / "one"))
    two = run_project(default_project, *TORCHRUN, "train.py", *same, "--bs", "50", *save_to(tmp_path / "two"))
    assert one.returncode == 0, describe(one)
    assert two.returncode == 0, describe(two)
    [run_one], [run_two] = run_folders(tmp_path / "one"), run_folders(tmp_path / "two")
    single, double = load(run_one / "last.pth"), load(run_two / "last.pth")
    for key, value in single["model"].items():
        torch.testing.assert_close(double["model"][key], value, rtol=0, atol=1e-5, msg=key)
    for metric in ("val_loss", "val_accuracy", "loss"):
        assert double["metrics"][metric] == pytest.approx(single["metrics"][metric], abs=1e-5), metric


def test_sigterm_to_the_torchrun_group_saves_once_and_resumes(default_project: Path, tmp_path: Path) -> None:
    settings = ["--set", "trainer.epochs=3", "--set", "trainer.log_step=5"]
    command = [sys.executable, *TORCHRUN, "train.py", *QUICK, *settings]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [*command, *save_to(tmp_path)], cwd=default_project, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: list(tmp_path.glob("*/*/last.pth")), what="epoch 1 to be saved")
    os.killpg(process.pid, signal.SIGTERM)  # what scancel or a preemption does: every process gets it
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0, stderr
    assert "stopped by SIGTERM" in stderr and "resume with: torchrun --nproc_per_node=2 train.py -r" in stderr
    [run] = run_folders(tmp_path)
    stopped = load(run / "last.pth")
    assert stopped["epoch"] >= 1 and not list(run.glob(".*.tmp"))

    # A requeued job runs the same command again; --resume auto continues only a run of the same config.
    resumed = run_project(
        default_project, *TORCHRUN, "train.py", *QUICK, *settings, "--resume", "auto", *save_to(tmp_path)
    )
    assert resumed.returncode == 0, describe(resumed)
    assert run_folders(tmp_path) == [run]
    assert "Resumed" in resumed.stderr
    assert load(run / "last.pth")["epoch"] == 3


def test_sigterm_between_log_steps_stops_slow_steps_before_torchrun_kills(project: Path, tmp_path: Path) -> None:
    """Steps of 0.25 s and no log step in the epoch (225 steps): a stop voted on at log steps only would come
    at the epoch's end, about a minute after the SIGTERM, and torchrun SIGKILLs its processes 30 s after passing
    it on. They also vote every VOTE_SECONDS (5 s) of the slowest one's steps (utils/signals.py): here about 5 s
    after the SIGTERM; 30 s and a SIGKILL with votes at log steps only."""
    slow = ["--set", "arch.type=SlowWhileAsked", "--bs", "8", "--set", "trainer.log_step=1000"]
    args = ["train.py", *QUICK, *slow, "--set", "trainer.epochs=1", *save_to(tmp_path)]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SLOW_STEP_SECONDS", "0.25")  # read by both processes torchrun starts
        process = start_project(project, *TORCHRUN, *args, own_group=True)
    try:
        wait_for_line(process, "Training epoch 1")  # the stop handlers are in place
        time.sleep(2)  # a few steps in
        os.killpg(process.pid, signal.SIGTERM)  # what scancel or a preemption does: every process gets it
        signalled = time.monotonic()
        _, stderr = process.communicate(timeout=90)
        stopped_after = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode != 0, stderr
    assert stopped_after < 20, f"stopped {stopped_after:.1f} s after the SIGTERM; torchrun kills at 30 s\n{stderr}"
    # Each process says where it stopped (rank 1's lines are marked): at the same step, well before the end.
    said = re.findall(
        r"stopped by SIGTERM at epoch 1, step (\d+); resume with: torchrun --nproc_per_node=2 train.py -r", stderr
    )
    assert len(said) == 2 and said[0] == said[1], stderr
    [run] = run_folders(tmp_path)
    point = load(run / "last.pth")["mid_epoch"]
    assert point["epoch"] == 1 and point["step"] == int(said[0]) < 225 and not list(run.glob(".*.tmp"))

    # The rest of the epoch, at full speed (the same config: SLOW_STEP_SECONDS is not set now).
    resumed = run_project(project, *TORCHRUN, "train.py", "-r", str(run), timeout=120)
    assert resumed.returncode == 0, describe(resumed)
    assert f"Resumed part way through epoch 1; continuing at step {point['step'] + 1}" in resumed.stderr
    finished = load(run / "last.pth")
    assert finished["epoch"] == 1 and "mid_epoch" not in finished


def test_sync_batchnorm_on_the_cpu_is_one_line_per_process(default_project: Path, tmp_path: Path) -> None:
    args = [*QUICK, "--set", "trainer.sync_batchnorm=true", "--set", "trainer.epochs=1", *save_to(tmp_path)]
    result = run_project(default_project, *TORCHRUN, "train.py", *args, timeout=240)
    assert result.returncode != 0
    # Each process says it once; their writes to the shared pipe may land on one line.
    said = "error: trainer.sync_batchnorm: SyncBatchNorm needs CUDA; set it to false on the CPU"
    assert result.stderr.count(said) == 2, result.stderr
    assert "ValueError" not in result.stderr and not run_folders(tmp_path)


def test_a_tracker_refused_on_rank_0_stops_every_process_in_one_line(all_parts_project: Path, tmp_path: Path) -> None:
    """Only rank 0 opens the trackers. When MLflow's server cannot be reached there, rank 1 must stop too, with
    the same line, instead of waiting for rank 0 in the first collective of the run."""
    unreachable = ["--set", 'trainer.loggers=["csv", "mlflow"]', "--set", 'trainer.tracking_uri="http://127.0.0.1:9"']
    command = [sys.executable, *TORCHRUN, "train.py", *QUICK, *unreachable, "--set", "trainer.epochs=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*command, *save_to(tmp_path)], cwd=all_parts_project, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, stderr = process.communicate(timeout=90)  # about 7 s here; a process left in a collective waits 30 min
    finally:
        if process.poll() is None:  # kill what hangs, and every process it started, before failing
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode != 0, stderr  # torchrun's own: 1 once a process fails
    said = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(said) == 2 and said[0] == said[1], stderr  # one line per process, the same
    assert said[0].startswith("error: trainer.loggers: 'mlflow' could not start (") and "Connection refused" in said[0]
    assert said[0].endswith("""or run without it: --set trainer.loggers='["csv"]'"""), said[0]
    # The first process to end ended with the refusal's exit code; torchrun then stops the other with a SIGTERM
    # (-15) if it has not exited yet (rank 0, which imported MLflow, is often still shutting down).
    [first] = re.findall(r"Root Cause.*?exitcode\s*:\s*(-?\d+)", stderr, re.DOTALL)
    assert first == "2", stderr
    assert set(re.findall(r"exitcode\s*:\s*(-?\d+)", stderr)) <= {"2", "-15"}, stderr
    # No traceback from train.py: the only frames printed are torchrun's, for its ChildFailedError summary.
    frames = [line for line in stderr.splitlines() if line.lstrip().startswith('File "')]
    assert all("torch/distributed" in frame or "<frozen runpy>" in frame for frame in frames), stderr
    assert "UsageError" not in stderr and not run_folders(tmp_path)
