"""What a resume may change and what it refuses, that nothing rewinds a run, --resume auto, and the run lock.

Every refusal exits with 2 and one ``error:`` line, prints no traceback, and leaves every file as it was.
"""

import errno
import json
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

import train
from logger.metrics_csv import read_rows
from parse_config import Config
from tests.hostile import (
    EXTRA,
    Killed,
    Result,
    assert_no_lock,
    assert_same_weights,
    assert_unchanged,
    atomic_renames,
    dead_pid,
    interrupt_on_forward,
    only_run,
    run_dirs,
    run_test,
    run_train,
    small_config,
    snapshot,
    write_config,
    write_lock,
)
from tests.tiny import TINY
from tests.tiny import data_loaders as tiny_data
from trainer.resume import refuse_fixed_changes
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.errors import UsageError

STEP_LR = {"type": "StepLR", "args": {"step_size": 1, "gamma": 0.5}}
STEPS_PER_EPOCH = 2  # 64 training samples in batches of 32 (small_config)


def scheduled_config(save_dir: Path, **trainer: Any) -> dict[str, Any]:
    config = small_config(save_dir, save_period=1, keep_last=0, **trainer)
    config["lr_scheduler"] = STEP_LR
    return config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, logging_restored_after_module: None) -> Path:
    """A run that finished its 2 epochs (Adam, lr 0.02, StepLR halving it every epoch)."""
    folder = tmp_path_factory.mktemp("finished")
    config = write_config(folder / "config.json", scheduled_config(folder / "saved", epochs=2))
    assert train.main(["-c", str(config)], modules=TINY) == 0
    return only_run(folder / "saved")


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory, logging_restored_after_module: None) -> Path:
    """A run of 2 epochs stopped by Ctrl-C during the first step of epoch 2, through the EXTRA registry."""
    folder = tmp_path_factory.mktemp("stopped")
    config = small_config(folder / "saved", epochs=2)
    config["arch"]["type"] = "InterruptingNet"
    path = write_config(folder / "config.json", config)
    with interrupt_on_forward(STEPS_PER_EPOCH + 1):
        assert train.main(["-c", str(path)], modules=EXTRA) == 128 + signal.SIGINT
    run_dir = only_run(folder / "saved")
    assert_no_lock(folder / "saved")
    assert load_checkpoint(run_dir / "last.pth", resume=True)["mid_epoch"]["step"] == 1
    return run_dir


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of ``run_dir`` (mtimes kept) for one test to resume or to fail to resume."""
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def assert_refused(result: Result, before: dict[str, tuple[int, int]], *roots: Path) -> str:
    assert result.code == 2, result.err
    line = result.error_line()
    assert_unchanged(before, snapshot(*roots))
    for root in roots:
        assert_no_lock(root)
    return line


# --- 2. what a resume changes takes effect --------------------------------------------------------------


def test_resume_overrides_of_optimizer_and_scheduler_args_take_effect(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = copy_run(finished_run, tmp_path)
    original_config = (run_dir / "config.json").read_bytes()
    result = run_train(
        capsys,
        "-r", run_dir,
        "--set", "trainer.epochs=3",
        "--lr", "0.003",
        "--set", "optimizer.args.weight_decay=0.001",
        "--set", "lr_scheduler.args.gamma=0.1",
    )  # fmt: skip
    assert result.code == 0, result.err
    # After 2 epochs StepLR had halved lr 0.02 twice; each change is logged as it is applied.
    for line in (
        "optimizer.args.lr: 0.005 -> 0.003 (override)",
        "optimizer.args.weight_decay: 0 -> 0.001 (override)",
        "lr_scheduler.args.gamma: 0.5 -> 0.1 (override)",
    ):
        assert line in result.err, result.err
        assert line in (run_dir / "train.log").read_text(encoding="utf-8"), "train.log tells what changed too"
    last = load_checkpoint(run_dir / "last.pth", resume=True)
    assert last["epoch"] == 3
    assert last["metrics"]["lr"] == 0.003, "epoch 3 trained with the new learning rate"
    for group in last["optimizer"]["param_groups"]:
        assert group["lr"] == pytest.approx(0.003 * 0.1), "then the new gamma stepped it"
        assert group["initial_lr"] == 0.003
        assert group["weight_decay"] == 0.001
    scheduler = last["lr_scheduler"]
    assert (scheduler["gamma"], scheduler["base_lrs"], scheduler["last_epoch"]) == (0.1, [0.003], 3)
    recorded = json.loads((run_dir / "config-resume-2.json").read_text(encoding="utf-8"))
    assert recorded == last["config"]
    assert recorded["optimizer"]["args"] == {"lr": 0.003, "weight_decay": 0.001}
    assert recorded["lr_scheduler"]["args"] == {"step_size": 1, "gamma": 0.1}
    assert (run_dir / "config.json").read_bytes() == original_config, "config.json stays the original"
    assert_no_lock(run_dir)


def test_data_loader_args_may_change_between_epochs(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = copy_run(finished_run, tmp_path)
    result = run_train(capsys, "-r", run_dir, "--bs", "16", "--set", "trainer.epochs=3")
    assert result.code == 0, result.err
    last = load_checkpoint(run_dir / "last.pth", resume=True)
    assert last["epoch"] == 3 and last["config"]["data_loader"]["args"]["batch_size"] == 16
    steps = {int(state["step"]) for state in last["optimizer"]["state"].values()}
    assert steps == {2 * STEPS_PER_EPOCH + 4}, "epoch 3 took 4 steps of 16"


def test_a_stopped_epoch_resumes_without_changes(
    stopped_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = copy_run(stopped_run, tmp_path)
    result = run_train(capsys, "-r", run_dir, modules=EXTRA)
    assert result.code == 0, result.err
    assert "Resumed part way through epoch 2; continuing at step 2" in result.err
    last = load_checkpoint(run_dir / "last.pth", resume=True)
    assert last["epoch"] == 2 and "mid_epoch" not in last
    assert {int(state["step"]) for state in last["optimizer"]["state"].values()} == {2 * STEPS_PER_EPOCH}
    assert_no_lock(run_dir)


# --- 3. what a resume cannot change is refused ----------------------------------------------------------

REFUSED_AT_ANY_POINT = {
    "arch.args.width": (["--set", "arch.args.width=6"], "arch:"),
    "arch.args.dropout": (["--set", "arch.args.dropout=0.5"], "arch:"),
    "arch.args.num_classes": (["--set", "arch.args.num_classes=4"], "arch:"),
    "seed": (["--set", "seed=2"], "seed:"),
    "validation_split": (["--set", "data_loader.args.validation_split=0.25"], "data_loader.args.validation_split:"),
    "data_loader.type": (["--set", "data_loader.type=TinyDatasetLoader"], "data_loader.type:"),
    "optimizer.type": (["--set", "optimizer.type=SGD"], "optimizer.type:"),
    "lr_scheduler.type": (
        ["--set", 'lr_scheduler={"type": "ExponentialLR", "args": {"gamma": 0.5}}'],
        "lr_scheduler.type:",
    ),
}


@pytest.mark.parametrize(("args", "key"), REFUSED_AT_ANY_POINT.values(), ids=list(REFUSED_AT_ANY_POINT))
def test_resume_refuses_to_change(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], key: str
) -> None:
    run_dir = copy_run(finished_run, tmp_path)
    before = snapshot(tmp_path)
    line = assert_refused(run_train(capsys, "-r", run_dir, "--set", "trainer.epochs=3", *args), before, tmp_path)
    assert line.startswith(f"error: {key} cannot change when resuming"), line


def test_resume_refuses_a_config_file_that_changes_the_seed(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = copy_run(finished_run, tmp_path)
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    path = write_config(tmp_path / "other.json", {**config, "seed": 3})
    before = snapshot(tmp_path)
    line = assert_refused(run_train(capsys, "-r", run_dir, "-c", path), before, tmp_path)
    assert line.startswith("error: seed: cannot change when resuming"), line


REFUSED_PART_WAY_THROUGH_AN_EPOCH = {
    "batch_size": (["--bs", "16"], "data_loader.args.batch_size:"),
    "augment": (["--set", "data_loader.args.augment=false"], "data_loader.args.augment:"),
    "metrics": (["--set", 'metrics=["accuracy", "error_rate"]'], "metrics:"),
    "loss": (["--set", "loss=smoothed_cross_entropy"], "loss:"),
    "grad_accum_steps": (["--set", "trainer.grad_accum_steps=2"], "trainer.grad_accum_steps:"),
}


@pytest.mark.parametrize(
    ("args", "key"), REFUSED_PART_WAY_THROUGH_AN_EPOCH.values(), ids=list(REFUSED_PART_WAY_THROUGH_AN_EPOCH)
)
def test_resume_part_way_through_an_epoch_refuses_to_change(
    stopped_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], key: str
) -> None:
    run_dir = copy_run(stopped_run, tmp_path)
    before = snapshot(tmp_path)
    line = assert_refused(run_train(capsys, "-r", run_dir, *args, modules=EXTRA), before, tmp_path)
    assert line.startswith(f"error: {key} cannot change part way through epoch 2"), line


@pytest.mark.parametrize(
    ("schedule", "advice"),
    [
        ({"type": "StepLR", "args": {"step_size": 1}}, "with --set trainer.epochs=2), then with the change"),
        ({"type": "OneCycleLR", "args": {}}, "finish the run without the change (its schedule fixes trainer.epochs)"),
    ],
    ids=["per-epoch", "per-step-over-the-run"],
)
def test_the_advice_for_a_change_part_way_through_an_epoch_is_one_that_works(
    tmp_path: Path, schedule: dict[str, Any], advice: str
) -> None:
    """Stopping after the epoch (--set trainer.epochs) is refused where the schedule is laid out over the run."""
    recorded = small_config(tmp_path, epochs=3)
    recorded["lr_scheduler"] = schedule
    changed = json.loads(json.dumps(recorded))
    changed["data_loader"]["args"]["augment"] = False
    with pytest.raises(UsageError, match="data_loader.args.augment: cannot change part way through epoch 2") as err:
        refuse_fixed_changes(Config.from_dict(recorded), Config.from_dict(changed), {"epoch": 2, "step": 1})
    assert advice in str(err.value)


def test_resume_part_way_through_an_epoch_refuses_fixed_keys_too(
    stopped_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = copy_run(stopped_run, tmp_path)
    before = snapshot(tmp_path)
    line = assert_refused(run_train(capsys, "-r", run_dir, "--set", "seed=5", modules=EXTRA), before, tmp_path)
    assert line.startswith("error: seed: cannot change when resuming"), line


def trained_with_processes(run_dir: Path, processes: int) -> None:
    """Make the run's last.pth say that it was trained with ``processes`` processes (under torchrun)."""
    state = load_checkpoint(run_dir / "last.pth", resume=True)
    save_checkpoint({**state, "world_size": processes}, run_dir / "last.pth")


