"""The training and evaluation loops. Read top to bottom: this is where the time goes."""

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from base.base_data_loader import BaseDataLoader
from base.base_trainer import BaseTrainer
from parse_config import ConfigParser
from utils.metric_tracker import MetricTracker
from utils.util import resolve_amp

logger = logging.getLogger(__name__)

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Trainer(BaseTrainer):
    def __init__(
        self,
        model: nn.Module,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        metric_ftns: Sequence[Metric],
        optimizer: torch.optim.Optimizer,
        config: ConfigParser,
        device: torch.device,
        data_loader: BaseDataLoader,
        valid_data_loader: DataLoader | None = None,
        lr_scheduler: Any = None,
    ) -> None:
        super().__init__(model, optimizer, config, lr_scheduler)
        self.criterion = criterion
        self.metric_ftns = list(metric_ftns)
        self.device = device
        self.data_loader = data_loader
        self.valid_data_loader = valid_data_loader
        self.log_step: int = config["trainer"]["log_step"]
        self.amp_dtype = resolve_amp(config["trainer"]["amp"], device)
        # fp16 gradients can underflow, so fp16 autocast needs loss scaling; bf16 does not.
        self.grad_scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.check_monitor()

    def metric_names(self) -> list[str]:
        names = ["loss", *(metric.__name__ for metric in self.metric_ftns)]
        if self.valid_data_loader is not None:
            names += [f"val_{name}" for name in names]
        return names

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        self.data_loader.set_epoch(epoch)
        tracker = MetricTracker(["loss", *(m.__name__ for m in self.metric_ftns)], self.device)
        progress = tqdm(self.data_loader, desc=f"epoch {epoch}", leave=False, disable=None)
        for step, (data, target) in enumerate(progress, start=1):
            data = data.to(self.device, non_blocking=True)
            target = target.to(self.device, non_blocking=True)

            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                output = self.model(data)
                loss = self.criterion(output, target)
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()

            # Device tensors only: reading them here would stall the GPU every batch.
            with torch.no_grad():
                tracker.update(target.size(0), [loss, *(m(output, target) for m in self.metric_ftns)])
            if step % self.log_step == 0:
                running = tracker.result()  # the one host sync, every log_step batches
                progress.set_postfix({key: f"{value:.4f}" for key, value in running.items()})
                logger.debug("epoch %d step %d/%d  %s", epoch, step, len(self.data_loader), running)

        log = tracker.result()
        if self.valid_data_loader is not None:
            val_log = evaluate(
                self.model, self.valid_data_loader, self.criterion, self.metric_ftns, self.device, self.amp_dtype
            )
            log.update({f"val_{key}": value for key, value in val_log.items()})
        return log


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data_loader: DataLoader,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    metric_ftns: Sequence[Metric],
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Loss and metrics over a whole loader, weighted by sample count."""
    model.eval()
    tracker = MetricTracker(["loss", *(m.__name__ for m in metric_ftns)], device)
    for data, target in data_loader:
        data = data.to(device, non_blocking=True)
        target = target.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            output = model(data)
            loss = criterion(output, target)
        tracker.update(target.size(0), [loss, *(m(output, target) for m in metric_ftns)])
    return tracker.result()
