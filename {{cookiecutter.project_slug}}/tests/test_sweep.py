"""sweep.py on the tiny setup: parallel workers on the journal file, pruning through the early-stop path,
best-config.json, continuing a stopped sweep, a database URL, bad sweep files refused before any trial, and a
trial refused for its values (the sweep ends) told from one failed by its environment (the sweep continues)."""

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import sweep
import train
from tests.hostile import (
    EXTRA,
    Result,
    dead_pid,
    hide_package,
    interrupt_on_forward,
    run_dirs,
    run_main,
    small_config,
    write_config,
)
from tests.tiny import TINY
from utils.errors import UsageError
from utils.registry import Registry

optuna = pytest.importorskip("optuna")

# lr 0 cannot learn: with this seed each worker samples 0.05, 0, 0.05, so every lr-0 trial starts after a
# trial that learned has finished, and the median pruner stops it after its first epoch.
LEARNS_OR_NOT = {"type": "categorical", "choices": [0.0, 0.05]}
PRUNE_EARLY = {"type": "MedianPruner", "args": {"n_startup_trials": 1, "n_warmup_steps": 0}}
SEEDED = {"type": "RandomSampler", "args": {"seed": 0}}


def sweep_files(folder: Path, space: dict[str, Any], epochs: int = 2, **spec: Any) -> Path:
    """config.json (the small tiny config) and sweep.json with ``space`` side by side; the config's path."""
    config_path = write_config(folder / "config.json", small_config(folder / "saved", epochs=epochs))
    write_config(folder / "sweep.json", {"space": space, **spec})
    return config_path


def run_sweep(capsys: pytest.CaptureFixture[str], *argv: Any, modules: Registry = TINY) -> Result:
    return run_main(capsys, sweep.main, *argv, modules=modules)


def trials(storage: Any, name: str = "tiny") -> list[Any]:
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def journal(save_dir: Path) -> Any:
    backend = optuna.storages.journal.JournalFileBackend(str(save_dir / "tiny" / "sweep.journal"))
    return optuna.storages.JournalStorage(backend)


def test_two_workers_share_the_journal_prune_the_hopeless_and_the_best_config_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = {"optimizer.args.lr": LEARNS_OR_NOT, "optimizer.args.weight_decay": {"type": "float", "low": 1e-6,
             "high": 1e-3, "log": True}}  # fmt: skip
    config_path = sweep_files(tmp_path, space, epochs=3, pruner=PRUNE_EARLY, sampler=SEEDED)
    result = run_sweep(capsys, "-c", config_path, "--trials", 6, "--jobs", 2)
    assert result.code == 0, result.err
    done = trials(journal(tmp_path / "saved"))
    states = [trial.state.name for trial in done]
    assert len(done) == 6 and set(states) <= {"COMPLETE", "PRUNED"} and "PRUNED" in states, states
    for trial in done:
        run_dir = Path(trial.user_attrs["run_dir"])
        recorded = json.loads((run_dir / "config.json").read_text())
        assert recorded["optimizer"]["args"]["lr"] == trial.params["optimizer.args.lr"]
        rows = (run_dir / "metrics.csv").read_text().splitlines()[1:]
        assert len(rows) == (1 if trial.state.name == "PRUNED" else 3), "a pruned trial stops after epoch 1"
        assert (run_dir / "last.pth").is_file() and not (run_dir / "run.lock").exists()
        if trial.state.name == "PRUNED":
            assert "Early stop: pruned by the sweep at epoch 1" in (run_dir / "train.log").read_text()
    assert "trial  state" in result.out and "Best: trial" in result.out
    best = tmp_path / "saved" / "tiny" / "best-config.json"
    assert json.loads(best.read_text())["optimizer"]["args"]["lr"] == 0.05
    assert train.main(["-c", str(best), "--set", "trainer.epochs=1"], modules=TINY) == 0


def test_a_stopped_sweep_continues_to_the_same_total_on_an_sqlite_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = sweep_files(tmp_path, {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.05}})
    config = json.loads(config_path.read_text())
    config["arch"]["type"] = "InterruptingNet"
    write_config(config_path, config)
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    command = ["-c", config_path, "--trials", 3, "--storage", url]
    with interrupt_on_forward(6, signal.SIGTERM):  # the second trial's first epoch (2 steps per epoch)
        interrupted = run_sweep(capsys, *command, modules=EXTRA)
    assert interrupted.code == 128 + signal.SIGTERM, interrupted.err
    assert "Traceback" not in interrupted.err, "a stopped trial is one line, as a stopped run is"
    assert [trial.state.name for trial in trials(url)] == ["COMPLETE", "FAIL"]
    stopped = Path(trials(url)[1].user_attrs["run_dir"])
    assert torch.load(stopped / "last.pth", weights_only=True)["mid_epoch"]["step"] == 2, "its state was saved"
    result = run_sweep(capsys, *command, modules=EXTRA)
    assert result.code == 0, result.err
    assert [trial.state.name for trial in trials(url)] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert len(run_dirs(tmp_path / "saved")) == 4 and not (tmp_path / "saved" / "tiny" / "sweep.journal").exists()
    summary = run_sweep(capsys, "-c", config_path, "--storage", url, "--summary", modules=EXTRA)
    assert summary.code == 0 and summary.out.count(" complete ") == 3 and " fail " in summary.out


