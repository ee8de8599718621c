"""The run folder and the checkpoints kept in it.

After every epoch ``last.pth``; ``best.pth`` whenever the monitored metric improves; ``epoch-N.pth``
every ``save_period`` epochs, keeping the newest ``keep_last``. When a stop signal arrives part way
through an epoch, ``last.pth`` records where (``mid_epoch``), so a resumed run can finish that epoch
exactly. Writing is atomic (utils/checkpoint.py); only rank 0 writes.
"""

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from utils.checkpoint import save_checkpoint
from utils.dist import barrier, is_main
from utils.errors import UsageError

logger = logging.getLogger(__name__)


def create_run_dir(save_dir: Path, name: str) -> Path:
    """Make ``save_dir/name/<timestamp>``; a run started in the same second gets ``-2``, ``-3``, ..."""
    experiment = Path(save_dir) / name
    experiment.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 1000):
        run_dir = experiment / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            run_dir.mkdir()  # atomic: exactly one process wins each name
        except FileExistsError:
            continue
        return run_dir
    raise UsageError(f"trainer.save_dir: could not create a new run folder in {str(experiment)!r}")


class Checkpointer:
    """Decides which checkpoint files a run writes, and writes them into ``run_dir``."""

    def __init__(self, run_dir: Path, save_period: int, keep_last: int) -> None:
        self.run_dir = run_dir
        self.save_period = save_period
        self.keep_last = keep_last
        self.last = run_dir / "last.pth"

    def remove_stale_temp_files(self) -> None:
        """Temporary files that a process killed while saving left behind."""
        for stale in self.run_dir.glob(".*.tmp") if is_main() else ():
            logger.info("Removing %s, left by a run killed while saving", stale.name)
            stale.unlink()

    def save_epoch(self, state: dict[str, Any], epoch: int, improved: bool) -> None:
        """The end of an epoch: last.pth, best.pth if it ``improved``, epoch-N.pth every save_period epochs."""
        if not is_main():  # the other processes hold the same weights; one copy on disk is enough
            return
        save_checkpoint(state, self.last)
        if improved:
            save_checkpoint(state, self.run_dir / "best.pth")
        if epoch % self.save_period == 0:
            save_checkpoint(state, self.run_dir / f"epoch-{epoch}.pth")
            self._prune_periodic()

    def save_mid_epoch(self, state: dict[str, Any], epoch: int, step: int, metric_sums: dict[str, Any]) -> None:
        """last.pth part way through ``epoch``: ``state`` is the model after ``step`` steps, ``metric_sums``
        the epoch's running totals so far."""
        if is_main():
            mid_epoch = {"epoch": epoch, "step": step, "metric_sums": metric_sums}
            save_checkpoint({**state, "mid_epoch": mid_epoch}, self.last)
        barrier()  # nobody reports "saved" before it is

    def _prune_periodic(self) -> None:
        """Keep the newest ``keep_last`` epoch-N.pth files (0 keeps all), so long runs do not fill the disk."""
        if self.keep_last == 0:
            return
        periodic = sorted(self.run_dir.glob("epoch-*.pth"), key=lambda path: int(path.stem.split("-")[1]))
        for old in periodic[: -self.keep_last]:
            old.unlink()