def test_a_run_from_another_number_of_processes_resumes_between_epochs(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its per-epoch schedule does not depend on the steps each process takes."""
    run_dir = copy_run(finished_run, tmp_path)
    trained_with_processes(run_dir, 2)
    resumed = run_train(capsys, "-r", run_dir, "--set", "trainer.epochs=3")
    assert resumed.code == 0 and "continuing at epoch 3" in resumed.err, resumed.err
    assert load_checkpoint(run_dir / "last.pth", resume=True)["world_size"] == 1


def test_a_run_stopped_part_way_refuses_another_number_of_processes(
    stopped_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Epoch 2's batches were laid out for two processes: its step 1 is not this run's step 1."""
    run_dir = copy_run(stopped_run, tmp_path)
    trained_with_processes(run_dir, 2)
    before = snapshot(tmp_path)
    line = assert_refused(run_train(capsys, "-r", run_dir, modules=EXTRA), before, tmp_path)
    assert line == (
        "error: torchrun --nproc_per_node: the checkpoint was trained with 2 processes, this run has 1, and it "
        "stopped part way through epoch 2; resume with --nproc_per_node=2 to finish it"
    )


def test_a_per_step_schedule_refuses_another_number_of_processes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """OneCycleLR was laid out over 2 processes' steps; in one process an epoch has twice as many."""
    config = small_config(tmp_path / "saved", epochs=1)
    config["lr_scheduler"] = {"type": "OneCycleLR", "args": {}}
    assert run_train(capsys, "-c", write_config(tmp_path / "config.json", config)).code == 0
    run_dir = only_run(tmp_path / "saved")
    trained_with_processes(run_dir, 2)
    before = snapshot(tmp_path)
    line = assert_refused(run_train(capsys, "-r", run_dir, "--set", "trainer.log_step=1"), before, tmp_path)
    assert line.startswith("error: torchrun --nproc_per_node: the checkpoint was trained with 2 processes"), line
    assert "stepped per optimizer step over the run's length; resume with --nproc_per_node=2" in line


def test_a_run_stopped_part_way_is_evaluated_as_what_it_holds(
    stopped_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its weights are from epoch 2, step 1, not from the end of epoch 1."""
    run_dir = copy_run(stopped_run, tmp_path)
    result = run_test(capsys, "-r", run_dir / "last.pth", modules=EXTRA)
    assert result.code == 0, result.err
    assert "(epoch 2, step 1 (stopped part way)) on the test split" in result.err
    report = json.loads((run_dir / "last.test.json").read_text(encoding="utf-8"))
    assert report["epoch"] == 1 and report["mid_epoch"] == {"epoch": 2, "step": 1}


# --- 3b. what a resume cannot see in the config: the data itself --------------------------------------

ADDED_SAMPLES = 40  # 80 -> 120 samples: 96 to train on (3 steps of 32 instead of 2) and 24 to validate on


@pytest.fixture
def samples_added(monkeypatch: pytest.MonkeyPatch) -> None:
    """The training split's files gain ADDED_SAMPLES samples, as when images are added to data/images/train/: the
    config stays the same, so no config key tells a resume that the data changed."""
    striped_images = tiny_data.striped_images
    grown = {0: ADDED_SAMPLES}  # the training split's seed; the test split (seed 1) stays as it was
    monkeypatch.setattr(tiny_data, "striped_images", lambda n, seed: striped_images(n + grown.get(seed, 0), seed))


def test_a_per_step_schedule_refuses_a_resume_after_the_data_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    """OneCycleLR was laid out over 2 epochs of 2 steps; with 3 steps an epoch it would be stepped past its end
    after a whole epoch of training (ValueError: Tried to step 5 times). Refused before anything is written,
    whether the files gained samples or a loader argument asks for more."""
    config = scheduled_config(tmp_path / "saved", epochs=2)
    config["lr_scheduler"] = {"type": "OneCycleLR", "args": {}}
    assert run_train(capsys, "-c", write_config(tmp_path / "config.json", config)).code == 0
    run_dir = only_run(tmp_path / "saved")
    before = snapshot(tmp_path)
    more = ["--set", f"data_loader.args.n_train={80 + ADDED_SAMPLES}"]
    line = assert_refused(run_train(capsys, "-r", run_dir / "epoch-1.pth", *more), before, tmp_path)
    request.getfixturevalue("samples_added")
    assert assert_refused(run_train(capsys, "-r", run_dir / "epoch-1.pth"), before, tmp_path) == line
    assert line == (
        "error: data_loader: the training split has 96 samples (the checkpoint's had 64), the validation split has "
        "24 samples (the checkpoint's had 16), so an epoch has 3 optimizer steps (the checkpoint's had 2), and the "
        "lr_scheduler is stepped per optimizer step over the run's length; start a new run with -c and --init-from "
        "CHECKPOINT instead"
    )
    assert run_dirs(tmp_path / "saved") == [run_dir], "no run folder was started"
    dropped = run_train(capsys, "-r", run_dir / "epoch-1.pth", "--set", "lr_scheduler=null")
    assert dropped.code == 0 and "The training data changed" in dropped.err, "without the schedule nothing outruns"


def test_a_per_epoch_schedule_resumes_after_the_data_changed_with_a_warning(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], samples_added: None
) -> None:
    run_dir = copy_run(finished_run, tmp_path)
    assert load_checkpoint(run_dir / "last.pth", resume=True)["data_layout"] == {
        "train_samples": 64, "valid_samples": 16, "steps_per_epoch": STEPS_PER_EPOCH,
    }  # fmt: skip
    result = run_train(capsys, "-r", run_dir, "--set", "trainer.epochs=3")
    assert result.code == 0, result.err
    warning = (
        "The training data changed since the checkpoint: the training split has 96 samples (the checkpoint's had 64), "
        "the validation split has 24 samples (the checkpoint's had 16); the train/validation split "
        "(data_loader.args.validation_split) is drawn anew over 120 samples, so samples validated on before may now "
        "be trained on"
    )
    assert warning in result.err
    assert warning in (run_dir / "train.log").read_text(encoding="utf-8"), "train.log tells it too"
    last = load_checkpoint(run_dir / "last.pth", resume=True)
    assert last["epoch"] == 3
    assert last["data_layout"] == {"train_samples": 96, "valid_samples": 24, "steps_per_epoch": 3}
    assert {int(state["step"]) for state in last["optimizer"]["state"].values()} == {2 * STEPS_PER_EPOCH + 3}


def test_a_checkpoint_from_before_the_data_was_recorded_still_resumes(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], samples_added: None
) -> None:
    """A checkpoint without data_layout says nothing of the data it was trained on: no check, no warning."""
    run_dir = copy_run(finished_run, tmp_path)
    state = load_checkpoint(run_dir / "last.pth", resume=True)
    del state["data_layout"]
    save_checkpoint(state, run_dir / "last.pth")
    result = run_train(capsys, "-r", run_dir, "--set", "trainer.epochs=3")
    assert result.code == 0, result.err
    assert "continuing at epoch 3" in result.err and "The training data changed" not in result.err
    assert load_checkpoint(run_dir / "last.pth", resume=True)["data_layout"]["train_samples"] == 96


def test_a_run_stopped_part_way_refuses_changed_data(
    stopped_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], samples_added: None
) -> None:
    """Epoch 2's order is a permutation of 64 samples: with 96, its first step would not be the one taken."""
    run_dir = copy_run(stopped_run, tmp_path)
    before = snapshot(tmp_path)
    line = assert_refused(run_train(capsys, "-r", run_dir, modules=EXTRA), before, tmp_path)
    assert line.startswith(
        "error: data_loader: the training split has 96 samples (the checkpoint's had 64), the validation split has "
        "24 samples (the checkpoint's had 16), so epoch 2, stopped part way, gets other batches; resume with the "
        "checkpoint's data first to finish that epoch (with --set trainer.epochs=2), then with the change"
    ), line


# --- 4. nothing rewinds a run ---------------------------------------------------------------------------


def train_three_epochs(folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    config = write_config(folder / "config.json", small_config(folder / "saved", epochs=3, save_period=1, keep_last=0))
    assert run_train(capsys, "-c", config).code == 0
    return config, only_run(folder / "saved")


def test_resuming_an_older_checkpoint_starts_a_new_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, old_run = train_three_epochs(tmp_path, capsys)
    before = snapshot(old_run)
    result = run_train(capsys, "-r", old_run / "epoch-1.pth")
    assert result.code == 0, result.err
    assert_unchanged(before, snapshot(old_run))  # last.pth (epoch 3), best.pth and the rest untouched
    assert load_checkpoint(old_run / "last.pth")["epoch"] == 3
    old, new = run_dirs(tmp_path / "saved")
    assert old == old_run
    origin = json.loads((new / "origin.json").read_text(encoding="utf-8"))
    assert origin == {"from": str(old_run / "epoch-1.pth"), "epoch": 1, "weights_only": False}
    last = load_checkpoint(new / "last.pth", resume=True)
    assert last["epoch"] == 3 and sorted(path.name for path in new.glob("epoch-*.pth")) == [
        "epoch-2.pth",
        "epoch-3.pth",
    ]
    # Epochs 2 and 3 again from the same state: the same weights as the first time.
    assert_same_weights(last["model"], load_checkpoint(old_run / "last.pth")["model"], "replayed last.pth")
    # metrics.csv carries the epochs up to the checkpoint over, then one row per epoch trained here.
    old_rows, new_rows = (read_rows(run / "metrics.csv") for run in (old_run, new))
    assert sorted(new_rows) == [1, 2, 3] and new_rows[1] == old_rows[1]
    assert_no_lock(tmp_path / "saved")


def test_init_from_starts_a_new_run_with_only_the_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, old_run = train_three_epochs(tmp_path, capsys)
    before = snapshot(old_run)
    config = write_config(tmp_path / "next.json", small_config(tmp_path / "saved", epochs=1))
    result = run_train(capsys, "-c", config, "--init-from", old_run / "last.pth")
    assert result.code == 0, result.err
    assert f"Starting from the weights of {old_run / 'last.pth'} (epoch 3)" in result.err
    assert_unchanged(before, snapshot(old_run))
    old, new = run_dirs(tmp_path / "saved")
    assert old == old_run
    origin = json.loads((new / "origin.json").read_text(encoding="utf-8"))
    assert origin == {"from": str(old_run / "last.pth"), "epoch": 3, "weights_only": True}
    last = load_checkpoint(new / "last.pth", resume=True)
    assert last["epoch"] == 1
    old_steps = {int(state["step"]) for state in load_checkpoint(old_run / "last.pth")["optimizer"]["state"].values()}
    new_steps = {int(state["step"]) for state in last["optimizer"]["state"].values()}
    assert (old_steps, new_steps) == ({3 * STEPS_PER_EPOCH}, {STEPS_PER_EPOCH}), "a fresh optimizer"
    assert load_checkpoint(new / "best.pth")["epoch"] == 1, "a fresh monitor"
    assert_no_lock(tmp_path / "saved")


# --- 5. --resume auto -----------------------------------------------------------------------------------


def test_resume_auto_with_other_settings_starts_a_new_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = small_config(tmp_path / "saved", epochs=1)
    path = write_config(tmp_path / "config.json", config)
    assert run_train(capsys, "-c", path, "--resume", "auto").code == 0
    first = only_run(tmp_path / "saved")
    before = snapshot(first)
    config["optimizer"]["args"]["lr"] = 0.05
    write_config(path, config)
    result = run_train(capsys, "-c", path, "--resume", "auto")
    assert result.code == 0, result.err
    assert re.search(
        rf"{re.escape(str(first))} ran with other settings \(optimizer\.args\.lr\); starting a new run", result.err
    )
    assert_unchanged(before, snapshot(first))
    old, new = run_dirs(tmp_path / "saved")
    assert old == first and load_checkpoint(new / "last.pth")["config"]["optimizer"]["args"]["lr"] == 0.05
    assert not (new / "origin.json").exists()


@pytest.mark.parametrize(
    "spelt_out",
    [{}, {"prefetch_factor": 2, "persistent_workers": False}],  # a template update adds keys at their defaults
    ids=["same-file", "loader-defaults-spelt-out"],
)
def test_resume_auto_with_the_same_config_continues_the_same_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spelt_out: dict[str, Any]
) -> None:
    config = small_config(tmp_path / "saved", epochs=2)
    config["arch"]["type"] = "InterruptingNet"
    path = write_config(tmp_path / "config.json", config)
    with interrupt_on_forward(STEPS_PER_EPOCH + 1):
        assert run_train(capsys, "-c", path, "--resume", "auto", modules=EXTRA).code == 128 + signal.SIGINT
    stopped = only_run(tmp_path / "saved")
    config["data_loader"]["args"].update(spelt_out)
    write_config(path, config)
    result = run_train(capsys, "-c", path, "--resume", "auto", modules=EXTRA)
    assert result.code == 0, result.err
    assert "Resumed part way through epoch 2" in result.err
    assert only_run(tmp_path / "saved") == stopped
    last = load_checkpoint(stopped / "last.pth", resume=True)
    assert last["epoch"] == 2 and "mid_epoch" not in last
    assert_no_lock(tmp_path / "saved")


# --- 6. the run lock ------------------------------------------------------------------------------------


def test_a_live_lock_refuses_the_resume(finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = copy_run(finished_run, tmp_path)
    write_lock(run_dir, os.getpid())
    before = snapshot(tmp_path)
    result = run_train(capsys, "-r", run_dir, "--set", "trainer.epochs=3")
    assert result.code == 2
    line = result.error_line()
    assert f"is in use by process {os.getpid()} on " in line, line
    assert_unchanged(before, snapshot(tmp_path))  # the lock itself included


def test_resume_auto_respects_a_live_lock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path / "config.json", small_config(tmp_path / "saved", epochs=1))
    assert run_train(capsys, "-c", path).code == 0
    write_lock(only_run(tmp_path / "saved"), os.getpid())
    before = snapshot(tmp_path)
    result = run_train(capsys, "-c", path, "--resume", "auto")
    assert result.code == 2
    assert f"process {os.getpid()}" in result.error_line()
    assert_unchanged(before, snapshot(tmp_path))


def test_a_lock_held_on_another_host_is_trusted(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = copy_run(finished_run, tmp_path)
    write_lock(run_dir, 4242, host="elsewhere.example")
    before = snapshot(tmp_path)
    result = run_train(capsys, "-r", run_dir, "--set", "trainer.epochs=3")
    assert result.code == 2
    assert "in use by process 4242 on elsewhere.example" in result.error_line()
    assert_unchanged(before, snapshot(tmp_path))


@pytest.mark.parametrize("content", ["dead", "garbage"])
def test_a_lock_left_by_a_dead_process_is_taken_over(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    run_dir = copy_run(finished_run, tmp_path)
    if content == "dead":
        pid = dead_pid()
        write_lock(run_dir, pid)
    else:
        pid = -1
        (run_dir / "run.lock").write_text("{half a lock", encoding="utf-8")
    result = run_train(capsys, "-r", run_dir, "--set", "trainer.epochs=3")
    assert result.code == 0, result.err
    assert f"Taking over {run_dir / 'run.lock'}, left by process {pid} that is no longer running" in result.err
    assert load_checkpoint(run_dir / "last.pth")["epoch"] == 3
    assert not (run_dir / "run.lock").exists()


def test_no_lock_is_left_when_training_dies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path / "config.json", small_config(tmp_path / "saved", epochs=1))
    with atomic_renames(kill_at=3), pytest.raises(Killed):  # config.json, best.pth, then epoch-1.pth
        run_train(capsys, "-c", path)
    assert_no_lock(tmp_path / "saved")


def test_a_failure_while_creating_the_run_folder_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path / "config.json", small_config(tmp_path / "saved", epochs=1))
    with atomic_renames(kill_at=1, error=OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))):
        result = run_train(capsys, "-c", path)
    assert result.code == 2
    assert "config.json" in result.error_line() and "No space left on device" in result.error_line()
    assert_no_lock(tmp_path / "saved")
    assert run_dirs(tmp_path / "saved") == [], "an empty run folder was left behind"


