"""Evaluate a checkpoint on the test split: python test.py -r saved/<name>/<run>/best.pth"""

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from inference.trained import TrainedModel, load_trained_model
from logger.logger import setup_logging
from logger.plots import INSTALL_HINT, draw_confusion, has_matplotlib
from train import PROJECT_MODULES
from trainer.build import build_loss_and_metrics, trainer_class_named
from trainer.checks import KnownLabels, scores_each_class
from utils.checkpoint import check_same_classes
from utils.class_report import ConfusionMatrix, class_report, format_class_report
from utils.cli import ArgumentParser, add_checkpoint_flag, add_override_flags, overrides_from_flags, run_command
from utils.dist import is_main
from utils.registry import Registry
from utils.util import write_json

logger = logging.getLogger("test")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="test.py", description=__doc__)
    add_checkpoint_flag(parser, metavar="CHECKPOINT")
    add_override_flags(parser, shortcuts=("device", "bs"))
    return parser.parse_args(argv)


def test(args: argparse.Namespace, modules: Registry) -> None:
    trained = load_trained_model(args.resume, overrides_from_flags(args), modules, distributed=True)
    model, checkpoint_path = trained.model, trained.checkpoint_path
    test_loader = trained.data.test_loader(trained.device)
    # The class names are asked for once the split is read: a loader may learn them from the data as it reads it.
    advice = "give the data the checkpoint's class folders back, or train a new run on the data as it is"
    check_same_classes(trained.classes, trained.data.class_names(), checkpoint_path, advice)
    criterion, metrics = build_loss_and_metrics(trained.config, modules)
    trainer_class = trainer_class_named(trained.config, modules)
    evaluator = trainer_class.for_evaluation(criterion, metrics, trained.config.trainer, trained.device)
    # Not held to the class names: a checkpoint trained before its output width was checked against them
    # is still evaluated (confusion_for warns). Every label of a split held in memory must have a score.
    known = KnownLabels(highest_label=test_loader.highest_label)
    first_output, first_target = evaluator.check_batch(model, next(iter(test_loader)), known)
    confusion = confusion_for(first_output, first_target, trained)
    logger.info("Evaluating %s (%s) on the test split", checkpoint_path, trained.trained_for)
    result = evaluator.evaluate(model, test_loader, confusion)

    report = {"checkpoint": checkpoint_path.name, "epoch": trained.epoch, "samples": test_loader.n_samples}
    if trained.mid_epoch is not None:
        report["mid_epoch"] = trained.mid_epoch
    report.update({f"test_{key}": value for key, value in result.items()})
    if trained.classes:
        report["classes"] = ", ".join(trained.classes)
    if confusion is not None:  # under torchrun every process adds its counts in
        report["class_report"] = class_report(confusion.counts(), trained.classes)
    if not is_main():  # the other processes evaluated their share; rank 0 reports the whole split
        return
    for key, value in report.items():  # printed first, so a folder that cannot be written loses nothing
        if key != "class_report":
            print(f"{key:>20}: {value:.4f}" if isinstance(value, float) else f"{key:>20}: {value}")
    if confusion is not None:
        print(format_class_report(report["class_report"]))
    save_report(report, checkpoint_path)


def confusion_for(output: torch.Tensor, targets: Any, trained: TrainedModel) -> ConfusionMatrix | None:
    """A confusion matrix as wide as the model's ``output`` on a batch, or None unless the run is a classification:
    its loader declares class names, and the output is a score per class. The report names its rows by the
    checkpoint's class names only when there is one per output."""
    if not trained.classes:  # regression, segmentation, any task whose loader names no classes
        return None
    if not scores_each_class(output, targets):
        logger.info("No per-class report: the model's output is not one score per class")
        return None
    trained.warn_unnamed_classes(output.size(1), "the class report shows them by index")
    return ConfusionMatrix(output.size(1), output.device)


def save_report(report: dict[str, Any], checkpoint_path: Path) -> None:
    """<checkpoint>.test.json and, with a class report and matplotlib, <checkpoint>.confusion.png beside it."""
    out_path = checkpoint_path.with_name(f"{checkpoint_path.stem}.test.json")
    write_json(report, out_path)
    logger.info("Wrote %s", out_path)
    if "class_report" not in report:
        return
    picture = checkpoint_path.with_name(f"{checkpoint_path.stem}.confusion.png")
    if not has_matplotlib():
        logger.info("No %s: drawing the confusion matrix needs matplotlib: %s", picture.name, INSTALL_HINT)
        return
    matrix = report["class_report"]["confusion_matrix"]
    draw_confusion(matrix["counts"], matrix["classes"], picture)
    logger.info("Wrote %s", picture)


def main(argv: list[str] | None = None, modules: Registry = PROJECT_MODULES) -> int:
    args = parse_args(argv)
    setup_logging(None)  # until the config says how much to log
    return run_command(lambda: test(args, modules), args.debug)


if __name__ == "__main__":
    sys.exit(main())
