"""The epoch loop every trainer shares: monitoring, early stopping, checkpoints and resume."""

import logging
import math
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import nn

{% if cookiecutter.tensorboard -%}
from logger.visualization import TensorboardWriter
{% endif -%}
from parse_config import ConfigParser, Monitor
from utils.checkpoint import load_model_weights, save_checkpoint
from utils.dist import all_reduce, barrier, is_distributed, is_main, launched_by_torchrun
from utils.util import ConfigError, TrainingStopped, rng_state, set_rng_state

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


class BaseTrainer(ABC):
    """Runs ``_train_epoch`` for each epoch and decides what to keep.

    After every epoch it writes ``last.pth``; ``best.pth`` whenever the monitored metric improves;
    ``epoch-N.pth`` every ``save_period`` epochs (keeping the newest ``keep_last``). It stops after
    ``early_stop`` epochs in a row without improvement, once the final state is on disk.

    SIGINT or SIGTERM (what a scheduler sends before preemption) lets the current step finish,
    saves ``last.pth`` part way through the epoch, and raises ``TrainingStopped``; a second
    signal ends the process at once.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        config: ConfigParser,
        lr_scheduler: Any = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.config = config
        self.run_dir = Path()  # set by train(); building a trainer writes nothing
        settings = config["trainer"]
        self.epochs: int = settings["epochs"]
        self.save_period: int = settings["save_period"]
        self.keep_last: int = settings["keep_last"]
        self.early_stop: int = settings["early_stop"] or math.inf
        self.monitor = config.monitor
        self.best = self.monitor.worst
        self.not_improved_count = 0
        self.start_epoch = 1
        # Where an interrupted epoch stopped: (epoch, steps done, metric sums); see save_interrupted.
        self.resume_point: tuple[int, int, dict[str, Any]] | None = None
        self.stop_signal: int | None = None
        # Each epoch run here: its metrics plus "seconds" (training and validation wall time).
        self.history: list[dict[str, float]] = []
        # A disabled scaler is a no-op; subclasses enable it for fp16 autocast.
        self.grad_scaler = torch.amp.GradScaler(enabled=False)
{%- if cookiecutter.tensorboard %}
        self._tensorboard_enabled: bool = settings["tensorboard"]
{%- endif %}

    @abstractmethod
    def _train_epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch (and validate); return the epoch's metrics by name.

        Between optimizer steps, call ``save_interrupted`` when ``stop_agreed`` says so; start part
        way through when ``take_resume_point`` says so.
        """

    @abstractmethod
    def metric_names(self) -> list[str]:
        """Every key ``_train_epoch`` returns, so the monitor can be checked before training."""

    def check_monitor(self) -> None:
        """Refuse a monitor that nothing measures, or a plateau scheduler that disagrees with it."""
        if self.monitor.enabled and self.monitor.metric not in self.metric_names():
            raise ConfigError(
                f"trainer.monitor: {self.monitor.metric!r} is not measured; "
                f"choose one of {', '.join(self.metric_names())} (val_* needs a validation_split)"
            )
        plateau = isinstance(self.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        if plateau and self.lr_scheduler.mode != (self.monitor.mode if self.monitor.enabled else "min"):
            raise ConfigError(
                f"lr_scheduler.args.mode: {self.lr_scheduler.mode!r} disagrees with trainer.monitor "
                f"{self.config['trainer']['monitor']!r}; ReduceLROnPlateau is stepped with the monitored metric, "
                "so give it the same mode"
            )

    def train(self, run_dir: Path) -> None:
        """Train from ``start_epoch`` to ``epochs``, writing checkpoints and events to ``run_dir``.

        Calling it again after raising ``epochs`` trains on from the last finished epoch.
        """
        self.run_dir = run_dir
        for stale in run_dir.glob(".*.tmp") if is_main() else ():
            logger.info("Removing %s, left by a run killed while saving", stale.name)
            stale.unlink()
        if self.start_epoch > self.epochs:
            logger.warning(
                "Nothing to do: the checkpoint finished epoch %d of %d; raise the total with "
                "--set trainer.epochs=N to train further",
                self.start_epoch - 1,
                self.epochs,
            )
            return
{%- if cookiecutter.tensorboard %}
        enabled = self._tensorboard_enabled and is_main()
        writer = TensorboardWriter(self.run_dir, enabled, purge_step=self.start_epoch)
        try:
            with self._stop_on_signals():
                for epoch in range(self.start_epoch, self.epochs + 1):
                    if self._run_epoch(epoch, writer):
                        break
        finally:
            writer.close()

    def _run_epoch(self, epoch: int, writer: TensorboardWriter) -> bool:
{%- else %}
        with self._stop_on_signals():
            for epoch in range(self.start_epoch, self.epochs + 1):
                if self._run_epoch(epoch):
                    break

    def _run_epoch(self, epoch: int) -> bool:
{%- endif %}
        """Train, evaluate and checkpoint one epoch; return True when early stopping ends the run.

        A stop signal that arrives after the last training step (during validation or saving)
        ends the run here, once the epoch's checkpoints are written.
        """
        started = time.perf_counter()
        log = self._train_epoch(epoch)
        log["lr"] = self.optimizer.param_groups[0]["lr"]
        self._step_scheduler(log)

        improved = self.monitor.improved(log.get(self.monitor.metric, math.nan), self.best)
        if improved:
            self.best = log[self.monitor.metric]
            self.not_improved_count = 0
        elif self.monitor.enabled:
            self.not_improved_count += 1

{%- if cookiecutter.tensorboard %}
        writer.add_epoch(epoch, log)
{%- endif %}
        seconds = time.perf_counter() - started
        self.history.append({**log, "seconds": seconds})
        metrics = "  ".join(f"{key} {value:.4g}" for key, value in log.items())
        marker = "  *best" if improved else ""
        logger.info("epoch %d/%d  %s  (%.1fs)%s", epoch, self.epochs, metrics, seconds, marker)

        if is_main():  # the other processes hold the same weights; one copy on disk is enough
            state = self.state_dict(epoch, log)
            save_checkpoint(state, self.run_dir / "last.pth")
            if improved:
                save_checkpoint(state, self.run_dir / "best.pth")
            if epoch % self.save_period == 0:
                save_checkpoint(state, self.run_dir / f"epoch-{epoch}.pth")
                self._prune_periodic_checkpoints()
        self.start_epoch = epoch + 1  # so that train() with a raised self.epochs continues from here

        if self.stop_agreed(can_vote=True):
            self._stopped(f"after epoch {epoch}")
        if self.not_improved_count >= self.early_stop:
            logger.info(
                "Early stop: %s has not improved for %d epochs (best %.4g); last state in %s",
                self.monitor.metric,
                self.not_improved_count,
                self.best,
                self.run_dir / "last.pth",
            )
            return True
        return False

    def _prune_periodic_checkpoints(self) -> None:
        """Keep the newest ``keep_last`` epoch-N.pth files (0 keeps all), so long runs do not fill the disk."""
        if self.keep_last == 0:
            return
        periodic = sorted(self.run_dir.glob("epoch-*.pth"), key=lambda path: int(path.stem.split("-")[1]))
        for old in periodic[: -self.keep_last]:
            old.unlink()

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        def request_stop(signum: int, frame: FrameType | None) -> None:
            # Restore the defaults first, so a second signal ends the process even during this handler.
            # Under torchrun a Ctrl-C or scancel reaches every process and torchrun then forwards a
            # SIGTERM of its own: ignore that one; torchrun kills what is left after its timeout.
            after = signal.SIG_IGN if launched_by_torchrun() else signal.SIG_DFL
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, after)
            self.stop_signal = signum
            logger.warning(
                "%s received: finishing the current step, then saving (send it again to stop at once)"
                if not launched_by_torchrun()
                else "%s received: finishing the current step, then saving",
                signal.Signals(signum).name,
            )

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        logger.info(
            "Training epochs %d to %d; Ctrl-C or SIGTERM saves the state, then stops", self.start_epoch, self.epochs
        )
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop_agreed(self, can_vote: bool) -> bool:
        """Whether to stop now. Under torchrun a signal may reach the processes at different steps,
        so they vote where ``can_vote`` (the same steps in every process) and stop together."""
        if not is_distributed():
            return self.stop_signal is not None
        if not can_vote:
            return False
        vote = torch.tensor([self.stop_signal or 0], device=next(self.model.parameters()).device)
        signal_number = int(all_reduce(vote, dist.ReduceOp.MAX).item())
        if signal_number:
            self.stop_signal = self.stop_signal or signal_number
        return bool(signal_number)

    def take_resume_point(self, epoch: int) -> tuple[int, dict[str, Any] | None]:
        """(steps already done, metric sums so far) for ``epoch``: (0, None) unless resuming inside it."""
        if self.resume_point is None or self.resume_point[0] != epoch:
            return 0, None
        _, step, progress = self.resume_point
        self.resume_point = None
        return step, progress

    def save_interrupted(self, epoch: int, step: int, progress: dict[str, Any]) -> NoReturn:
        """Save ``last.pth`` part way through ``epoch`` (``step`` steps done), then stop the run."""
        if is_main():
            state = self.state_dict(epoch - 1, log={})
            state["mid_epoch"] = {"epoch": epoch, "step": step, "progress": progress}
            save_checkpoint(state, self.run_dir / "last.pth")
        barrier()  # nobody reports "saved" before it is
        self._stopped(f"at epoch {epoch}, step {step}")

    def _stopped(self, where: str) -> NoReturn:
        assert self.stop_signal is not None
        last = self.run_dir / "last.pth"
        name = signal.Signals(self.stop_signal).name
        raise TrainingStopped(
            f"stopped by {name} {where}; resume with: python train.py -r {last}", 128 + self.stop_signal
        )

    def _step_scheduler(self, log: dict[str, float]) -> None:
        if self.lr_scheduler is None:
            return
        if isinstance(self.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            # It needs a metric; use the monitored one so both agree on what "better" means.
            metric = self.monitor.metric if self.monitor.enabled else "loss"
            self.lr_scheduler.step(log[metric])
        else:
            self.lr_scheduler.step()

    def state_dict(self, epoch: int, log: dict[str, float]) -> dict[str, Any]:
        """Everything needed to continue exactly: tensors and plain data only (no pickled objects)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "arch": type(self.model).__name__,
            "epoch": epoch,
            "log": log,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None,
            "grad_scaler": self.grad_scaler.state_dict(),
            "monitor_best": self.best,
            "not_improved_count": self.not_improved_count,
            "config": self.config.config,
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        """Continue from a checkpoint written by ``state_dict`` (read from ``source``)."""
        if state["arch"] != type(self.model).__name__:
            raise ConfigError(
                f"arch.type: the checkpoint holds a {state['arch']}, not a {type(self.model).__name__}; "
                "resume with the checkpoint's architecture or start a new run with -c"
            )
        load_model_weights(self.model, state["model"], source)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.lr_scheduler is not None and state["lr_scheduler"] is not None:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if state["grad_scaler"]:
            self.grad_scaler.load_state_dict(state["grad_scaler"])
        if Monitor.parse(state["config"]["trainer"]["monitor"]) == self.monitor:
            self.best = state["monitor_best"]
            self.not_improved_count = state["not_improved_count"]
        else:
            logger.info("trainer.monitor changed since the checkpoint; the best value starts afresh")
        self.start_epoch = state["epoch"] + 1
        set_rng_state(state["rng"])
        mid_epoch = state.get("mid_epoch")
        if mid_epoch is None:
            logger.info("Resumed from epoch %d; continuing at epoch %d", state["epoch"], self.start_epoch)
        else:
            self.resume_point = (mid_epoch["epoch"], mid_epoch["step"], mid_epoch["progress"])
            logger.info(
                "Resumed part way through epoch %d; continuing at step %d", mid_epoch["epoch"], mid_epoch["step"] + 1
            )
