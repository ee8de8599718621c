"""Where a run starts and what is recorded when it does, for train.py: the config and the checkpoint it continues
(``plan_start``: -c, -r, --resume auto, --init-from), the checkpoint's state put back into a built trainer
(``restore``, after the checks of trainer/resume.py), a new run folder, and the first log lines."""

import argparse
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from base.base_trainer import BaseTrainer
from base.loaders import ResidentLoader
from logger.logger import setup_logging
from logger.metrics_csv import FILE_NAME as METRICS_CSV
from logger.runs import new_resume_record
from parse_config import Config, load_config
from trainer.checkpoint import RunLock, create_run_dir, remove_run_dir
from trainer.resume import (
    apply_overrides,
    config_changes,
    refuse_data_change,
    refuse_fixed_changes,
    refuse_world_size_change,
)
from utils.checkpoint import find_checkpoint, load_checkpoint, load_model_weights
from utils.cli import overrides_from_flags
from utils.dist import describe_world, is_distributed, on_rank_0, rank, world_size
from utils.errors import UsageError
from utils.foreign_weights import import_weights
from utils.registry import Registry
from utils.util import write_json

logger = logging.getLogger("train")  # train.py's: these lines are the training command's


@dataclass
class RunStart:
    """Where a run starts: its config, and the checkpoint it continues (or takes its weights) from."""

    config: Config
    checkpoint: dict[str, Any] | None = None
    checkpoint_path: Path | None = None
    continue_in: Path | None = None  # the run folder to continue in; None: a new folder
    weights_only: bool = False  # --init-from: the checkpoint's weights, nothing else
    recorded: Config | None = None  # the checkpoint's config, read once (unknown keys dropped and logged)


def plan_start(args: argparse.Namespace, modules: Registry) -> RunStart:
    overrides = overrides_from_flags(args)
    if args.trust_pickle and args.init_from is None:
        raise UsageError("--trust-pickle goes with --init-from CHECKPOINT: it takes a foreign file's weights only")
    if args.init_from is not None:
        path = find_checkpoint(args.init_from)
        checkpoint = import_weights(path) if args.trust_pickle else load_checkpoint(path)
        config = load_config(args.config or Path("config.json"), overrides, registry=modules)
        return RunStart(config, checkpoint, path, weights_only=True)
    if args.resume is not None and args.resume != "auto":
        path = find_checkpoint(Path(args.resume), prefer=("last.pth", "best.pth"))
        checkpoint = load_checkpoint(path, resume=True)
        recorded = Config.from_dict(checkpoint["config"], strict=False)
        config = load_config(args.config, overrides, recorded=recorded.to_dict(), registry=modules)
        newest = path.parent / "last.pth"
        # Continuing from an older state in its own folder would overwrite the newer ones: start a new folder.
        rewinds = path.name != "last.pth" and newest.is_file()
        return RunStart(config, checkpoint, path, continue_in=None if rewinds else path.parent, recorded=recorded)
    config = load_config(args.config or Path("config.json"), overrides, registry=modules)
    return plan_auto_resume(config) if args.resume == "auto" else RunStart(config)


def plan_auto_resume(config: Config) -> RunStart:
    """``--resume auto``: continue the newest run of this config's name if it ran this same config
    (a requeued job runs the same command again); otherwise start a new run."""
    try:
        path = find_checkpoint(Path(config.trainer.save_dir) / config.name, prefer=("last.pth",))
    except UsageError:
        path = None
    if path is None or not path.is_file():
        logger.info("--resume auto: no earlier run of %r to continue; starting a new one", config.name)
        return RunStart(config)
    checkpoint = load_checkpoint(path, resume=True)
    recorded = Config.from_dict(checkpoint["config"], strict=False)
    differences = config_changes(recorded, config)
    if differences:
        logger.info("--resume auto: %s ran with other settings (%s); starting a new run", path.parent,
                    ", ".join(differences[:5]))  # fmt: skip
        return RunStart(config)
    return RunStart(config, checkpoint, path, continue_in=path.parent, recorded=recorded)


class RunWatcher(Protocol):
    """Follows a run from outside (a sweep's trial: sweeps/trial.py): told its folder, then called after every
    saved epoch as one of the Trainer's stop rules (a reason to stop early, or None)."""

    def run_started(self, run_dir: Path) -> None: ...

    def __call__(self, epoch: int, epoch_metrics: dict[str, float]) -> str | None: ...


