"""Train a model: python train.py -c config.json [overrides]. See README.md for every flag."""

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

import data_loader.data_loaders
import model.loss
import model.metric
import model.model
from base.loaders import ResidentLoader
from logger.logger import setup_logging
from logger.visualization import TensorboardWriter
from parse_config import Config, ObjectSpec, Registry, load_config
from trainer.build import build_trainer
from trainer.checkpoint import Checkpointer, create_run_dir
from trainer.trainer import Trainer
from utils.checkpoint import find_checkpoint, load_checkpoint
from utils.cli import add_override_flags, overrides_from_flags, run_command
from utils.dist import broadcast, describe_world, init_distributed, is_distributed, is_main, launched_by_torchrun, rank
from utils.errors import UsageError
from utils.settings import from_dict
from utils.util import configure_backends, resolve_device, write_json

logger = logging.getLogger("train")

# The modules (yours) in which config.json's names are looked up.
PROJECT_MODULES = Registry(
    models=model.model, data_loaders=data_loader.data_loaders, losses=model.loss, metrics=model.metric
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-c", "--config", type=Path, help="config file (default: config.json, or the checkpoint's)")
    parser.add_argument(
        "-r",
        "--resume",
        metavar="CHECKPOINT",
        help="continue from a .pth file or run folder; 'auto' continues the newest run of this config if any",
    )
    add_override_flags(parser)
    return parser.parse_args(argv)


def load_run(args: argparse.Namespace) -> tuple[Config, Path | None, dict[str, Any] | None]:
    """The run's config and, when resuming, the checkpoint's path and contents.

    Resuming takes the checkpoint's config unless ``-c`` names a file; overrides apply on top.
    """
    overrides = overrides_from_flags(args)
    if args.resume is not None and args.resume != "auto":
        path = find_checkpoint(Path(args.resume), prefer=("last.pth", "best.pth"))
        checkpoint = load_checkpoint(path)
        return load_config(args.config, overrides, recorded=checkpoint["config"]), path, checkpoint
    config = load_config(args.config or Path("config.json"), overrides)
    if args.resume == "auto":
        # A requeued job runs the same command again: find its newest run where this config saves them.
        path = newest_checkpoint(Path(config.trainer.save_dir) / config.name)
        if path is not None:
            checkpoint = load_checkpoint(path)
            if args.config is None:
                config = load_config(None, overrides, recorded=checkpoint["config"])
            return config, path, checkpoint
        logger.info("--resume auto: no earlier run of %r to continue; starting a new one", config.name)
    return config, None, None


def newest_checkpoint(experiment: Path) -> Path | None:
    try:
        return find_checkpoint(experiment, prefer=("last.pth",)) if experiment.is_dir() else None
    except UsageError:
        return None


def open_run_dir(config: Config, checkpoint_path: Path | None, checkpoint: dict[str, Any] | None) -> Path:
    """The resumed run's own folder, or a new one made by rank 0; records the config either way."""
    if checkpoint_path is not None and checkpoint is not None:
        run_dir = checkpoint_path.parent
        if checkpoint["config"] != config.to_dict() and is_main():
            write_json(config.to_dict(), unused_path(run_dir / f"config-resume-{checkpoint['epoch']}.json"))
        return run_dir
    run_dir = None
    if is_main():
        run_dir = create_run_dir(Path(config.trainer.save_dir), config.name)
        write_json(config.to_dict(), run_dir / "config.json")
    return broadcast(run_dir)  # one run folder, made by rank 0


def unused_path(path: Path) -> Path:
    """``path``, or ``name-2.json``, ``name-3.json``... if taken: a later resume never overwrites a record."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def check_arch_unchanged(config: Config, checkpoint: dict[str, Any] | None) -> None:
    if checkpoint is None:
        return
    recorded = checkpoint["config"].get("arch")
    if from_dict(ObjectSpec, recorded, "arch", strict=False) != config.arch:
        raise UsageError(
            f"arch: cannot change when resuming (the checkpoint has {json.dumps(recorded)}); "
            "keep the checkpoint's arch, or start a new run with -c and no -r"
        )


def log_setup(config: Config, trainer: Trainer, device: torch.device) -> None:
    if is_distributed():
        logger.info("Distributed: %s", describe_world())
    amp = trainer.amp_dtype
    precision = str(amp).removeprefix("torch.") if amp else "off"
    logger.info("Device: %s (config asks for %r), mixed precision: %s", device, config.device, precision)
    loader = trainer.train_loader
    if isinstance(loader, ResidentLoader):
        logger.info("Data: %d samples held on %s (device-resident)", loader.n_samples, device)
    else:
        logger.info("Data: DataLoader with %d worker(s)", loader.num_workers)
    logger.debug("%s", trainer.model)


def train(args: argparse.Namespace, modules: Registry) -> None:
    config, checkpoint_path, checkpoint = load_run(args)
    check_arch_unchanged(config, checkpoint)
    device = resolve_device(config.device)
    if launched_by_torchrun():
        device = init_distributed(device)
    setup_logging(None, config.trainer.verbosity, rank())  # console only until the run folder exists
    configure_backends(device, config.deterministic)
    # Build everything before creating the run folder, so a mistake leaves nothing on disk.
    trainer = build_trainer(config, modules, device)
    if checkpoint is not None:
        trainer.load_state_dict(checkpoint, checkpoint_path)
    run_dir = open_run_dir(config, checkpoint_path, checkpoint)
    del checkpoint
    setup_logging(run_dir / "train.log", config.trainer.verbosity, rank())
    logger.info("Run folder: %s", run_dir)
    log_setup(config, trainer, device)
    settings = config.trainer
    writer = TensorboardWriter(run_dir, settings.tensorboard and is_main(), purge_step=trainer.start_epoch)
    try:
        trainer.fit(Checkpointer(run_dir, settings.save_period, settings.keep_last), writer)
    finally:
        writer.close()
    logger.info("Done. Evaluate with: python test.py -r %s", run_dir)


def main(argv: list[str] | None = None, modules: Registry = PROJECT_MODULES) -> int:
    args = parse_args(argv)
    setup_logging(None)  # until the config says how much to log
    return run_command(lambda: train(args, modules), args.debug)


if __name__ == "__main__":
    sys.exit(main())
