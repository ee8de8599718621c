"""Train a model: python train.py -c config.json [overrides]. See README.md for every flag."""

import argparse
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

import data_loader.data_loaders
import model.loss
import model.metric
import model.model
import trainer.trainer
from base.base_trainer import BaseTrainer
from base.loaders import ResidentLoader
from logger.logger import setup_logging
from logger.metrics_csv import FILE_NAME as METRICS_CSV
from logger.runs import new_resume_record
from logger.trackers import check_installed, close_all, closed_on_error, forget_run, open_trackers
from parse_config import Config, load_config
from trainer.build import build_trainer
from trainer.checkpoint import Checkpointer, RunLock, create_run_dir, remove_run_dir
from trainer.resume import (
    apply_overrides,
    config_changes,
    refuse_data_change,
    refuse_fixed_changes,
    refuse_world_size_change,
)
from utils.checkpoint import find_checkpoint, load_checkpoint, load_model_weights
from utils.cli import ArgumentParser, add_override_flags, overrides_from_flags, run_command, warnings_held
from utils.dist import (
    describe_world,
    init_distributed,
    is_distributed,
    is_main,
    launched_by_torchrun,
    on_rank_0,
    rank,
    world_size,
)
from utils.errors import UsageError
from utils.foreign_weights import import_weights
from utils.registry import Registry
from utils.signals import sigterm_interrupts
from utils.util import configure_backends, resolve_device, write_json

logger = logging.getLogger("train")

# The modules (yours) in which config.json's names are looked up.
PROJECT_MODULES = Registry(
    models=model.model,
    data_loaders=data_loader.data_loaders,
    losses=model.loss,
    metrics=model.metric,
    trainers=trainer.trainer,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="train.py", description=__doc__)
    parser.add_argument("-c", "--config", type=Path, help="config file (default: config.json, or the checkpoint's)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "-r",
        "--resume",
        metavar="CHECKPOINT",
        help="continue from a .pth file or run folder; 'auto' continues the newest run of this config if any",
    )
    start.add_argument("--init-from", metavar="CHECKPOINT", type=Path, help="a new run from a checkpoint's weights")
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="with --init-from: unpickle a checkpoint that holds Python objects (victoresque/pytorch-template's) "
        "and take only its weights; the classes it names become inert stand-ins, never imported",
    )
    add_override_flags(parser)
    return parser.parse_args(argv)


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


def train(args: argparse.Namespace, modules: Registry, watcher: RunWatcher | None = None) -> Path:
    earlier = setup_logging(None)  # until the config says how much to log; kept for train.log
    start = plan_start(args, modules)
    config = start.config
    check_installed(config.trainer.loggers)  # a missing tracker package: one line, before any folder exists
    device = resolve_device(config.device)
    if launched_by_torchrun():
        device = init_distributed(device)
    earlier = setup_logging(None, config.trainer.verbosity, rank(), earlier)  # train.log does not exist yet
    if start.continue_in is not None:
        on_rank_0(RunLock(start.continue_in).acquire)  # a run that is live elsewhere: refused before anything else
    run_dir = start.continue_in
    try:
        with sigterm_interrupts():  # a scheduler's SIGTERM while starting up cleans up as Ctrl-C does
            configure_backends(device, config.deterministic)
            # Build and check all before creating the run folder: a mistake leaves nothing on disk, nor its warnings.
            with warnings_held():
                trainer = build_trainer(config, modules, device)
                restore(trainer, start)
                if (finished := trainer.finished_already()) is not None:
                    return nothing_to_do(finished, start)
                trainer.check_one_batch()
            run_dir = run_dir or on_rank_0(lambda: new_run_dir(start))
            # Only rank 0 logs; a tracker that cannot start refuses in every process, before any record is written.
            trackers = on_rank_0(lambda: open_trackers(config.to_dict(), run_dir, trainer.start_epoch), False) or []
            with closed_on_error(trackers):
                record_start(start, trainer, run_dir, earlier, watcher)
        with closed_on_error(trackers):  # trainer.loggers (logger/trackers.py) get each epoch
            trainer.fit(Checkpointer(run_dir, config.trainer.save_period, config.trainer.keep_last), trackers)
        close_all(trackers, finished=True)
    except (KeyboardInterrupt, UsageError):  # a stop or a refusal before any checkpoint: leave no run folder
        if run_dir is not None and start.continue_in is None and is_main() and not list(run_dir.glob("*.pth")):
            forget_run(run_dir)
            remove_run_dir(run_dir)
        raise
    finally:
        if run_dir is not None:
            RunLock(run_dir).release()
    logger.info("Done. Evaluate with: python test.py -r %s", run_dir)
    return run_dir


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


def main(argv: list[str] | None = None, modules: Registry = PROJECT_MODULES) -> int:
    args = parse_args(argv)
    return run_command(lambda: train(args, modules), args.debug)


if __name__ == "__main__":
    sys.exit(main())
