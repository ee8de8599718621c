"""Classify image files with a trained model: python predict.py -r saved/<name> images/ -o predictions.csv"""

import argparse
import logging
import sys
from pathlib import Path

from base.image_data_loader import ImageDataLoader
from inference.classify import classify_files, write_predictions
from inference.image_files import find_images
from inference.trained import load_trained_model
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
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (searched below) or globs")
    parser.add_argument("-o", "--output", type=Path, default=Path("predictions.csv"), help="the CSV to write")
    parser.add_argument("--top-k", type=int, default=3, metavar="K", help="how many classes to list per image")
    add_override_flags(parser, shortcuts=("device", "bs"))
    return parser.parse_args(argv)


def predict(args: argparse.Namespace, modules: Registry) -> None:
    if args.top_k < 1:
        raise UsageError(f"--top-k: expected an integer >= 1, got {args.top_k}")
    check_output_folder(args.output)
    trained = load_trained_model(args.resume, overrides_from_flags(args), modules)
    if not isinstance(trained.data, ImageDataLoader):
        raise UsageError(
            f"predict.py classifies image files, and {type(trained.data).__name__} is not an ImageDataLoader; "
            "evaluate the run on its test split with test.py -r instead"
        )
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