def test_a_trial_left_running_by_a_killed_worker_is_failed_and_the_sweep_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What a kill -9 leaves in the journal: a RUNNING trial whose worker process is gone.
    config_path = sweep_files(tmp_path, {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.05}}, epochs=1)
    (tmp_path / "saved" / "tiny").mkdir(parents=True)
    study = optuna.create_study(storage=journal(tmp_path / "saved"), study_name="tiny", direction="minimize")
    here = socket.gethostname()
    workers = {"killed": {"host": here, "pid": dead_pid()}, "alive": {"host": here, "pid": os.getpid()},
               "elsewhere": {"host": "another-host", "pid": 1}}  # fmt: skip
    for worker in workers.values():
        study.ask().set_user_attr("worker", worker)
    result = run_sweep(capsys, "-c", config_path, "--trials", 2)
    assert result.code == 0, result.err
    states = [trial.state.name for trial in trials(journal(tmp_path / "saved"))]
    assert states == ["FAIL", "RUNNING", "RUNNING", "COMPLETE", "COMPLETE"], "only the dead worker's trial is failed"
    assert f"Trial 0 was left running by process {workers['killed']['pid']}, which has ended" in result.err


def running_with_a_saved_epoch(save_dir: Path) -> int:
    """How many trials are running and have finished an epoch (a row in their metrics.csv)."""
    if not (save_dir / "tiny" / "sweep.journal").is_file():
        return 0
    try:
        running = [trial for trial in trials(journal(save_dir)) if trial.state.name == "RUNNING"]
    except KeyError:  # the journal exists, the study not yet: the sweep is starting
        return 0
    csv_files = [
        Path(trial.user_attrs["run_dir"]) / "metrics.csv" for trial in running if "run_dir" in trial.user_attrs
    ]
    return sum(1 for path in csv_files if path.is_file() and len(path.read_text().splitlines()) > 1)


def kill_workers(save_dir: Path) -> None:
    for trial in trials(journal(save_dir)) if (save_dir / "tiny" / "sweep.journal").is_file() else []:
        with contextlib.suppress(ProcessLookupError, KeyError):
            os.kill(trial.user_attrs["worker"]["pid"], signal.SIGKILL)


