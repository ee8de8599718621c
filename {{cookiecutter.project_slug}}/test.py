"""Evaluate a checkpoint on the test split: python test.py -r saved/<name>/<run>/best.pth"""

import argparse
import logging
import sys
from pathlib import Path

import torch

import data_loader.data_loaders as module_data
import model.loss as module_loss
import model.metric as module_metric
import model.model as module_arch
from base.base_data_loader import BaseDataLoader
from logger.logger import setup_logging
from parse_config import ConfigError, ConfigParser, shortcut_overrides
from trainer.trainer import evaluate
from utils.checkpoint import find_checkpoint, load_checkpoint, load_model_weights
from utils.util import resolve_amp, resolve_device, write_json

logger = logging.getLogger("test")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "-r",
        "--resume",
        type=Path,
        required=True,
        metavar="CHECKPOINT",
        help="a .pth file, a run folder (uses best.pth, else last.pth) or saved/<name> (newest run)",
    )
    parser.add_argument("-d", "--device", help="auto, cpu, cuda or cuda:N (default: the checkpoint's)")
    parser.add_argument("--bs", type=int, help="shortcut for --set data_loader.args.batch_size=BS")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of errors")
    return parser.parse_args(argv)


def test(args: argparse.Namespace) -> dict[str, float]:
    checkpoint_path = find_checkpoint(args.resume)
    checkpoint = load_checkpoint(checkpoint_path)
    config = ConfigParser.load(None, shortcut_overrides(args), base=checkpoint["config"])
    setup_logging(None, config["trainer"]["verbosity"])
    device = resolve_device(config["device"])

    data_loader = config.init_obj("data_loader", module_data, training=False, seed=config["seed"], base=BaseDataLoader)
    model = config.init_obj("arch", module_arch, base=torch.nn.Module)
    load_model_weights(model, checkpoint["model"], checkpoint_path)
    model.to(device)
    criterion = config.function("loss", config["loss"], module_loss)
    metrics = [config.function("metrics", name, module_metric) for name in config["metrics"]]

    amp_dtype = resolve_amp(config["trainer"]["amp"], device)
    test_loader, _ = data_loader.loaders_for(device)
    result = evaluate(model, test_loader, criterion, metrics, device, amp_dtype)
    report = {"checkpoint": checkpoint_path.name, "epoch": checkpoint["epoch"], "samples": data_loader.n_samples}
    report.update({f"test_{key}": value for key, value in result.items()})
    out_path = checkpoint_path.with_name(f"{checkpoint_path.stem}.test.json")
    write_json(report, out_path)
    for key, value in report.items():
        print(f"{key:>20}: {value:.4f}" if isinstance(value, float) else f"{key:>20}: {value}")
    logger.info("Wrote %s", out_path)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        test(args)
    except ConfigError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