def restore(trainer: BaseTrainer, start: RunStart) -> None:
    """Load what ``start`` says into the freshly built trainer."""
    checkpoint, path, recorded = start.checkpoint, start.checkpoint_path, start.recorded
    if checkpoint is None or path is None:
        return
    if start.weights_only:
        load_model_weights(trainer.model, checkpoint["model"], path)
        logger.info("Starting from the weights of %s (epoch %d)", path, checkpoint["epoch"])
        return
    assert recorded is not None  # every resume reads the checkpoint's config in plan_start
    mid_epoch = checkpoint.get("mid_epoch")
    refuse_fixed_changes(recorded, start.config, mid_epoch)
    refuse_world_size_change(checkpoint.get("world_size"), world_size(), recorded.lr_scheduler, mid_epoch)
    # The schedule that goes on from the checkpoint's state: one dropped now is not stepped, one added starts afresh.
    continued = start.config.lr_scheduler if recorded.lr_scheduler is not None else None
    refuse_data_change(checkpoint.get("data_layout"), trainer.data_layout(), continued, mid_epoch)
    trainer.load_state_dict(checkpoint, path)
    apply_overrides(trainer, recorded, start.config)


def new_run_dir(start: RunStart) -> Path:
    """A new run folder, locked, with the run's config (and, when it starts from a checkpoint, its origin)."""
    config, checkpoint, path = start.config, start.checkpoint, start.checkpoint_path
    run_dir = create_run_dir(Path(config.trainer.save_dir), config.name)
    try:
        RunLock(run_dir).acquire()
        write_json(config.to_dict(), run_dir / "config.json")
        if checkpoint is not None:
            origin = {"from": str(path), "epoch": checkpoint["epoch"], "weights_only": start.weights_only}
            write_json(origin, run_dir / "origin.json")
            earlier_rows = path.parent / METRICS_CSV
            if not start.weights_only and earlier_rows.is_file():  # the epochs up to the checkpoint stay in view
                shutil.copyfile(earlier_rows, run_dir / METRICS_CSV)  # the rows after it are dropped on open
    except BaseException:  # a full disk or a Ctrl-C: leave no half-made run folder (and no lock) behind
        remove_run_dir(run_dir)
        raise
    return run_dir


def record_resume_config(start: RunStart) -> None:
    """A resume that changes settings records what it runs with; config.json stays the original."""
    checkpoint, run_dir = start.checkpoint, start.continue_in
    if checkpoint is not None and run_dir is not None and checkpoint["config"] != start.config.to_dict():
        write_json(start.config.to_dict(), new_resume_record(run_dir, checkpoint["epoch"]))


def log_setup(config: Config, trainer: BaseTrainer, device: torch.device) -> None:
    if is_distributed():
        logger.info("Distributed: %s", describe_world())
    amp = trainer.amp_dtype
    precision = str(amp).removeprefix("torch.") if amp else "off"
    logger.info("Device: %s (config asks for %r), mixed precision: %s", device, config.device, precision)
    if amp == torch.float16 and device.type == "cpu":  # measured about 35 times slower than full precision here
        logger.warning('trainer.amp: fp16 on the CPU is many times slower than full precision; use "bf16" or "off"')
    loader = trainer.train_loader
    if isinstance(loader, ResidentLoader):
        logger.info("Data: %d samples held on %s (device-resident)", loader.n_samples, device)
    else:
        logger.info("Data: DataLoader with %d worker(s)", loader.num_workers)
    logger.debug("%s", trainer.model)


def nothing_to_do(finished: str, start: RunStart) -> Path:
    """A resume of a run with nothing left to train: said, and nothing written (no new folder, no record of
    settings that never ran); the checkpoint's own folder is the one to evaluate."""
    assert start.checkpoint_path is not None  # only a resumed checkpoint can have finished
    logger.warning("Nothing to do: %s", finished)
    logger.info("Evaluate with: python test.py -r %s", start.checkpoint_path.parent)
    return start.checkpoint_path.parent


def record_start(
    start: RunStart, trainer: BaseTrainer, run_dir: Path, earlier: list[logging.LogRecord], watcher: RunWatcher | None
) -> None:
    """Record in ``run_dir`` that the run starts: a resume's changed settings, then train.log."""
    on_rank_0(lambda: record_resume_config(start))
    if watcher is not None:
        watcher.run_started(run_dir)
        trainer.stop_rules.append(watcher)
    setup_logging(run_dir / "train.log", start.config.trainer.verbosity, rank(), earlier)
    logger.info("Run folder: %s", run_dir)
    log_setup(start.config, trainer, trainer.device)