def test_ctrl_c_stops_every_worker_of_a_parallel_sweep_with_its_state_saved(tmp_path: Path) -> None:
    # Trials far too long to finish: the sweep ends only by the signal, passed on to both workers.
    config_path = sweep_files(tmp_path, {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.05}}, 10**6)
    registry = TINY.module_names()
    options = ["--trials", "2", "--jobs", "2", "--registry", registry]
    command = [sys.executable, "sweep.py", "-c", str(config_path), *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sweep_process = subprocess.Popen(
        command, cwd=Path(__file__).parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.monotonic() + 120
        while running_with_a_saved_epoch(tmp_path / "saved") < 2 and sweep_process.poll() is None:
            assert time.monotonic() < deadline, "the two workers did not both start training"
            time.sleep(0.2)
        sweep_process.send_signal(signal.SIGINT)  # what Ctrl-C sends the command in the terminal
        _, err = sweep_process.communicate(timeout=120)
    finally:
        sweep_process.kill()
        kill_workers(tmp_path / "saved")  # they run in sessions of their own; none may outlive a failed test
    assert sweep_process.returncode == 128 + signal.SIGINT, err
    stopped = trials(journal(tmp_path / "saved"))
    assert [trial.state.name for trial in stopped] == ["FAIL", "FAIL"], err
    for trial in stopped:
        run_dir = Path(trial.user_attrs["run_dir"])
        assert torch.load(run_dir / "last.pth", weights_only=True)["epoch"] >= 1 and not (run_dir / "run.lock").exists()
        assert "stopped by SIGINT" in (run_dir / "train.log").read_text()
    assert "run the same command to continue" in err and "Traceback" not in err


BAD_SPACES = {
    "unknown key path": ({"trainer.epoch": {"type": "int", "low": 1, "high": 3}}, "did you mean 'epochs'?"),
    "low above high": ({"optimizer.args.lr": {"type": "float", "low": 0.1, "high": 0.01}}, "low (0.1) must be below"),
    "empty choices": ({"arch.args.width": {"type": "categorical", "choices": []}}, '"choices" must be a non-empty'),
    "unknown type": ({"optimizer.args.lr": {"type": "uniform", "low": 0, "high": 1}}, "with a type of float, int"),
    "log from zero": ({"optimizer.args.lr": {"type": "float", "low": 0, "high": 1, "log": True}}, "needs low > 0"),
    "bad value": ({"trainer.epochs": {"type": "int", "low": 0, "high": 2}}, "trainer.epochs: expected an integer"),
    "unknown argument": (
        {"optimizer.args.lrr": {"type": "float", "low": 0.01, "high": 0.1}},
        "optimizer.args.lrr: unknown key; did you mean 'lr'?",
    ),
    "infinite bound": ({"optimizer.args.lr": {"type": "float", "low": 0.01, "high": float("inf")}}, "must be finite"),
    "NaN bound": ({"optimizer.args.lr": {"type": "float", "low": float("nan"), "high": 0.1}}, "must be finite"),
    "unknown loader argument": (
        {"data_loader.args.batch_sz": {"type": "categorical", "choices": [16]}},
        "space.data_loader.args.batch_sz = 16: data_loader.args.batch_sz: unknown key; did you mean 'batch_size'?",
    ),
    "loader value": (
        {"data_loader.args.batch_size": {"type": "int", "low": 0, "high": 8}},
        "space.data_loader.args.batch_size = 0: data_loader.args: TinyTensorLoader rejected its arguments",
    ),
    "unknown loss choice": (
        {"loss": {"type": "categorical", "choices": ["cross_entropy", "nll"]}},
        "space.loss = \"nll\": loss: unknown name 'nll'",
    ),
    "scheduler without its arguments": (
        {"lr_scheduler.type": {"type": "categorical", "choices": ["StepLR"]}},
        'space.lr_scheduler.type = "StepLR": lr_scheduler',
    ),
    "width the model refuses": (
        {"arch.args.width": {"type": "int", "low": 0, "high": 8}},
        "space.arch.args.width = 0: arch: TinyConvNet cannot take the data's batches",
    ),
    "unknown entry key": (
        {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.1, "step": 0.01}},
        "unknown key 'step' for a float; known keys: type, low, high, log",
    ),
}


@pytest.mark.parametrize("space,message", BAD_SPACES.values(), ids=BAD_SPACES.keys())
def test_a_bad_sweep_file_is_one_line_before_any_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], space: dict[str, Any], message: str
) -> None:
    config_path = sweep_files(tmp_path, space)
    if "lr_scheduler.type" in space:  # a schedule without its arguments is refused, not the config's own schedule
        config = json.loads(config_path.read_text())
        config["lr_scheduler"] = {"type": "ExponentialLR", "args": {"gamma": 0.9}}
        write_config(config_path, config)
    result = run_sweep(capsys, "-c", config_path, "--trials", 2, "--jobs", 2)
    assert result.code == 2 and message in result.error_line(), result.err
    assert result.err.count("\n") == 1, "one line: no failed trial, no Optuna log, no warning"
    assert not (tmp_path / "saved").exists(), "nothing written"


def counted(monkeypatch: pytest.MonkeyPatch, target: str) -> list[Any]:
    """Replace the function ``target`` names with one that records each call's config, then calls it."""
    module_name, _, name = target.rpartition(".")
    real = getattr(sys.modules[module_name], name)
    configs: list[Any] = []

    def record(config: Any, *args: Any, **kwargs: Any) -> Any:
        configs.append(config)
        return real(config, *args, **kwargs)

    monkeypatch.setattr(target, record)
    return configs


