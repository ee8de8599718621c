"""The engine of training, which trainer/trainer.py's Trainer (yours) subclasses. Read it top to bottom: ``fit``
runs the epochs, ``run_epoch`` trains, validates and decides what to keep, ``train_epoch`` loops over batches,
``train_step`` is one optimizer step's share of a batch, and ``batch_loss`` is what a batch is: the one method a
subclass overrides for unusual training. ``evaluate`` (validation, and test.py) uses the same ``batch_loss``."""

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from base.base_data_loader import Loader
from base.batch import call_model, channels_last, sample_count, select
from logger.trackers import Tracker
from trainer.checkpoint import Checkpointer
from trainer.checks import (
    KnownLabels,
    check_batch_loss,
    check_batch_norm_batches,
    check_model_fits,
    class_count_mismatch,
    loss_or_refusal,
    pair_or_refusal,
    scores_each_class,
)
from trainer.loss_watch import LossWatch
from trainer.monitor import Monitor, measured_names
from trainer.settings import TrainerSettings
from utils.checkpoint import check_same_classes, load_model_weights
from utils.class_report import ConfusionMatrix
from utils.dist import all_reduce, copy_buffers_from_rank_0, is_distributed, launch_command, world_size
from utils.errors import ConfigRefused, NonFiniteLossError, TrainingStopped, UsageError, first_sentence, plain_text
from utils.metric_tracker import Metric, MetricTracker, batch_measures
from utils.signals import GracefulStop
from utils.util import metric_text, rng_state, set_rng_state

logger = logging.getLogger(__name__)

# Sees each finished epoch's number and metrics; returns why training should stop now, or None.
StopRule = Callable[[int, dict[str, float]], str | None]


class BatchLoss(NamedTuple):
    """What ``batch_loss`` gives for a batch: the loss to minimise (a 0-dim tensor) and the ``output`` and
    ``target`` that every metric is called with, as ``metric(output, target)``."""

    loss: torch.Tensor
    output: Any
    target: Any


