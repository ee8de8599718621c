"""Logging set-up: the console and, for a run, a log file inside the run folder."""

import logging
import sys
from pathlib import Path

VERBOSITY_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}


def setup_logging(log_file: Path | None = None, verbosity: int = 1, rank: int = 0) -> None:
    """Configure the root logger in code, so it works from any working directory.

    Under torchrun only rank 0 logs in full and to the file; the others report warnings and errors,
    marked with their rank.
    """
    if rank > 0:
        log_file, verbosity = None, 0
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(f"[rank {rank}] %(message)s" if rank else "%(message)s"))
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(to_file)
    logging.basicConfig(level=VERBOSITY_LEVELS[verbosity], handlers=handlers, force=True)