def test_the_shipped_space_is_checked_value_by_value_on_data_loaded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The project's sweep.json on the tiny config (its model has a width too, 16 as config.json's): the
    project's own config and data are the user's, and may need files or a download."""
    from sweeps.space import check_space, read_spec

    shipped = json.loads((Path(sweep.__file__).parent / "sweep.json").read_text(encoding="utf-8"))
    config_path = sweep_files(tmp_path, shipped["space"])
    config = json.loads(config_path.read_text())
    write_config(config_path, {**config, "arch": {"type": "TinyConvNet", "args": {"num_classes": 3, "width": 16}}})
    built, loaded = counted(monkeypatch, "sweeps.space.build_trainer"), counted(monkeypatch, "trainer.build.build_data")
    spec = read_spec(tmp_path / "sweep.json")
    check_space(spec, config_path, [], TINY, "sweep.json")
    edges = [value for param in spec.params for value in param.extremes()]
    assert len(built) == len(edges), "the config, then each edge value but its own width (16): all checked"
    assert len(loaded) == 1, "no searched key changes the data: it is loaded once, for the config"


def test_a_searched_batch_size_is_checked_on_data_loaded_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweeps.space import check_space, read_spec

    space = {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.1},
             "data_loader.args.batch_size": {"type": "categorical", "choices": [16, 63]}}  # fmt: skip
    config_path = sweep_files(tmp_path, space)
    write_config(config_path, {**json.loads(config_path.read_text()), "arch": {"type": "NormHeadNet", "args": {}}})
    loaded = counted(monkeypatch, "trainer.build.build_data")
    with pytest.raises(UsageError) as refused:
        check_space(read_spec(tmp_path / "sweep.json"), config_path, [], TINY, "sweep.json")
    assert str(refused.value).startswith(
        "sweep.json: space.data_loader.args.batch_size = 63: data_loader.args.batch_size: 63 leaves 1 of the 64 "
        "training samples in each epoch's last batch, which BatchNorm1d cannot train on"
    )
    assert [config.data_loader.args["batch_size"] for config in loaded] == [32, 16, 63], "lr's edges reuse 32's"


@pytest.fixture
def cuda_in_name_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process says it has a CUDA GPU, and fails the test if anything starts CUDA in it: a tensor or model
    made on or moved to the GPU calls torch.cuda._lazy_init first."""

    def no_cuda_here() -> None:
        raise AssertionError("CUDA was started in the sweep's parent process")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "_lazy_init", no_cuda_here)


def no_builds_here(*args: Any) -> None:
    raise AssertionError("the parent of --jobs workers builds nothing: a CUDA context would stay in it")


@pytest.mark.usefixtures("cuda_in_name_only")
def test_with_a_gpu_and_workers_the_check_builds_in_a_child_that_reports_its_refusal_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sweeps.space.build_trainer", no_builds_here)  # the child imports its own, unpatched
    config_path = sweep_files(tmp_path, {"arch.args.width": {"type": "int", "low": 0, "high": 8}})
    result = run_sweep(capsys, "-c", config_path, "--trials", 2, "--jobs", 2)
    message = "space.arch.args.width = 0: arch: TinyConvNet cannot take the data's batches"
    assert result.code == 2 and message in result.error_line(), result.err
    assert result.err.count("\n") == 1 and not (tmp_path / "saved").exists()
    assert not torch.cuda.is_initialized()


@pytest.mark.usefixtures("cuda_in_name_only")
def test_the_check_in_a_child_passes_a_space_that_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sweeps.space import check_space_apart, read_spec

    monkeypatch.setattr("sweeps.space.build_trainer", no_builds_here)
    config_path = sweep_files(tmp_path, {"arch.args.width": {"type": "int", "low": 4, "high": 8}})
    check_space_apart(read_spec(tmp_path / "sweep.json"), config_path, [], TINY, "sweep.json")


@pytest.mark.parametrize(("gpu", "jobs"), [(True, 1), (False, 2)], ids=["gpu, one job", "no gpu, two jobs"])
def test_the_check_builds_in_this_process_when_it_trains_itself_or_has_no_gpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, gpu: bool, jobs: int
) -> None:
    def check_space_apart(*args: Any) -> None:
        raise AssertionError("a child process is only worth its start for a GPU this process would not use")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr("sweeps.space.check_space_apart", check_space_apart)
    config_path = sweep_files(tmp_path, {"arch.args.width": {"type": "int", "low": 0, "high": 8}})
    result = run_sweep(capsys, "-c", config_path, "--trials", 2, "--jobs", jobs)
    assert result.code == 2 and "space.arch.args.width = 0: arch: TinyConvNet" in result.error_line(), result.err


def test_the_summary_looks_at_the_study_without_building_the_space(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = sweep_files(tmp_path, {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.1}}, epochs=1)
    assert run_sweep(capsys, "-c", config_path, "--trials", 1).code == 0

    def build_trainer(*args: Any) -> None:
        raise AssertionError("--summary trains nothing: it need not load the data or build the model")

    monkeypatch.setattr("sweeps.space.build_trainer", build_trainer)
    summary = run_sweep(capsys, "-c", config_path, "--summary")
    assert summary.code == 0 and summary.out.count(" complete ") == 1, summary.err


