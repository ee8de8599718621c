"""``--jobs J``: J worker processes on this machine, each running its share of the trials on the shared study.

The workers are this same command with ``--jobs 1`` and their share; they coordinate only through the
study's storage. Each runs in its own session, so a Ctrl-C in the terminal reaches this process alone and
is passed on once: every worker saves its trial's state and stops, as train.py does. A hang-up (the terminal
or SSH session closed) stops them the same way: it would not reach them at all in their own sessions.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path

from utils.signals import STOP_SIGNALS

# The signal each worker gets for one that reaches this process. SIGHUP is passed on as SIGTERM, which a
# trial saves on; a worker's own SIGHUP would end it at once, mid-step, its trial left running.
PASSED_ON = {sig: sig for sig in STOP_SIGNALS}
if hasattr(signal, "SIGHUP"):  # not on Windows
    PASSED_ON[signal.SIGHUP] = signal.SIGTERM


def shares(count: int, jobs: int) -> list[int]:
    """``count`` trials split as evenly as possible among ``jobs`` workers (none gets 0 while another gets 2)."""
    return [count // jobs + (index < count % jobs) for index in range(min(jobs, count))]


def run_workers(script: Path, argv: list[str], work: list[int]) -> int:
    """Start one ``python script argv --share N`` per entry of ``work``, wait for all; the first failure's exit
    code (a stop signal's 128+N), else 0. A worker that fails ends the sweep: the others are stopped as a
    Ctrl-C stops them (their trials saved, for the rerun that continues the study), not left to run for hours
    after the error line."""
    commands = [[sys.executable, str(script), *argv, "--share", str(count)] for count in work]
    workers = [subprocess.Popen(command, start_new_session=True) for command in commands]
    stopped = False  # a second signal would end a worker at once, mid-save: each gets one

    def stop_all(signum: int) -> None:
        nonlocal stopped
        stopped = True
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    previous = {sig: signal.signal(sig, lambda signum, frame: stop_all(PASSED_ON[signum])) for sig in PASSED_ON}
    try:
        first_failure = 0
        while any(worker.poll() is None for worker in workers):
            if not stopped and (first_failure := failure_code(workers)):
                stop_all(signal.SIGTERM)
            time.sleep(0.1)
        first_failure = first_failure or failure_code(workers)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - first_failure if first_failure < 0 else first_failure  # Popen says -N for signal N


def failure_code(workers: list[subprocess.Popen[bytes]]) -> int:
    """The exit code of the first ended worker that failed, else 0."""
    return next((worker.returncode for worker in workers if worker.returncode not in (None, 0)), 0)
