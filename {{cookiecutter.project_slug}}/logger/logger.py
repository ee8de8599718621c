"""Logging set-up: the console and, for a run, a log file inside the run folder."""

import logging
import logging.config
from pathlib import Path

VERBOSITY_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}


def setup_logging(log_file: Path | None = None, verbosity: int = 1) -> None:
    """Configure the root logger in code, so it works from any working directory."""
    handlers: dict[str, dict] = {
        "console": {"class": "logging.StreamHandler", "formatter": "brief", "stream": "ext://sys.stderr"},
    }
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
                "brief": {"format": "%(message)s"},
                "full": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            },
            "handlers": handlers,
            "root": {"level": VERBOSITY_LEVELS[verbosity], "handlers": list(handlers)},
        }
    )