class BaseTrainer:
    """Trains ``model`` for ``settings.epochs`` epochs; ``metrics`` maps names to metric functions;
    ``recorded_config`` (the run's config) and ``classes`` (the class names) go into every checkpoint."""

    def __init__(self, *, model: nn.Module, criterion: Metric, metrics: dict[str, Metric],
                 optimizer: torch.optim.Optimizer, lr_scheduler: Any, schedule_per_step: bool,
                 schedule_length_fixed: bool, train_loader: Loader,
                 valid_loader: Loader | None, settings: TrainerSettings, device: torch.device,
                 recorded_config: dict[str, Any], classes: list[str] | None = None) -> None:  # fmt: skip
        self.model = model  # the plain module: its state_dict is what checkpoints hold
        self._set_scoring(criterion, metrics, settings, device)
        self.optimizer, self.lr_scheduler, self.schedule_per_step = optimizer, lr_scheduler, schedule_per_step
        self.schedule_length_fixed = schedule_length_fixed  # laid out over trainer.epochs: a resume cannot extend it
        self.train_loader, self.valid_loader = train_loader, valid_loader
        self.settings, self.device, self.recorded_config = settings, device, recorded_config
        self.classes = classes  # the class names by label, kept in checkpoints for evaluation and prediction
        self.input_shape: list[int] | None = None  # one sample's shape, when the inputs are one tensor (predict.py)
        # fp16 gradients can underflow, so fp16 autocast needs loss scaling; bf16 does not.
        self.grad_scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.monitor = Monitor.parse(settings.monitor)
        self.monitor.check(measured_names(list(metrics), validates=valid_loader is not None))
        self._check_plateau_mode()
        self.ddp_model, self.train_model, self.eval_model = self._wrap_model()
        self.start_epoch = 1
        self.resume_point: dict[str, Any] | None = None  # a checkpoint's mid_epoch record
        self.stop = GracefulStop()
        self.stop_rules: list[StopRule] = []  # besides early stopping: a sweep's pruner (sweeps/trial.py)

    def _set_scoring(self, criterion: Metric, metrics: dict[str, Metric], settings: TrainerSettings,
                     device: torch.device) -> None:  # fmt: skip
        """What ``batch_loss`` and ``evaluate`` use: all that ``for_evaluation`` gives an instance."""
        self.criterion, self.metrics = criterion, metrics
        self.measure = batch_measures(metrics)  # a batch's loss and metrics as one tensor
        self.settings, self.device = settings, device
        self.amp_dtype = settings.amp_dtype(device)

    @classmethod
    def for_evaluation(cls, criterion: Metric, metrics: dict[str, Metric], settings: TrainerSettings,
                       device: torch.device) -> "BaseTrainer":  # fmt: skip
        """An instance that only evaluates (test.py): it holds the loss, the metrics, the settings and the device,
        and no model, data or optimizer, so a subclass's ``batch_loss`` must use no more of ``self`` than these."""
        trainer = cls.__new__(cls)
        trainer._set_scoring(criterion, metrics, settings, device)
        return trainer

    def batch_loss(self, model: nn.Module, batch: Any) -> BatchLoss:
        """A batch's loss, and the output and target its metrics compare: the place to change for unusual training
        (several losses, teacher forcing, a model that returns a dict), in a subclass in trainer/trainer.py.
        ``model`` is the one to call (compiled, or wrapped by DDP, in training); the engine has moved ``batch`` to
        the device and runs this under autocast, and under no_grad when it evaluates. By default the batch is
        ``(inputs, target)``: ``model(inputs)`` (``model(*inputs)`` for a tuple, ``model(**inputs)`` for a dict),
        scored against the target by config.json's loss."""
        inputs, target = batch
        output = call_model(model, inputs)
        return BatchLoss(loss_or_refusal(self.criterion, output, target), output, target)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Loader, confusion: ConfusionMatrix | None = None) -> dict[str, float]:
        """Loss and metrics of ``batch_loss`` over a whole loader, weighted by sample count (over every process
        under torchrun); ``confusion``, when given, also counts each sample's (true, predicted) class."""
        model.eval()
        running = MetricTracker(["loss", *self.metrics], loader.device)
        for batch in loader:
            with torch.autocast(loader.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                result = self.batch_loss(model, batch)
            running.update(sample_count(batch), self.measure(result.loss, result.output, result.target))
            if confusion is not None:
                confusion.update(result.output, result.target)
        return running.result()

    def _wrap_model(self) -> tuple[DistributedDataParallel | None, nn.Module, nn.Module]:
        """(the DDP wrapper or None, what the training step calls, what evaluation calls)."""
        if self.settings.channels_last:
            self.model.to(memory_format=torch.channels_last)
        ddp_model = None
        if is_distributed():
            # Under torchrun, DistributedDataParallel averages the gradients of all processes in backward.
            if self.settings.sync_batchnorm:
                if self.device.type != "cuda":  # PyTorch's SyncBatchNorm runs on CUDA only
                    raise ConfigRefused("trainer.sync_batchnorm: SyncBatchNorm needs CUDA; set it to false on the CPU")
                nn.SyncBatchNorm.convert_sync_batchnorm(self.model)  # in place: the parameters stay the same
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            ddp_model = DistributedDataParallel(self.model, device_ids=device_ids)
        wrapped = ddp_model or self.model
        mode = self.settings.compile
        train_model = wrapped if mode == "off" else torch.compile(wrapped, mode=mode)
        # Evaluation needs no gradient sync, and processes may get unequal shares of it.
        eval_model = self.model if ddp_model is not None else train_model
        return ddp_model, train_model, eval_model

    def check_one_batch(self) -> None:
        """Pass one training batch through the model and the loss (no update) before anything is
        written, so a model that does not fit the data is one line instead of a crash in epoch 1."""
        self.train_loader.set_epoch(self.start_epoch)
        batch = next(iter(self.train_loader))
        inputs = batch[0] if isinstance(batch, tuple | list) else batch
        self.input_shape = list(inputs.shape[1:]) if isinstance(inputs, torch.Tensor) else None
        known = self._known_labels()
        # A resumed checkpoint's output width is fixed (a resume refuses changes to arch): one trained before
        # the width was checked against the class names goes on, warned, rather than being stranded.
        continuing = self.start_epoch > 1 or self.resume_point is not None
        output, target = self.check_batch(self.model, batch, replace(known, classes=None) if continuing else known)
        if continuing and scores_each_class(output, target):
            self._warn_class_count(class_count_mismatch(type(self.model).__name__, output.size(1), known))
        run_one = partial(self.batch_loss, self.model, select(batch, slice(0, 1)))  # a batch of one sample
        check_batch_norm_batches(self.model, run_one, self.train_loader.order.share(), self.train_loader.batch_size)

    def check_batch(self, model: nn.Module, batch: Any, known: KnownLabels) -> tuple[Any, Any]:
        """The ``(output, target)`` of ``batch_loss`` on a first batch (no update), or a one-line refusal of what
        does not fit: the model, the labels (as far as they are ``known``), the loss or a metric."""
        if type(self).batch_loss is not BaseTrainer.batch_loss:  # a subclass's: only what it gives can be checked
            return check_batch_loss(self.batch_loss, type(self).__name__, model, self.metrics, batch, known)
        inputs, target = pair_or_refusal(batch)
        return check_model_fits(model, self.criterion, self.metrics, inputs, target, known), target

    def _warn_class_count(self, mismatch: str | None) -> None:
        if mismatch is not None:
            logger.warning("warning: %s; the checkpoint was trained so and goes on (a new run of this config is "
                           "refused: set arch.args.num_classes to %d)", mismatch, len(self.classes or ()))  # fmt: skip

    def _known_labels(self) -> KnownLabels:
        """The loader's class names and the highest label of the splits it holds in memory."""
        loaders = [loader for loader in (self.train_loader, self.valid_loader) if loader is not None]
        highest = max((loader.highest_label for loader in loaders if loader.highest_label is not None), default=None)
        return KnownLabels(self.recorded_config["data_loader"]["type"], self.classes, highest)

    def fit(self, checkpoints: Checkpointer, trackers: list[Tracker]) -> None:
        """Train from ``start_epoch`` to ``settings.epochs``, or until early stopping or a stop signal;
        each finished epoch goes to the ``trackers`` (metrics.csv, TensorBoard...: logger/trackers.py) before its
        checkpoint."""
        checkpoints.remove_stale_temp_files()
        finished = self.finished_already()
        if finished is not None:
            return logger.warning("Nothing to do: %s", finished)
        epochs = self.settings.epochs
        span = f"epoch {epochs}" if self.start_epoch == epochs else f"epochs {self.start_epoch} to {epochs}"
        with self.stop, logging_redirect_tqdm():  # log lines go above the progress bar, not into it
            # Said only once the handlers are in place, so a signal sent on seeing it is always caught.
            logger.info("Training %s; Ctrl-C or SIGTERM saves the state, then stops", span)
            for epoch in range(self.start_epoch, epochs + 1):
                started = time.perf_counter()
                epoch_metrics, improved = self.run_epoch(epoch, checkpoints)
                seconds = time.perf_counter() - started
                logger.info(describe_epoch(epoch, epochs, epoch_metrics, seconds, improved))
                # Before last.pth: a resume drops the metrics.csv rows (and events) of epochs it replays.
                for tracker in trackers:
                    tracker.add_epoch(epoch, epoch_metrics, seconds)
                checkpoints.save_epoch(self.state_dict(epoch, epoch_metrics), epoch, improved)
                # A signal during validation or saving ends the run here, with the epoch on disk.
                if self.stop.agreed(must_vote=True, device=self.device):
                    raise self._stop_error(f"after epoch {epoch}", checkpoints)
                reason = self.early_stop_reason(epoch, epoch_metrics)
                if reason is not None:
                    return logger.info("Early stop: %s; last state in %s", reason, checkpoints.last)

    def finished_already(self) -> str | None:
        """Why the checkpoint resumed from has nothing left to train, and how to train further; None if it has."""
        epochs, early_stop = self.settings.epochs, self.settings.early_stop
        if self.start_epoch > epochs:
            done = f"the checkpoint finished epoch {self.start_epoch - 1} of {epochs}"
            if self.schedule_length_fixed:  # its schedule was laid out over the run's length, and has ended
                return f"{done}; start a new run from its weights with --init-from CHECKPOINT to train further"
            return f"{done}; raise the total with --set trainer.epochs=N to train further"
        # Early stopping fired at the last saved epoch (a stop signal in that same epoch ends the run before
        # it is acted on): the run is over, as it would be had it not been stopped.
        if self.monitor.patience_exhausted(early_stop):
            return (f"the run stopped early, {self.monitor.describe()}; raise --set trainer.early_stop=N "
                    f"(now {early_stop}; 0 turns it off) to train further")  # fmt: skip
        return None

    def early_stop_reason(self, epoch: int, epoch_metrics: dict[str, float]) -> str | None:
        """Why to stop after this saved epoch: the monitor's patience ran out, or a stop rule says so."""
        reasons = [rule(epoch, epoch_metrics) for rule in self.stop_rules]  # every rule sees every epoch
        if self.monitor.patience_exhausted(self.settings.early_stop):
            return self.monitor.describe()
        return next((reason for reason in reasons if reason is not None), None)

    def run_epoch(self, epoch: int, checkpoints: Checkpointer) -> tuple[dict[str, float], bool]:
        """Train and validate one epoch, step the scheduler; returns (its metrics, whether the monitor improved)."""
        with compile_failures_explained(self.settings.compile):  # it compiles at first use, in either
            epoch_metrics = self.train_epoch(epoch, checkpoints)
            if self.valid_loader is not None:
                copy_buffers_from_rank_0(self.model)  # what DDP does before its next training forward anyway
                model, loader = self.eval_model, self.valid_loader
                valid_metrics = self.evaluate(model, loader)
                epoch_metrics.update({f"val_{name}": value for name, value in valid_metrics.items()})
        epoch_metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        self._step_scheduler(epoch_metrics)
        improved = self.monitor.update(epoch_metrics)
        return epoch_metrics, improved

    def train_epoch(self, epoch: int, checkpoints: Checkpointer) -> dict[str, float]:
        """One pass over the training data; returns the sample-weighted mean loss and metrics."""
        self.model.train()
        start_step, metric_sums = self._take_resume_point(epoch)
        self.train_loader.set_epoch(epoch, start_step)
        running = MetricTracker(["loss", *self.metrics], self.device)
        if metric_sums is not None:
            running.load_state_dict(metric_sums)
        total = start_step + len(self.train_loader)
        watch = LossWatch(min(self.settings.log_step, total - start_step), start_step + 1, self.device)
        bar = tqdm(self.train_loader, desc=f"epoch {epoch}", initial=start_step, total=total, leave=False, disable=None)
        self.optimizer.zero_grad(set_to_none=True)
        accum = self.settings.grad_accum_steps
        for step, batch in enumerate(bar, start=start_step + 1):
            group_start = (step - 1) // accum * accum + 1  # the first step of this step's accumulation group
            group_end = min(group_start + accum - 1, total)  # the epoch's last group may be shorter
            at_boundary = step == group_end
            result = self.train_step(batch, at_boundary, group_size=group_end - group_start + 1)
            if result is None:
                logger.warning("epoch %d step %d: loss is not finite; batch skipped", epoch, step)
                continue
            # Device tensors only: reading them here would stall the GPU every batch.
            with torch.no_grad():
                running.update(sample_count(batch), self.measure(result.loss, result.output, result.target))
                watch.add(step, result.loss)
            log_now = step % self.settings.log_step == 0
            if log_now:
                self._raise_if_nonfinite(watch, epoch, step)
                self._show_progress(bar, running, epoch, step, total)  # the host syncs happen here
            # Stop only between optimizer steps (no half-accumulated gradients to lose); under torchrun the
            # processes vote at log steps and every few seconds (utils/signals.py), so that all stop at one step.
            if at_boundary and self.stop.agreed(log_now or step == total, self.device):
                self._raise_if_nonfinite(watch, epoch, step)  # never save a state that NaNs have reached
                self._save_and_stop(epoch, step, running, checkpoints)
        self._raise_if_nonfinite(watch, epoch, total)
        return running.result()

    def train_step(self, batch: Any, at_boundary: bool, group_size: int = 1) -> BatchLoss | None:
        """``batch_loss`` and backward of one batch, then the optimizer step at an accumulation boundary.

        Gradients of ``group_size`` batches (``grad_accum_steps``, fewer in an epoch's last group) add up
        before one optimizer step, each loss divided by the group's size, so the step follows their mean
        gradient (under torchrun, one gradient all-reduce per group: the batches in between skip it with ``no_sync``).
        Returns what ``batch_loss`` gave, or None for a skipped batch (a non-finite loss in "skip" mode).
        """
        if self.settings.channels_last:  # 4-D float tensors only: no other layout has a channels-last order
            batch = channels_last(batch)
        skip_sync = self.ddp_model is not None and not at_boundary
        with self.ddp_model.no_sync() if skip_sync else nullcontext():  # type: ignore[union-attr]
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                result = self.batch_loss(self.train_model, batch)
            loss = result.loss
            if self.settings.nonfinite_loss == "skip" and not self._all_finite(loss):  # a host sync per step
                return None
            self.grad_scaler.scale(loss / group_size if group_size > 1 else loss).backward()  # a kernel saved when 1
        if at_boundary:
            self._optimizer_step()
        return result

    def _optimizer_step(self) -> None:
        """Clip (if asked), step and update the loss scale, then clear the gradients."""
        if self.settings.grad_clip_norm is not None:
            self.grad_scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip_norm)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.schedule_per_step:
            self.lr_scheduler.step()

    def _show_progress(self, bar: tqdm, running: MetricTracker, epoch: int, step: int, total: int) -> None:
        means = running.result()
        bar.set_postfix_str(f"loss {means['loss']:.4f}")  # short, so an 80-column bar keeps its bar
        logger.debug("epoch %d step %d/%d  %s", epoch, step, total, _columns(means))

    def _all_finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite in every process (so that all skip the same batches)."""
        finite = torch.isfinite(loss.detach()).to(torch.int32).reshape(1)
        return bool(all_reduce(finite, dist.ReduceOp.MIN).item())

    def _raise_if_nonfinite(self, watch: LossWatch, epoch: int, step: int) -> None:
        """Raise if any process saw a non-finite loss up to ``step`` (all processes call this at the same steps)."""
        bad_step = watch.first_bad_step(step)
        if bad_step is not None:
            raise NonFiniteLossError(
                f"loss became NaN or infinite at epoch {epoch}, step {bad_step}; the run stops unsaved (last.pth, if "
                "an epoch finished, holds the last good state). Lower the learning rate, clip gradients, or set "
                'trainer.nonfinite_loss to "skip" to drop such batches'
            )

    def _step_scheduler(self, epoch_metrics: dict[str, float]) -> None:
        if self.lr_scheduler is None or self.schedule_per_step:
            return
        if isinstance(self.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            # It needs a metric; use the monitored one so both agree on what "better" means.
            self.lr_scheduler.step(epoch_metrics[self.monitor.metric if self.monitor.enabled else "loss"])
        else:
            self.lr_scheduler.step()

    def _check_plateau_mode(self) -> None:
        plateau = isinstance(self.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        if plateau and self.lr_scheduler.mode != (self.monitor.mode if self.monitor.enabled else "min"):
            raise ConfigRefused(
                f"lr_scheduler.args.mode: {self.lr_scheduler.mode!r} disagrees with trainer.monitor "
                f"{self.settings.monitor!r}; ReduceLROnPlateau is stepped with the monitored metric, "
                "so give it the same mode"
            )

    def _save_and_stop(self, epoch: int, step: int, running: MetricTracker, checkpoints: Checkpointer) -> NoReturn:
        metric_sums = running.state_dict()  # every process calls this: it adds up their shares
        checkpoints.save_mid_epoch(self.state_dict(epoch - 1, {}), epoch, step, metric_sums)
        raise self._stop_error(f"at epoch {epoch}, step {step}", checkpoints)

    def _stop_error(self, where: str, checkpoints: Checkpointer) -> TrainingStopped:
        # Only after stop.agreed(), which says stop only once a signal's number is recorded.
        resume = launch_command(f"train.py -r {checkpoints.last}")
        message = f"stopped by {self.stop.name()} {where}; resume with: {resume}"
        return TrainingStopped(message, 128 + self.stop.signal_number)

    def _fits_resume_point(self, point: dict[str, Any], epoch: int) -> bool:
        """Whether a checkpoint's ``mid_epoch`` can continue here: the epoch after ``epoch``, a step within it,
        the sums of this run's metrics. (Whether the data is still what that epoch was laid out over is
        trainer/resume.py's refuse_data_change, from the checkpoint's ``data_layout``.)"""
        steps = self.train_loader.batches_per_epoch()
        names = point["metric_sums"]["names"]
        return point["epoch"] == epoch + 1 and 1 <= point["step"] <= steps and names == ["loss", *self.metrics]

    def _take_resume_point(self, epoch: int) -> tuple[int, dict[str, Any] | None]:
        """(steps already done, metric sums so far) of ``epoch``: (0, None) unless resuming inside it."""
        point, self.resume_point = self.resume_point, None
        if point is None or point["epoch"] != epoch:
            return 0, None
        return point["step"], point["metric_sums"]

    def state_dict(self, epoch: int, epoch_metrics: dict[str, float]) -> dict[str, Any]:
        """Everything needed to continue exactly: tensors and plain data only (no pickled objects)."""
        return {
            "arch": type(self.model).__name__,
            "epoch": epoch,
            "metrics": epoch_metrics,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None,
            "grad_scaler": self.grad_scaler.state_dict(),
            "monitor": self.monitor.state_dict(),
            "config": self.recorded_config,
            "classes": self.classes,
            "input_shape": self.input_shape,
            "rng": rng_state(),
            "world_size": world_size(),  # each process's share of an epoch, and so its steps, depend on it
            "data_layout": self.data_layout(),
        }

    def data_layout(self) -> dict[str, int]:
        """What this run's epochs are laid out over, kept in every checkpoint so that a resume can tell that the
        data changed (trainer/resume.py): the samples of each split, and an epoch's optimizer steps per process."""
        return {
            "train_samples": self.train_loader.n_samples,
            "valid_samples": self.valid_loader.n_samples if self.valid_loader is not None else 0,
            "steps_per_epoch": optimizer_steps_per_epoch(self.train_loader, self.settings.grad_accum_steps),
        }

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        """Continue from a checkpoint written by ``state_dict`` (read from ``source``)."""
        if state["arch"] != type(self.model).__name__:
            raise UsageError(
                f"arch.type: the checkpoint holds a {state['arch']}, not a {type(self.model).__name__}; "
                "resume with the checkpoint's architecture or start a new run with -c"
            )
        point = state.get("mid_epoch")
        if point is not None and not self._fits_resume_point(point, state["epoch"]):
            raise UsageError(
                f"checkpoint {str(source)!r} has a malformed 'mid_epoch' (not a step of epoch {state['epoch'] + 1} "
                "with this run's metrics); use another"
            )
        advice = "give the data the checkpoint's classes back, or start a new run from its weights with --init-from"
        check_same_classes(state.get("classes"), self.classes, source, advice)
        load_model_weights(self.model, state["model"], source)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.lr_scheduler is not None and state["lr_scheduler"] is not None:
                self.lr_scheduler.load_state_dict(state["lr_scheduler"])
            if state["grad_scaler"]:
                self.grad_scaler.load_state_dict(state["grad_scaler"])
            if not self.monitor.load_state_dict(state["monitor"]):
                logger.info("trainer.monitor changed since the checkpoint; the best value starts afresh")
            set_rng_state(state["rng"])
        except Exception as err:  # a state that does not fit this optimizer, scheduler or RNG
            reason = first_sentence(err)
            raise UsageError(f"checkpoint {str(source)!r} cannot be restored ({reason}); use another") from None
        self.start_epoch = state["epoch"] + 1
        self.resume_point = point
        if point is None:
            logger.info("Resumed from epoch %d; continuing at epoch %d", state["epoch"], self.start_epoch)
        else:
            logger.info("Resumed part way through epoch %d; continuing at step %d", point["epoch"], point["step"] + 1)


