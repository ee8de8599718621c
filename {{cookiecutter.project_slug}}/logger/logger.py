"""Logging set-up: the console and, for a run, a log file inside the run folder."""

import logging
import logging.config
from pathlib import Path

VERBOSITY_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}


def setup_logging(log_file: Path | None = None, verbosity: int = 1, rank: int = 0) -> None:
    """Configure the root logger in code, so it works from any working directory.

    Under torchrun only rank 0 logs in full and to the file; the others report warnings and errors,
    marked with their rank.
    """
    handlers: dict[str, dict] = {
        "console": {"class": "logging.StreamHandler", "formatter": "brief", "stream": "ext://sys.stderr"},
    }
    if rank > 0:
        log_file, verbosity = None, 0
    if log_file is not None:
        handlers["file"] = {
            "class": "logging.FileHandler",
            "formatter": "full",
            "filename": str(log_file),
            "encoding": "utf-8",
        }
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "brief": {"format": f"[rank {rank}] %(message)s" if rank else "%(message)s"},
                "full": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            },
            "handlers": handlers,
            "root": {"level": VERBOSITY_LEVELS[verbosity], "handlers": list(handlers)},
        }
    )
