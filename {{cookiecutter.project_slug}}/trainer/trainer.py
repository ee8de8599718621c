"""The training and evaluation loops. Read top to bottom: this is where the time goes."""

import logging
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from base.base_data_loader import BaseDataLoader
from base.base_trainer import BaseTrainer
from data_loader.resident import ResidentLoader
from parse_config import ConfigParser
from utils.dist import all_reduce, is_distributed
from utils.metric_tracker import MetricTracker
from utils.util import NonFiniteLossError, resolve_amp

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
        data_loader: BaseDataLoader | ResidentLoader,
        valid_data_loader: DataLoader | ResidentLoader | None = None,
        lr_scheduler: Any = None,
    ) -> None:
        super().__init__(model, optimizer, config, lr_scheduler)
        self.criterion = criterion
        self.metric_ftns = list(metric_ftns)
        self.device = device
        self.data_loader = data_loader
        self.valid_data_loader = valid_data_loader
        settings = config["trainer"]
        self.log_step: int = settings["log_step"]
        self.skip_nonfinite = settings["nonfinite_loss"] == "skip"
        self.amp_dtype = resolve_amp(settings["amp"], device)
        # fp16 gradients can underflow, so fp16 autocast needs loss scaling; bf16 does not.
        self.grad_scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.grad_accum_steps: int = settings["grad_accum_steps"]
        self.grad_clip_norm: float | None = settings["grad_clip_norm"]
        self.channels_last: bool = settings["channels_last"]
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        # Under torchrun, DistributedDataParallel averages the gradients of all processes in backward.
        self.ddp: DistributedDataParallel | None = None
        if is_distributed():
            if settings["sync_batchnorm"]:
                nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place: the parameters stay the same
            self.ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        # Compiled for speed; self.model stays the plain module, so checkpoints hold its own keys.
        wrapped = self.ddp or model
        self.forward_model = (
            wrapped if settings["compile"] == "off" else torch.compile(wrapped, mode=settings["compile"])
        )
        # Evaluation needs no gradient sync, and processes may get unequal shares of it.
        self.eval_model = model if self.ddp is not None else self.forward_model
        self.check_monitor()

    def metric_names(self) -> list[str]:
        names = ["loss", *(metric.__name__ for metric in self.metric_ftns)]
        if self.valid_data_loader is not None:
            names += [f"val_{name}" for name in names]
        return names

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        start_step, progress_so_far = self.take_resume_point(epoch)
        self.data_loader.set_epoch(epoch, start_step)
        tracker = MetricTracker(["loss", *(m.__name__ for m in self.metric_ftns)], self.device)
        if progress_so_far is not None:
            tracker.load_state_dict(progress_so_far)
        # The first step whose loss was not finite (-1: none yet), tracked on the device.
        first_bad_step = torch.tensor(-1, device=self.device)
        total = start_step + len(self.data_loader)
        progress = tqdm(
            self.data_loader, desc=f"epoch {epoch}", initial=start_step, total=total, leave=False, disable=None
        )
        self.optimizer.zero_grad(set_to_none=True)
        for step, (data, target) in enumerate(progress, start=start_step + 1):
            data = data.to(self.device, non_blocking=True)
            target = target.to(self.device, non_blocking=True)
            if self.channels_last:
                data = data.contiguous(memory_format=torch.channels_last)

            # Gradients of grad_accum_steps batches add up before one optimizer step (and, under
            # torchrun, one gradient all-reduce: the steps in between skip it with no_sync).
            at_boundary = step % self.grad_accum_steps == 0 or step == total
            skip_sync = self.ddp is not None and not at_boundary
            with self.ddp.no_sync() if skip_sync else nullcontext():  # type: ignore[union-attr]
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    output = self.forward_model(data)
                    loss = self.criterion(output, target)
                if self.skip_nonfinite and not self._all_finite(loss):  # a host sync per step, only in "skip" mode
                    logger.warning("epoch %d step %d: loss is not finite; batch skipped", epoch, step)
                    continue
                self.grad_scaler.scale(loss / self.grad_accum_steps).backward()
            if at_boundary:
                self._optimizer_step()

            # Device tensors only: reading them here would stall the GPU every batch.
            with torch.no_grad():
                tracker.update(target.size(0), [loss, *(m(output, target) for m in self.metric_ftns)])
                first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(loss), step, first_bad_step)
            if step % self.log_step == 0:
                self._check_finite(first_bad_step, epoch)
                running = tracker.result()  # host syncs happen here, every log_step batches
                progress.set_postfix({key: f"{value:.4f}" for key, value in running.items()})
                logger.debug("epoch %d step %d/%d  %s", epoch, step, total, running)
            # Stop only between optimizer steps (no half-accumulated gradients to lose); under
            # torchrun the processes vote at log steps, so that all stop at the same step.
            if at_boundary and self.stop_agreed(step % self.log_step == 0 or step == total):
                self._check_finite(first_bad_step, epoch)  # never save a state that NaNs have reached
                self.save_interrupted(epoch, step, tracker.state_dict())

        self._check_finite(first_bad_step, epoch)
        log = tracker.result()
        if self.valid_data_loader is not None:
            val_log = evaluate(
                self.eval_model,
                self.valid_data_loader,
                self.criterion,
                self.metric_ftns,
                self.device,
                self.amp_dtype,
            )
            log.update({f"val_{key}": value for key, value in val_log.items()})
        return log

    def _optimizer_step(self) -> None:
        if self.grad_clip_norm is not None:
            self.grad_scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def _all_finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite in every process (so that all skip the same batches)."""
        finite = torch.isfinite(loss.detach()).to(torch.int32).reshape(1)
        return bool(all_reduce(finite, dist.ReduceOp.MIN).item())

    def _check_finite(self, first_bad_step: torch.Tensor, epoch: int) -> None:
        """Raise if any process saw a non-finite loss (every process calls this at the same steps)."""
        never = torch.iinfo(torch.long).max
        first = torch.where(first_bad_step < 0, never, first_bad_step).reshape(1)
        step = int(all_reduce(first, dist.ReduceOp.MIN).item())
        if step != never:
            raise NonFiniteLossError(
                f"loss became NaN or infinite at epoch {epoch}, step {step}; nothing after the last checkpoint "
                f"was saved ({self.run_dir / 'last.pth'}). Lower the learning rate, clip gradients, or set "
                'trainer.nonfinite_loss to "skip" to drop such batches'
            )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data_loader: DataLoader | ResidentLoader,
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
