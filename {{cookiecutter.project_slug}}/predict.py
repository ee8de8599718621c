"""Predict with a trained model: python predict.py -r saved/<name> images/ -o predictions.csv classifies image
files; for other data, INPUT files are read by the data loader's read_inputs (a CSV of rows), or --split test
predicts on a split, writing the outputs to -o's .csv or .pt file."""

import argparse
import logging
import sys
from pathlib import Path

from base.image_data_loader import ImageDataLoader
from inference.classify import classify_files, write_predictions
from inference.image_files import find_images
from inference.predictions import predict_outputs
from inference.trained import TrainedModel, load_trained_model
from logger.logger import setup_logging
from train import PROJECT_MODULES
from utils.cli import (
    ArgumentParser,
    add_checkpoint_flag,
    add_override_flags,
    check_output_folder,
    overrides_from_flags,
    refuse_overwriting,
    run_command,
)
from utils.errors import UsageError
from utils.registry import Registry

logger = logging.getLogger("predict")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="predict.py", description=__doc__)
    add_checkpoint_flag(parser)
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders (searched below) or globs; "
                        "for other data, files the data loader's read_inputs reads")  # fmt: skip
    parser.add_argument("--split", choices=("train", "test"), help="predict on this split of the run's data instead")
    parser.add_argument("-o", "--output", type=Path, default=Path("predictions.csv"),
                        help="the file to write: .csv, or .pt (other data's outputs as a tensor)")  # fmt: skip
    parser.add_argument("--top-k", type=int, default=3, metavar="K", help="how many classes to list per image")
    add_override_flags(parser, shortcuts=("device", "bs"))
    args = parser.parse_args(argv)
    if not args.inputs and args.split is None:
        parser.error("the following arguments are required: INPUT (or --split train|test)")
    if args.inputs and args.split is not None:
        parser.error("give INPUT files or --split, not both")
    return args


def predict(args: argparse.Namespace, modules: Registry) -> None:
    if args.top_k < 1:
        raise UsageError(f"--top-k: expected an integer >= 1, got {args.top_k}")
    check_output_folder(args.output)
    trained = load_trained_model(args.resume, overrides_from_flags(args), modules)
    if args.split is not None or not isinstance(trained.data, ImageDataLoader):
        sources = [args.split] if args.split is not None else [Path(text) for text in args.inputs]
        count = predict_outputs(trained, sources, args.output, modules)
        logger.info("Wrote the outputs on %d sample(s) of %s (%s) to %s", count, trained.checkpoint_path,
                    trained.trained_for, args.output)  # fmt: skip
        return
    classify_images(args, trained)


def classify_images(args: argparse.Namespace, trained: TrainedModel) -> None:
    """The image files ``args.inputs`` names, classified (top ``args.top_k`` classes) into ``args.output``'s CSV."""
    paths = find_images(args.inputs)
    refuse_overwriting(args.output, paths, "one of the input images")
    result = classify_files(trained, paths, args.top_k)
    if not result.predictions:
        path, reason = result.unreadable[0]
        raise UsageError(f"none of the {len(paths)} image file(s) could be read ({path}: {reason})")
    for path, reason in result.unreadable:
        logger.warning("warning: skipped %s: %s", path, reason)
    trained.warn_unnamed_classes(result.classes_scored, "classes without a name are written as their index")
    write_predictions(result.predictions, trained.class_name, args.output)
    skipped = f"; skipped {len(result.unreadable)} unreadable file(s), listed above" if result.unreadable else ""
    logger.info("Wrote %d prediction(s) of %s (%s) to %s%s", len(result.predictions), trained.checkpoint_path,
                trained.trained_for, args.output, skipped)  # fmt: skip


def main(argv: list[str] | None = None, modules: Registry = PROJECT_MODULES) -> int:
    args = parse_args(argv)
    setup_logging(None)  # until the config says how much to log
    return run_command(lambda: predict(args, modules), args.debug)


if __name__ == "__main__":
    sys.exit(main())
