"""Train a model: python train.py -c config.json [overrides]. See README.md for every flag."""

import argparse
import json
import logging
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.metric as module_metric
import model.model as module_arch
from base.base_data_loader import BaseDataLoader
from data_loader.resident import ResidentLoader
from logger.logger import setup_logging
from parse_config import ConfigError, ConfigParser, create_run_dir, shortcut_overrides
from trainer.trainer import Trainer
from utils.checkpoint import find_checkpoint, load_checkpoint
from utils.dist import broadcast, init_distributed, is_distributed, is_main, launched_by_torchrun, rank, world_size
from utils.util import (
    NonFiniteLossError,
    TrainingStopped,
    configure_backends,
    resolve_amp,
    resolve_device,
    seed_everything,
    write_json,
)

logger = logging.getLogger("train")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-c", "--config", type=Path, help="config file (default: config.json, or the checkpoint's)")
    parser.add_argument(
        "-r",
        "--resume",
        metavar="CHECKPOINT",
        help="continue from a .pth file or run folder; 'auto' continues the newest run of this config if any",
    )
    parser.add_argument("-d", "--device", help="auto, cpu, cuda or cuda:N (overrides the config's device)")
    parser.add_argument("--lr", type=float, help="shortcut for --set optimizer.args.lr=LR")
    parser.add_argument("--bs", type=int, help="shortcut for --set data_loader.args.batch_size=BS")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override any config key; VALUE is JSON (a bare word is a string); repeatable",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of errors")
    return parser.parse_args(argv)


def resume_path(args: argparse.Namespace) -> Path | None:
    """The checkpoint that ``--resume`` names; for ``auto``, the newest run's last.pth, or None if none yet."""
    if args.resume is None:
        return None
    if args.resume != "auto":
        return find_checkpoint(Path(args.resume), prefer=("last.pth", "best.pth"))
    # A requeued job runs the same command again: find its runs where this config saves them.
    config = ConfigParser.load(args.config or Path("config.json"), shortcut_overrides(args))
    experiment = Path(config["trainer"]["save_dir"]) / config["name"]
    if not experiment.is_dir():
        return None
    try:
        return find_checkpoint(experiment, prefer=("last.pth",))
    except ConfigError:
        return None


def build_trainer(config: ConfigParser, device: torch.device) -> Trainer:
    """Seed, then build the data, model, loss, metrics, optimizer and scheduler the config names."""
    seed_everything(config["seed"] + rank())  # own dropout masks per process; DDP syncs the weights
    data_loader = config.init_obj("data_loader", module_data, seed=config["seed"], base=BaseDataLoader)
    train_loader, valid_loader = data_loader.loaders_for(device)
    model = config.init_obj("arch", module_arch, base=torch.nn.Module).to(device)
    optimizer = config.init_obj("optimizer", torch.optim, model.parameters(), base=torch.optim.Optimizer)
    lr_scheduler = None
    if config.get("lr_scheduler") is not None:
        lr_scheduler = config.init_obj(
            "lr_scheduler", torch.optim.lr_scheduler, optimizer, base=torch.optim.lr_scheduler.LRScheduler
        )
    return Trainer(
        model,
        config.function("loss", config["loss"], module_loss),
        [config.function("metrics", name, module_metric) for name in config["metrics"]],
        optimizer,
        config,
        device,
        data_loader=train_loader,
        valid_data_loader=valid_loader,
        lr_scheduler=lr_scheduler,
    )


def train(args: argparse.Namespace) -> None:
    checkpoint_path = resume_path(args)
    checkpoint = load_checkpoint(checkpoint_path) if checkpoint_path is not None else None
    config_path = args.config if args.config or checkpoint else Path("config.json")
    config = ConfigParser.load(config_path, shortcut_overrides(args), base=checkpoint["config"] if checkpoint else None)
    if checkpoint is not None and config["arch"] != checkpoint["config"]["arch"]:
        raise ConfigError(
            f"arch: cannot change when resuming (the checkpoint has {json.dumps(checkpoint['config']['arch'])}); "
            "keep the checkpoint's arch, or start a new run with -c and no -r"
        )
    device = resolve_device(config["device"])
    if launched_by_torchrun():
        device = init_distributed(device)
    setup_logging(None, config["trainer"]["verbosity"], rank())  # console only until the run folder exists
    if args.resume == "auto" and checkpoint is None:
        logger.info("--resume auto: no earlier run of %r to continue; starting a new one", config["name"])

    configure_backends(device, config["deterministic"])

    # Build everything before creating the run folder, so a mistake leaves nothing on disk.
    trainer = build_trainer(config, device)

    if checkpoint is not None:
        trainer.load_state_dict(checkpoint, checkpoint_path)
        run_dir = checkpoint_path.parent  # a resumed run continues in its own folder
        if checkpoint["config"] != config.config and is_main():
            write_json(config.config, unused_path(run_dir / f"config-resume-{checkpoint['epoch']}.json"))
        del checkpoint
    else:
        run_dir = None
        if is_main():
            run_dir = create_run_dir(Path(config["trainer"]["save_dir"]), config["name"])
            write_json(config.config, run_dir / "config.json")
        run_dir = broadcast(run_dir)  # one run folder, made by rank 0
    setup_logging(run_dir / "train.log", config["trainer"]["verbosity"], rank())
    logger.info("Run folder: %s", run_dir)
    if is_distributed():
        logger.info("Distributed: %s", describe_world())
    amp = resolve_amp(config["trainer"]["amp"], device)
    logger.info(
        "Device: %s (config asks for %r), mixed precision: %s",
        device,
        config["device"],
        str(amp).removeprefix("torch.") if amp else "off",
    )
    if isinstance(trainer.data_loader, ResidentLoader):
        logger.info("Data: %d samples held on %s (device-resident)", trainer.data_loader.n_samples, device)
    else:
        logger.info("Data: DataLoader with %d worker(s)", trainer.data_loader.num_workers)
    logger.debug("%s", trainer.model)
    trainer.train(run_dir)
    logger.info("Done. Evaluate with: python test.py -r %s", run_dir)


def describe_world() -> str:
    """World size, backend and which ranks run on which host, for the first lines of the log."""
    hosts: list[str | None] = [None] * world_size()
    dist.all_gather_object(hosts, socket.gethostname())
    layout = {host: [r for r, h in enumerate(hosts) if h == host] for host in dict.fromkeys(hosts)}
    nodes = "; ".join(f"{host}: ranks {', '.join(map(str, ranks))}" for host, ranks in layout.items())
    return f"world size {world_size()}, backend {dist.get_backend()}, {nodes}"


def unused_path(path: Path) -> Path:
    """``path``, or ``name-2.json``, ``name-3.json``... if taken: a later resume never overwrites a record."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        train(args)
    except ConfigError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        logger.error("error: %s", err)
        return 1
    except TrainingStopped as err:
        logger.warning("%s", err)
        return err.exit_code
    finally:
        if is_distributed():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
