"""Export a trained model for serving, and check it: python export.py -r saved/<name> --format onnx"""

import argparse
import logging
import sys
from pathlib import Path

from inference.exporters import FORMATS, description_path, export_checked, export_format
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

logger = logging.getLogger("export")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="export.py", description=__doc__)
    add_checkpoint_flag(parser)
    parser.add_argument("--format", required=True, help=f"one of {', '.join(FORMATS)}")
    parser.add_argument("-o", "--output", type=Path, help="the file to write (default: beside the checkpoint)")
    add_override_flags(parser, shortcuts=())  # exported on the CPU (below), so no -d
    return parser.parse_args(argv)


def export(args: argparse.Namespace, modules: Registry) -> None:
    spec = export_format(args.format)
    if args.output is not None:
        check_output_folder(args.output)
        if spec.suffix_required and args.output.suffix != spec.suffix:
            renamed = str(args.output.with_suffix(spec.suffix))
            raise UsageError(f"-o {str(args.output)!r}: a {args.format} file's name ends in {spec.suffix}, the only "
                             f"name its loader accepts; use -o {renamed!r}")  # fmt: skip
    # Exported on the CPU, in full precision: the file then runs anywhere the format does.
    trained = load_trained_model(args.resume, [*overrides_from_flags(args), "device=cpu"], modules)
    output = args.output or trained.checkpoint_path.with_suffix(spec.suffix)
    for written in (output, description_path(output)):
        refuse_overwriting(written, [trained.checkpoint_path], "the checkpoint it exports")
    difference, allowed = export_checked(trained, args.format, spec, output, modules)
    print(f"Wrote {output} and {description_path(output).name} ({args.format}, {trained.trained_for})")
    print(f"largest absolute difference from the model on the test batch: {difference:.3g} "
          f"(tolerance {allowed:.3g})")  # fmt: skip


def main(argv: list[str] | None = None, modules: Registry = PROJECT_MODULES) -> int:
    args = parse_args(argv)
    setup_logging(None)  # until the config says how much to log
    return run_command(lambda: export(args, modules), args.debug)


if __name__ == "__main__":
    sys.exit(main())