# Each value builds with the config's others (the check before the first trial passes), but not together:
# (config edits, the space, the trial's values as the refusal names them, the reason train.py gives).
REFUSED_TOGETHER = {
    "nesterov without momentum": (
        {"optimizer": {"type": "SGD", "args": {"lr": 0.05, "momentum": 0.9, "nesterov": False}}},
        {"optimizer.args.nesterov": {"type": "categorical", "choices": [True]},
         "optimizer.args.momentum": {"type": "categorical", "choices": [0.0]}},
        "optimizer.args.nesterov=true, optimizer.args.momentum=0.0",
        "optimizer.args: SGD rejected its arguments: Nesterov momentum",
    ),
    "a schedule shorter than the run": (  # 2 steps an epoch: 3 epochs are 6 steps, more than 4
        {"lr_scheduler": {"type": "OneCycleLR", "args": {"total_steps": 6}}},
        {"trainer.epochs": {"type": "categorical", "choices": [3]},
         "lr_scheduler.args.total_steps": {"type": "categorical", "choices": [4]}},
        "trainer.epochs=3, lr_scheduler.args.total_steps=4",
        "lr_scheduler.args: OneCycleLR's total_steps gives 4 steps, fewer than the run's 6",
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("case", "jobs"),
    [("nesterov without momentum", 1), ("nesterov without momentum", 2), ("a schedule shorter than the run", 1)],
)
def test_a_trial_whose_values_together_are_refused_ends_the_sweep_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, jobs: int
) -> None:
    edits, space, values, reason = REFUSED_TOGETHER[case]
    config_path = sweep_files(tmp_path, space)
    write_config(config_path, {**json.loads(config_path.read_text()), **edits})
    result = run_sweep(capsys, "-c", config_path, "--trials", 4, "--jobs", jobs)
    expected = f"sweep trial 0 ({values}, from {tmp_path / 'sweep.json'}) was refused: {reason}"
    if jobs == 2:  # either worker's trial may be the one named
        expected = expected.replace("trial 0", f"trial {result.err.partition('sweep trial ')[2][:1]}")
    assert result.code == 2 and expected in result.error_line(), result.err
    assert "Trial 0 failed" not in result.err and "run the same command" not in result.err, result.err
    study = optuna.load_study(study_name="tiny", storage=journal(tmp_path / "saved"))
    assert [trial.state.name for trial in study.get_trials()] == ["FAIL"] * jobs, "each worker ended at its first"
    assert study.user_attrs["refused"].startswith(expected), "the other workers stop on it"
    assert run_dirs(tmp_path / "saved") == [], "a refused run leaves no folder"


@contextlib.contextmanager
def save_dir_taken_by_a_file(save_dir: Path) -> Iterator[str]:
    """``save_dir`` is a file, so no run folder can be made in it, until the block ends."""
    save_dir.write_text("not a folder\n")
    yield f"trainer.save_dir: cannot create a run folder in {str(save_dir / 'tiny')!r}: Not a directory"
    save_dir.unlink()


