"""A graceful stop on SIGINT (Ctrl-C) or SIGTERM (what a scheduler sends before preemption)."""

import logging
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType

import torch
import torch.distributed as dist

from utils.dist import all_reduce, is_distributed, launched_by_torchrun

logger = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# torchrun SIGKILLs its processes 30 s after it passes a SIGTERM on: they vote to stop at least this often, so
# that the step in progress, the vote and the save fit in that time.
VOTE_SECONDS = 5.0


class GracefulStop:
    """Inside ``with``, the first SIGINT or SIGTERM only records a request: the training loop lets the
    current step finish, saves, and stops (see ``agreed``). A second signal ends the process at once."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._previous: dict[int, object] = {}
        # Under torchrun: vote every ``_vote_every`` calls of ``agreed``, a number all processes work out alike.
        self._vote_every, self._calls_since_vote, self._last_vote = 1, 0, time.perf_counter()

    def __enter__(self) -> "GracefulStop":
        self._previous = {sig: signal.signal(sig, self._request) for sig in STOP_SIGNALS}
        self._last_vote = time.perf_counter()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _request(self, signum: int, frame: FrameType | None) -> None:
        # Restore the defaults first, so a second signal ends the process even during this handler.
        # Under torchrun a Ctrl-C or scancel reaches every process and torchrun then forwards a
        # SIGTERM of its own: ignore that one; torchrun kills what is left after its timeout.
        after = signal.SIG_IGN if launched_by_torchrun() else signal.SIG_DFL
        for sig in STOP_SIGNALS:
            signal.signal(sig, after)
        self.signal_number = signum
        again = "" if launched_by_torchrun() else " (send it again to stop at once)"
        logger.warning("%s received: finishing the current step, then saving%s", signal.Signals(signum).name, again)

    def agreed(self, must_vote: bool, device: torch.device) -> bool:
        """Whether to stop now. Under torchrun a signal may reach the processes at different steps, so
        they vote, and stop together: where ``must_vote`` (the same calls in every process), and every
        ``_vote_every`` calls besides, as many as take about ``VOTE_SECONDS`` in the slowest process."""
        if not is_distributed():
            return self.signal_number is not None
        self._calls_since_vote += 1
        if not must_vote and self._calls_since_vote < self._vote_every:
            return False
        seconds_per_call = (time.perf_counter() - self._last_vote) / self._calls_since_vote
        vote = torch.tensor([self.signal_number or 0, seconds_per_call], dtype=torch.float64, device=device)
        signal_number, slowest = all_reduce(vote, dist.ReduceOp.MAX).tolist()  # the same numbers everywhere
        self._vote_every = max(1, int(VOTE_SECONDS / slowest)) if slowest > 0 else 1
        self._calls_since_vote, self._last_vote = 0, time.perf_counter()
        if signal_number:
            self.signal_number = self.signal_number or int(signal_number)
        return bool(signal_number)

    def name(self) -> str:
        return signal.Signals(self.signal_number).name


def ignore_stop_signals() -> None:
    """For worker processes (DataLoader workers): leave SIGINT and SIGTERM to the main process. A scheduler
    (scancel, a preemption) and a terminal's Ctrl-C signal the whole process group; a worker killed by one
    would fail the main process while it saves. The main process ends its workers when it is done."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Inside ``with``, SIGTERM raises KeyboardInterrupt (with its ``signal_number``) as Ctrl-C does, so what
    a run's start-up made is cleaned up; the training loop's GracefulStop takes over while it trains."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        error = KeyboardInterrupt()
        error.signal_number = signum  # type: ignore[attr-defined]
        raise error

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
