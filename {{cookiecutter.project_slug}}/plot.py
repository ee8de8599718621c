"""Learning curves of runs, or a table of an experiment's runs.

python plot.py saved/<name>/<run> [RUN...] [-o curves.png]   # loss and each metric, train and val
python plot.py --summary saved/<name>                       # status, epochs, best, test metrics per run
"""

import argparse
import logging
import sys
from pathlib import Path

from logger.logger import setup_logging
from logger.metrics_csv import FILE_NAME, run_history
from logger.plots import PICTURE_FORMATS, draw_curves, matplotlib_figure
from logger.run_summary import summary_table
from logger.runs import differing_settings, find_runs, read_config, run_label
from utils.cli import ArgumentParser, check_output_folder, run_command
from utils.errors import UsageError

logger = logging.getLogger("plot")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="plot.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="a run folder, or saved/<name> for its runs")
    parser.add_argument("-o", "--output", type=Path, help="the picture to write, .png, .pdf, .svg or .jpg (default: "
                        "RUN/curves.png for one run, saved/<name>/curves.png for runs of one experiment, else "
                        "./curves.png)")  # fmt: skip
    parser.add_argument("--summary", action="store_true", help="print a table of the runs instead of plotting")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of errors")
    return parser.parse_args(argv)


def output_path(output: Path | None, runs: list[Path]) -> Path:
    """Where the picture goes; its folder must exist already (a typo creates nothing)."""
    if output is None:
        parents = {run.parent for run in runs}
        folder = runs[0] if len(runs) == 1 else parents.pop() if len(parents) == 1 else Path()
        output = folder / "curves.png"
    check_output_folder(output)
    if output.suffix[1:].lower() not in PICTURE_FORMATS:
        suffixes = ", ".join(f".{name}" for name in PICTURE_FORMATS)
        raise UsageError(f"-o: {str(output)!r} names no picture format plot.py writes; end it in {suffixes}")
    return output


def plot(args: argparse.Namespace) -> None:
    runs = find_runs(args.runs)
    if args.summary:
        if args.output is not None:
            raise UsageError("--summary prints a table; -o names the picture of a plot, so leave it out")
        print(summary_table(runs))
        return
    out = output_path(args.output, runs)
    matplotlib_figure()  # before reading anything: without it, one line on how to install it
    histories = {run: run_history(run) for run in runs}
    runs = [run for run in runs if histories[run]]
    if not runs:
        raise UsageError(f"no finished epoch yet in {', '.join(map(str, histories))} (no rows in {FILE_NAME})")
    for waiting in (run for run, rows in histories.items() if not rows):
        logger.warning("Leaving out %s: no finished epoch yet", waiting)
    settings = differing_settings([read_config(run) for run in runs])
    labels = [run_label(run, differing) for run, differing in zip(runs, settings, strict=True)]
    draw_curves([(label, histories[run]) for label, run in zip(labels, runs, strict=True)], out)
    logger.info("Wrote %s", out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(None)
    return run_command(lambda: plot(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