@contextlib.contextmanager
def disk_full_for_checkpoints(save_dir: Path) -> Iterator[str]:
    """Every checkpoint fails to be written as on a full disk (the rename that ends each write), until the
    block ends; the other files are written."""
    real_replace = os.replace

    def replace(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        if str(target).endswith(".pth"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(source, target, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", replace)
        yield "best.pth': No space left on device; free some space"  # epoch 1 is the best yet: written first


# What breaks a trial's environment, not its values: each yields the message the trial fails with.
ENVIRONMENT_FAULTS = {"save_dir is a file": save_dir_taken_by_a_file, "disk full": disk_full_for_checkpoints}


# The disk is full by a patch of this process, which a --jobs worker does not share.
@pytest.mark.parametrize(("fault", "jobs"), [("save_dir is a file", 1), ("save_dir is a file", 2), ("disk full", 1)])
def test_a_trial_that_fails_on_its_environment_ends_the_sweep_which_continues_once_it_is_fixed(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], fault: str, jobs: int
) -> None:
    config_path = sweep_files(tmp_path, {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.05}}, epochs=1)
    url = f"sqlite:///{tmp_path / 'sweep.db'}"  # the study is not in save_dir, which may be unusable
    command = ["-c", config_path, "--trials", 2, "--jobs", jobs, "--storage", url]
    with ENVIRONMENT_FAULTS[fault](tmp_path / "saved") as message:
        failed = run_main(capfd, sweep.main, *command, modules=TINY)  # capfd: a --jobs worker prints its own line
    assert failed.code == 2 and message in failed.err, failed.err
    assert "is marked failed: fix that and run the same command to continue" in failed.err, failed.err
    assert "was refused" not in failed.err and "Traceback" not in failed.err, failed.err
    study = optuna.load_study(study_name="tiny", storage=url)
    assert [trial.state.name for trial in study.get_trials()] == ["FAIL"] * jobs and not study.user_attrs["refused"]
    continued = run_main(capfd, sweep.main, *command, modules=TINY)
    assert continued.code == 0, continued.err
    states = [trial.state.name for trial in trials(url)]
    assert states[:jobs] == ["FAIL"] * jobs and states[jobs:] == ["COMPLETE", "COMPLETE"], states


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")  # the model of width 0
def test_train_tells_a_config_it_refuses_from_an_environment_that_fails_it(tmp_path: Path) -> None:
    """What a sweep blames on a trial's values (ConfigRefused) and what it does not (any other UsageError)."""
    from utils.errors import ConfigRefused, UsageError

    config_path = write_config(tmp_path / "config.json", small_config(tmp_path / "saved"))
    (tmp_path / "a-file").write_text("")
    failures = {  # the arguments after -c config.json, and whether the config is what is refused
        "a value out of range": (["--set", "trainer.epochs=0"], True),
        "an unknown class": (["--set", "optimizer.type=Adamm"], True),
        "arguments a class rejects": (["--set", "optimizer.args.lr=-1"], True),
        "a loader split with no training data": (["--set", "data_loader.args.validation_split=80"], True),
        "a model that cannot take the data": (["--set", "arch.args.width=0"], True),
        "a schedule the run outgrows": (["--set", 'lr_scheduler={"type":"OneCycleLR","args":{"total_steps":1}}'], True),
        "an unmeasured monitor": (["--set", "trainer.monitor=max val_nope"], True),
        "a save_dir that is a file": (["--set", f"trainer.save_dir={json.dumps(str(tmp_path / 'a-file'))}"], False),
        "a checkpoint that is not there": (["-r", str(tmp_path / "nothing.pth")], False),
    }
    for name, (argv, config_refused) in failures.items():
        with pytest.raises(UsageError) as failure:
            train.train(train.parse_args(["-c", str(config_path), *argv]), TINY)
        assert isinstance(failure.value, ConfigRefused) == config_refused, (name, failure.value)


@pytest.mark.parametrize(
    ("space_file", "message"),
    [
        ("folder", "sweep file '{tmp}/folder' is a folder; pass '{tmp}/folder/sweep.json' or another file"),
        ("notes.txt", "sweep file '{tmp}/notes.txt' is not valid JSON"),
        ("missing.json", "sweep file '{tmp}/missing.json' does not exist; write one (see docs/sweeps.md)"),
        ("twice.json", "sweep file '{tmp}/twice.json': key 'space' appears twice (again on line 3); keep one of them"),
    ],
)
def test_a_space_that_is_not_a_sweep_file_is_named_as_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], space_file: str, message: str
) -> None:
    config_path = sweep_files(tmp_path, {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.1}})
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("lr from 0.01 to 0.1\n")
    lr = '{"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.1}}'
    (tmp_path / "twice.json").write_text("{\n" + f'  "space": {lr},\n  "space": {lr}\n' + "}\n")  # the last would win
    result = run_sweep(capsys, "-c", config_path, "--space", tmp_path / space_file, "--trials", 1)
    assert result.code == 2 and message.format(tmp=tmp_path) in result.error_line(), result.err


def test_a_sweep_metric_that_is_not_measured_is_one_line_before_any_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lr = {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.1}}
    config_path = sweep_files(tmp_path, lr, metric="max val_acc")
    result = run_sweep(capsys, "-c", config_path, "--trials", 1)
    expected = f"{tmp_path / 'sweep.json'}: metric: 'val_acc' is not measured; did you mean 'val_accuracy'?"
    assert result.code == 2 and expected in result.error_line(), result.err
    assert not (tmp_path / "saved").exists(), "refused before any trial"


@pytest.mark.parametrize("metric", ["val_accuracy", "off", "", 3])
def test_a_sweep_metric_without_min_or_max_is_blamed_on_the_sweep_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], metric: Any
) -> None:
    lr = {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.1}}
    config_path = sweep_files(tmp_path, lr, metric=metric)
    result = run_sweep(capsys, "-c", config_path, "--trials", 1)
    expected = f'{tmp_path / "sweep.json"}: metric: {json.dumps(metric)} is not understood; write "min <metric>"'
    assert result.code == 2 and expected in result.error_line() and "trainer.monitor:" not in result.err, result.err
    assert not (tmp_path / "saved").exists(), "refused before any trial"


