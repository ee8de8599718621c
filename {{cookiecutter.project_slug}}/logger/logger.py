"""Logging set-up: the console and, for a run, a log file inside the run folder."""

import logging
import sys
from pathlib import Path

VERBOSITY_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}
# Libraries whose debug records would drown the project's at verbosity 2 (PIL logs every image chunk it reads).
QUIET_LIBRARIES = ("PIL",)


class _Keep(logging.Handler):
    """Keeps records until the run's log file exists (what was decided while starting up belongs in it)."""

    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def setup_logging(
    log_file: Path | None = None, verbosity: int = 1, rank: int = 0, earlier: list[logging.LogRecord] | None = None
) -> list[logging.LogRecord]:
    """Configure the root logger in code, so it works from any working directory.

    Without ``log_file``, records are also kept in the returned list; pass it back as ``earlier``
    with the log file and they are written there first. Under torchrun only rank 0 logs in full and
    to the file; the others report warnings and errors, marked with their rank.
    """
    if rank > 0:
        log_file, verbosity = None, 0
    records = earlier if earlier is not None else []
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(f"[rank {rank}] %(message)s" if rank else "%(message)s"))
    handlers: list[logging.Handler] = [console]
    if log_file is None:
        handlers.append(_Keep(records))
    else:
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        for record in records:
            to_file.handle(record)
        handlers.append(to_file)
    logging.basicConfig(level=VERBOSITY_LEVELS[verbosity], handlers=handlers, force=True)
    for library in QUIET_LIBRARIES:
        logging.getLogger(library).setLevel(max(logging.INFO, VERBOSITY_LEVELS[verbosity]))
    return records if log_file is None else []