def optimizer_steps_per_epoch(loader: Loader, grad_accum_steps: int) -> int:
    """The optimizer steps of a whole epoch in each process (its last accumulation group may be shorter)."""
    return math.ceil(loader.batches_per_epoch() / grad_accum_steps)


@contextmanager
def compile_failures_explained(mode: str) -> Iterator[None]:
    """Turn a failure of torch.compile's compiler (no C++ compiler, an operation it cannot compile...) into
    one line; torch.compile compiles on the first batches, so it shows only once training has started."""
    try:
        yield
    except Exception as err:
        if mode == "off" or not type(err).__module__.startswith(("torch._dynamo", "torch._inductor")):
            raise
        # Its messages run to many lines; the first (after dynamo's "backend='inductor' raised:") says what failed.
        lines = [line for line in str(err).splitlines() if line.strip() and not line.endswith("raised:")]
        reason = plain_text(lines[0]) if lines else type(err).__name__
        raise UsageError(
            f'trainer.compile: torch.compile ("{mode}") failed: {reason}; set trainer.compile to "off" to train '
            "without it"
        ) from None


def describe_epoch(epoch: int, epochs: int, metrics: dict[str, float], seconds: float, improved: bool) -> str:
    """Two aligned lines, training then validation, each well under 100 columns for the usual metrics."""
    train = {name: value for name, value in metrics.items() if not name.startswith("val_") and name != "lr"}
    valid = {name.removeprefix("val_"): value for name, value in metrics.items() if name.startswith("val_")}
    head, best = f"epoch {epoch}/{epochs}", "  *best" if improved else ""
    lines = [f"{head}  train {_columns(train)}  lr {metrics['lr']:.3g}  {seconds:.1f}s{'' if valid else best}"]
    if valid:
        lines.append(f"{' ' * len(head)}  val   {_columns(valid)}{best}")
    return "\n".join(lines)


def _columns(values: dict[str, float]) -> str:
    """``name 0.1234`` pairs, so that epoch lines line up."""
    return "  ".join(f"{name} {metric_text(value)}" for name, value in values.items())