def test_pruner_arguments_that_are_not_an_object_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lr = {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.1}}
    config_path = sweep_files(tmp_path, lr, pruner={"type": "MedianPruner", "args": [1]})
    result = run_sweep(capsys, "-c", config_path, "--trials", 2)
    assert result.code == 2 and 'pruner: expected null or {"type": "...", "args": {...}}' in result.error_line()
    assert not (tmp_path / "saved").exists(), "nothing written"


def test_a_named_study_of_an_int_range_monitors_the_sweep_metric_and_keeps_its_own_best_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    accumulation = {"trainer.grad_accum_steps": {"type": "int", "low": 1, "high": 2}}  # checked as 1 and 2, not 1.0
    config_path = sweep_files(tmp_path, accumulation, epochs=1, metric="max val_accuracy", pruner=None)
    unknown = run_sweep(capsys, "-c", config_path, "--summary")
    assert unknown.code == 2 and "no sweep has run here yet" in unknown.error_line(), unknown.err
    assert not (tmp_path / "saved").exists(), "looking at a study that does not exist writes nothing"
    result = run_sweep(capsys, "-c", config_path, "--trials", 1, "--study", "accumulation")
    assert result.code == 0, result.err
    [trial] = trials(journal(tmp_path / "saved"), "accumulation")
    assert trial.params["trainer.grad_accum_steps"] in (1, 2)
    recorded = json.loads((Path(trial.user_attrs["run_dir"]) / "config.json").read_text())
    assert recorded["trainer"]["monitor"] == "max val_accuracy", "best.pth is the epoch the sweep counts"
    assert (tmp_path / "saved" / "tiny" / "best-config-accumulation.json").is_file()
    assert not (tmp_path / "saved" / "tiny" / "best-config.json").exists(), "the default study's stays its own"
    typo = run_sweep(capsys, "-c", config_path, "--summary", "--study", "acumulation")
    assert typo.code == 2 and "no such study to show (studies: accumulation)" in typo.error_line(), typo.err


def test_the_summary_of_a_database_file_that_does_not_exist_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = sweep_files(tmp_path, {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.1}})
    url = f"sqlite:///{tmp_path / 'nope.db'}"
    result = run_sweep(capsys, "-c", config_path, "--summary", "--storage", url)
    expected = f"--storage {url!r}: {tmp_path / 'nope.db'} does not exist, so it holds no study to show"
    assert result.code == 2 and expected in result.error_line(), result.err
    assert "--study" not in result.err, "--study was not given"
    assert not (tmp_path / "nope.db").exists() and not (tmp_path / "saved").exists()
    optuna.create_study(storage=url, study_name="other")  # a database that holds another study only
    other = run_sweep(capsys, "-c", config_path, "--summary", "--storage", url)
    expected = "study 'tiny' (the config's name; --study NAME picks another): no such study to show (studies: other)"
    assert other.code == 2 and expected in other.error_line(), other.err


@pytest.mark.parametrize("where", ["config", "environment"])
def test_a_tracking_uri_mlflow_cannot_use_is_one_line_before_the_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    pytest.importorskip("logger.mlflow_tracker")  # generated with the mlflow answer only
    monkeypatch.chdir(tmp_path)  # MLflow's default store would be ./mlflow.db
    config_path = sweep_files(tmp_path, {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.1}}, epochs=1)
    settings = ["--set", 'trainer.loggers=["csv","mlflow"]']
    if where == "config":
        settings += ["--set", "trainer.tracking_uri=nosuchscheme://x"]
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://x")
    result = run_sweep(capsys, "-c", config_path, "--trials", 2, "--jobs", 2, *settings)
    source = "trainer.tracking_uri" if where == "config" else "MLFLOW_TRACKING_URI"
    expected = f"error: {source} 'nosuchscheme://x': MLflow cannot use it ("
    assert result.code == 2 and result.error_line().startswith(expected), result.err
    assert "run without MLflow: --set trainer.loggers='[\"csv\"]'" in result.err
    assert not (tmp_path / "saved").exists() and not (tmp_path / "mlflow.db").exists(), "no study, no store"


def test_a_worker_killed_by_a_signal_gives_the_shell_s_exit_code(tmp_path: Path) -> None:
    from sweeps.workers import run_workers

    script = tmp_path / "killed.py"
    script.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert run_workers(script, [], [1]) == 128 + signal.SIGKILL


SIGNAL_RECORDER = """
import os, signal, sys, time
from pathlib import Path

def stop(signum, frame):  # a worker's graceful stop, recorded
    Path(sys.argv[1], f"{os.getpid()}.stopped").write_text(signal.Signals(signum).name)
    sys.exit(128 + signum)

signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, stop)
Path(sys.argv[1], f"{os.getpid()}.ready").write_text("")
time.sleep(120)
"""


