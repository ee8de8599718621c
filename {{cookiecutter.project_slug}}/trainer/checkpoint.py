"""The run folder, its lock and the checkpoints kept in it (``Checkpointer``). A stop part way through
an epoch records where in ``last.pth`` (``mid_epoch``), so a resumed run can finish that epoch exactly.
Writing is atomic (utils/checkpoint.py); only rank 0 writes.
"""

import json
import logging
import os
import shutil
import socket
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
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        experiment.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 1000):
            run_dir = experiment / (stamp if attempt == 1 else f"{stamp}-{attempt}")
            try:
                # atomic: exactly one process wins each name; parents=True in case another run's clean-up
                # (remove_run_dir) has just removed the experiment folder, empty, since the line above
                run_dir.mkdir(parents=True)
            except FileExistsError:
                continue
            return run_dir
    except OSError as err:  # save_dir is a file, read-only, full, not ours...
        reason = err.strerror or str(err)
        raise UsageError(f"trainer.save_dir: cannot create a run folder in {str(experiment)!r}: {reason}") from None
    raise UsageError(f"trainer.save_dir: could not create a new run folder in {str(experiment)!r}")


def remove_run_dir(run_dir: Path) -> None:
    """Remove a run folder, and the experiment and save_dir folders that it leaves empty: a run refused or
    stopped before its first checkpoint leaves nothing behind."""
    shutil.rmtree(run_dir, ignore_errors=True)
    for folder in (run_dir.parent, run_dir.parent.parent):
        try:
            folder.rmdir()  # only an empty one
        except OSError:
            return


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
        # last.pth goes last: it is what a resume starts from, so a kill before it only replays this
        # epoch, which rewrites best.pth and epoch-N.pth the same way.
        if improved:
            save_checkpoint(state, self.run_dir / "best.pth")
        if epoch % self.save_period == 0:
            save_checkpoint(state, self.run_dir / f"epoch-{epoch}.pth")
        save_checkpoint(state, self.last)
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
        periodic = [path for path in self.run_dir.glob("epoch-*.pth") if path.stem[6:].isdigit()]  # not yours
        periodic.sort(key=lambda path: int(path.stem[6:]))
        for old in periodic[: -self.keep_last]:
            old.unlink()


class RunLock:
    """``run.lock`` in a run folder: one training process (or torchrun group, through rank 0) at a time.

    A second process is refused with one line naming the holder; a lock left by a process that died on
    this host is taken over. Locks held on another host are trusted until removed by hand.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "run.lock"

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now().isoformat(timespec="seconds")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()  # raises while the holder is alive
                continue
            except OSError as err:
                raise UsageError(f"cannot write {str(self.path)!r}: {err.strerror}; fix its permissions") from None
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
            return
        raise UsageError(f"run folder {str(self.path.parent)!r} was locked by another process just now; try again")

    def _holder(self) -> tuple[int, str, str]:
        """(pid, host, since) of the process holding the lock; an unreadable lock counts as left behind."""
        try:
            holder = json.loads(self.path.read_text())
            return int(holder["pid"]), str(holder["host"]), str(holder.get("since", "?"))
        except (OSError, ValueError, KeyError, TypeError):
            return -1, socket.gethostname(), "?"

    def _take_over_if_stale(self) -> None:
        pid, host, since = self._holder()
        if process_gone(pid, host):
            logger.warning("Taking over %s, left by process %s that is no longer running", self.path, pid)
            self.path.unlink(missing_ok=True)
            return
        raise UsageError(
            f"run folder {str(self.path.parent)!r} is in use by process {pid} on {host} (since {since}); "
            f"wait for it to finish or stop it (if it is gone, delete {str(self.path)!r})"
        )

    def held(self) -> bool:
        """Whether a live process holds the lock: a run that is training now (one on another host is trusted)."""
        if not self.path.is_file():
            return False
        pid, host, _ = self._holder()
        return not process_gone(pid, host)

    def release(self) -> None:
        """Remove the lock if this process holds it (any process may call this)."""
        if self.path.is_file() and self._holder()[:2] == (os.getpid(), socket.gethostname()):
            self.path.unlink(missing_ok=True)


def process_gone(pid: int, host: str) -> bool:
    """Whether process ``pid`` of ``host`` has ended; a process of another host cannot be checked (False)."""
    if host != socket.gethostname():
        return False
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # someone else's process
    return False