EXTEND = "raise the total with --set trainer.epochs=N to train further"
NEW_RUN = "start a new run from its weights with --init-from CHECKPOINT"


@pytest.mark.parametrize(
    ("schedule", "advice"),
    [
        (STEP_LR, EXTEND),
        ({"type": "CosineAnnealingLR", "args": {"T_max": 4}}, EXTEND),
        ({"type": "CosineAnnealingLR", "args": {}}, NEW_RUN),  # T_max was filled in from trainer.epochs
        ({"type": "OneCycleLR", "args": {}, "interval": "epoch"}, NEW_RUN),  # total_steps too
        ({"type": "OneCycleLR", "args": {}}, NEW_RUN),
    ],
    ids=["per-epoch", "cosine-given-length", "cosine-filled-in-length", "one-cycle-per-epoch", "per-step"],
)
def test_resuming_a_finished_run_says_how_to_train_further(
    schedule: dict[str, Any], advice: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = small_config(tmp_path / "saved", epochs=1)
    config["lr_scheduler"] = schedule
    path = write_config(tmp_path / "config.json", config)
    assert run_train(capsys, "-c", path).code == 0
    before = snapshot(tmp_path)
    again = run_train(capsys, "-r", only_run(tmp_path / "saved"))
    assert again.code == 0 and "Nothing to do: the checkpoint finished epoch 1 of 1" in again.err
    assert advice in again.err
    assert_unchanged(before, snapshot(tmp_path))
    longer = run_train(capsys, "-r", only_run(tmp_path / "saved"), "--set", "trainer.epochs=2")
    if advice == EXTEND:
        assert longer.code == 0 and "continuing at epoch 2" in longer.err, longer.err
    else:  # growing the run is refused, with the same advice
        assert longer.code == 2 and "--init-from CHECKPOINT" in longer.error_line()


def test_one_cycle_total_steps_cannot_change_when_resuming(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """OneCycleLR lays out its phases when built: a new total_steps would leave them where they were."""
    config = small_config(tmp_path / "saved", epochs=1)
    config["lr_scheduler"] = {"type": "OneCycleLR", "args": {}}
    assert run_train(capsys, "-c", write_config(tmp_path / "config.json", config)).code == 0
    before = snapshot(tmp_path)
    refused = run_train(capsys, "-r", only_run(tmp_path / "saved"), "--set", "lr_scheduler.args.total_steps=50")
    line = assert_refused(refused, before, tmp_path)
    assert line.startswith("error: lr_scheduler.args.total_steps: cannot change when resuming"), line


@pytest.mark.parametrize(
    ("checkpoint", "settings"),
    [("best.pth", []), ("epoch-2.pth", []), ("", ["--set", "data_loader.args.shuffle=false"])],
    ids=["best.pth", "epoch-2.pth", "run-folder-with-a-setting"],
)
def test_a_finished_run_resumed_from_any_of_its_checkpoints_writes_nothing(
    checkpoint: str, settings: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing trains, so nothing is written: no new run folder for a checkpoint older than last.pth (which a
    resume that trained would need), and no config-resume record of settings that never ran."""
    path = write_config(tmp_path / "config.json", small_config(tmp_path / "saved", epochs=2, save_period=1))
    assert run_train(capsys, "-c", path).code == 0
    run = only_run(tmp_path / "saved")
    before = snapshot(tmp_path)
    again = run_train(capsys, "-r", run / checkpoint, *settings)
    assert again.code == 0 and "Nothing to do: the checkpoint finished epoch 2 of 2" in again.err, again.err
    assert f"Evaluate with: python test.py -r {run}" in again.err
    assert_unchanged(before, snapshot(tmp_path))


def test_a_scheduler_setting_used_only_when_built_is_refused_on_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = small_config(tmp_path / "saved", epochs=2)
    config["lr_scheduler"] = {"type": "OneCycleLR", "args": {"max_lr": 0.05}}
    assert run_train(capsys, "-c", write_config(tmp_path / "config.json", config)).code == 0
    before = snapshot(tmp_path)
    result = run_train(capsys, "-r", only_run(tmp_path / "saved"), "--set", "lr_scheduler.args.max_lr=0.1")
    assert result.code == 2 and result.error_line() == (
        "error: lr_scheduler.args.max_lr: OneCycleLR keeps no such setting to change (it used it when built); "
        "start a new run with -c and --init-from CHECKPOINT instead"
    )
    assert_unchanged(before, snapshot(tmp_path))