def test_a_hang_up_stops_the_workers_as_ctrl_c_does_and_the_sweep_waits_for_them(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(SIGNAL_RECORDER)
    driver = "import sys; from pathlib import Path; from sweeps.workers import run_workers; "
    driver += f"sys.exit(run_workers(Path({str(script)!r}), [{str(tmp_path)!r}], [1, 1]))"
    sweep_process = subprocess.Popen([sys.executable, "-c", driver], cwd=Path(__file__).parents[1])
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("*.ready"))) < 2:
            assert time.monotonic() < deadline and sweep_process.poll() is None, "the two workers did not start"
            time.sleep(0.1)
        sweep_process.send_signal(signal.SIGHUP)  # what closing the terminal or the SSH session sends
        code = sweep_process.wait(timeout=60)
    finally:
        sweep_process.kill()
        for ready in tmp_path.glob("*.ready"):  # in sessions of their own: none may outlive a failed test
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(ready.stem), signal.SIGKILL)
    stopped = [path.read_text() for path in tmp_path.glob("*.stopped")]
    assert stopped == ["SIGTERM", "SIGTERM"], "each worker saved and stopped on the SIGTERM passed on"
    assert code == 128 + signal.SIGTERM, "the sweep waited for them and gives their exit code"


FAILS_WITH_SHARE_2 = """
import sys, time
from pathlib import Path

if sys.argv[-1] == "2":  # this worker meets an error of its own once the other one runs
    while not list(Path(sys.argv[1]).glob("*.ready")):
        time.sleep(0.05)
    sys.exit(3)
"""


def test_a_failed_worker_stops_the_others_with_one_signal_and_gives_its_exit_code(tmp_path: Path) -> None:
    from sweeps.workers import run_workers

    script = tmp_path / "worker.py"
    script.write_text(FAILS_WITH_SHARE_2 + SIGNAL_RECORDER)
    started = time.monotonic()
    try:
        code = run_workers(script, [str(tmp_path)], [2, 1])
    finally:
        for ready in tmp_path.glob("*.ready"):  # in a session of its own: it may not outlive a failed test
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(ready.stem), signal.SIGKILL)
    assert code == 3, "the failure's own exit code, not the stopped worker's"
    assert [path.read_text() for path in tmp_path.glob("*.stopped")] == ["SIGTERM"], "stopped once, to save"
    assert time.monotonic() - started < 60, "not left to sleep its 120 s"


def test_an_unknown_pruner_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lr = {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.1}}
    config_path = sweep_files(tmp_path, lr, pruner={"type": "MedianPrunner"})
    result = run_sweep(capsys, "-c", config_path, "--trials", 2)
    assert result.code == 2 and "pruner.type: unknown name 'MedianPrunner'; did you mean 'MedianPruner'?" in result.err


def test_without_optuna_the_sweep_is_one_line_saying_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hide_package(monkeypatch, "optuna")
    config_path = sweep_files(tmp_path, {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.1}})
    result = run_sweep(capsys, "-c", config_path, "--trials", 2)
    assert result.code == 2
    assert result.error_line() == "error: sweep.py needs Optuna (the optuna package); pip install -e ."
    assert not (tmp_path / "saved").exists()


def test_a_sweep_without_trials_is_refused_before_the_study_is_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = sweep_files(tmp_path, {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.1}})
    result = run_sweep(capsys, "-c", config_path)
    assert result.code == 2 and "--trials N: how many finished trials" in result.error_line(), result.err
    assert result.err.count("\n") == 1, "no 'A new study created' before the refusal"
    assert not (tmp_path / "saved").exists(), "no study, no journal"


@pytest.mark.parametrize("name", ["lr/v2", "lr\\v2"])
def test_a_study_name_that_is_not_a_file_name_is_refused_before_any_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    config_path = sweep_files(tmp_path, {"optimizer.args.lr": {"type": "float", "low": 0.01, "high": 0.1}}, epochs=1)
    for summary in ([], ["--summary"]):  # --summary too: it writes best-config-NAME.json
        result = run_sweep(capsys, "-c", config_path, "--trials", 1, "--study", name, *summary)
        expected = f"--study {name!r}: a study's name is part of a file name (best-config-NAME.json), so it cannot hold"
        assert result.code == 2 and expected in result.error_line() and "'lr-v2'" in result.err, result.err
        assert not (tmp_path / "saved").exists(), "refused before the study or any trial"


def test_a_flag_argparse_refuses_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        sweep.main(["--jobs", "two"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err == "error: argument --jobs: invalid int value: 'two'; see sweep.py --help\n"
