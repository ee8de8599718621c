"""A TensorBoard writer that does nothing when TensorBoard is turned off."""

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


class TensorboardWriter:
    """Writes one scalar per metric per epoch, train and validation on the same x-axis (the epoch)."""

    def __init__(self, log_dir: Path, enabled: bool, purge_step: int | None = None) -> None:
        self._writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.warning(
                "trainer.tensorboard is true but tensorboard is not installed; "
                "pip install tensorboard, or set trainer.tensorboard to false"
            )
            return
        # purge_step drops events a crashed run wrote after its last checkpoint.
        self._writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def add_epoch(self, epoch: int, log: dict[str, float]) -> None:
        if self._writer is None:
            return
        for key, value in log.items():
            if key.startswith("val_"):
                self._writer.add_scalar(f"{key[4:]}/val", value, epoch)
            else:
                self._writer.add_scalar(f"{key}/train" if key != "lr" else "lr", value, epoch)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
