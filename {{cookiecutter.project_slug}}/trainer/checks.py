"""What the Trainer (and test.py) check on one batch before anything is trained or written: that the model
takes the data and its output fits the labels, the loss and every metric, and that no epoch ends in a batch
BatchNorm cannot train on. Each mistake is one line naming the setting to change."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from base.batch import call_model, describe
from utils.dist import world_size
from utils.errors import ConfigRefused, first_sentence
from utils.metric_tracker import Metric


def scores_each_class(output: Any, targets: Any) -> bool:
    """Whether ``output`` holds a score per class for integer labels (a classifier's, not a regression's)."""
    tensors = isinstance(output, torch.Tensor) and isinstance(targets, torch.Tensor)
    return tensors and output.dim() == 2 and targets.dim() == 1 and not targets.is_floating_point()


@dataclass(frozen=True)
class KnownLabels:
    """What is known of the data's labels before any epoch: the class names its loader (``loader``, named as
    config.json's data_loader.type names it) gives, if it is to be held to them, and the highest label of the
    splits held in memory (None when a split is read item by item: finding it would read every sample)."""

    loader: str = "the data loader"
    classes: list[str] | None = None
    highest_label: int | None = None


def pair_or_refusal(batch: Any) -> tuple[Any, Any]:
    """``(inputs, target)`` of a batch, as the default ``batch_loss`` takes it; one line when it is no pair."""
    if isinstance(batch, tuple | list) and len(batch) == 2:
        return batch[0], batch[1]
    raise ConfigRefused(
        f"data_loader: its batches hold {describe(batch)}, not (inputs, target); make its items such pairs, or "
        "take its batches apart in a Trainer subclass's batch_loss (trainer/trainer.py) named by trainer.type"
    )


@torch.no_grad()
def check_model_fits(model: nn.Module, criterion: Metric, metrics: dict[str, Metric], inputs: Any,
                     targets: Any, known: KnownLabels = KnownLabels()) -> torch.Tensor:  # fmt: skip
    """The model's output on the batch (in eval mode); a one-line ConfigRefused when ``model`` cannot take
    it, or its output does not fit the labels (the batch's and what is ``known``), the loss or a metric."""
    output = model_output(model, inputs)
    if scores_each_class(output, targets):
        check_outputs_fit_labels(type(model).__name__, output.size(1), targets, known)
    check_loss(criterion, type(model).__name__, output, targets)
    for metric_name, metric in metrics.items():
        check_metric(metric_name, metric, output, targets)
    return output


def model_output(model: nn.Module, inputs: Any) -> torch.Tensor:
    """The model's output on a batch's ``inputs`` in eval mode; a one-line ConfigRefused when it cannot take
    them or returns something other than one tensor."""
    name, was_training = type(model).__name__, model.training
    model.eval()
    try:
        output = call_model(model, inputs)
    except Exception as err:  # whatever the model raises on a wrong input shape
        batches = f"of shape {tuple(inputs.shape)}" if isinstance(inputs, torch.Tensor) else f"of {describe(inputs)}"
        raise ConfigRefused(
            f"arch: {name} cannot take the data's batches {batches} ({first_sentence(err)}); check arch.args "
            "(in_channels, input size) against the data loader, and its forward's arguments against the inputs"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(output, torch.Tensor):  # the loop, test.py and the exports take one tensor per batch
        raise ConfigRefused(
            f"arch: {name} returns a {type(output).__name__}, not a tensor; return the one tensor that the loss and "
            "metrics compare with the labels, or take its outputs apart in a Trainer subclass's batch_loss "
            "(trainer/trainer.py) named by trainer.type"
        )
    return output


def check_outputs_fit_labels(name: str, width: int, targets: torch.Tensor, known: KnownLabels) -> None:
    """Refuse ``width`` scores per sample (``name``'s output) for another number of class names, or for a label
    of the batch or of ``known.highest_label`` that it has no score for: the loss would fail part way through
    an epoch, or the extra outputs would be trained and reported as classes without names."""
    mismatch = class_count_mismatch(name, width, known)
    if mismatch is not None:
        count = len(known.classes or ())
        other_fix = "" if width < count else f", or name all {width} classes in {known.loader}'s classes"
        raise ConfigRefused(
            f"arch.args.num_classes: {mismatch}; set arch.args.num_classes to {count} (or leave it out: it "
            f"defaults to the number of class names){other_fix}"
        )
    highest = max(int(targets.max()), -1 if known.highest_label is None else known.highest_label)
    if highest >= width:
        raise ConfigRefused(
            f"arch.args.num_classes: {name} outputs {width} classes, but the data has label {highest}; set "
            "num_classes to the number of classes in the data"
        )


def loss_or_refusal(criterion: Metric, output: torch.Tensor, targets: Any) -> torch.Tensor:
    """``criterion(output, targets)``, with a label the model has no output for (or a negative one) refused in
    one line: the checks before training see every label only of a split held in memory, so a rare one read
    item by item would otherwise end an epoch part way in an IndexError. (On a GPU the loss fails in a
    device-side assert instead, which no process can recover from.)"""
    try:
        return criterion(output, targets)
    except IndexError:
        if scores_each_class(output, targets):
            check_outputs_fit_labels("the model", output.size(1), targets, KnownLabels())
        check_loss(criterion, "the model", output.detach(), targets)  # the first batch's refusal of this loss
        raise


def class_count_mismatch(name: str, width: int, known: KnownLabels) -> str | None:
    """'<name> outputs 10 classes, but <loader> names 3 (a, b, c)' when the loader names its classes and
    ``width`` (``name``'s outputs) is not their count; None when it names none or as many."""
    if known.classes is None or width == len(known.classes):
        return None
    shown = ", ".join(known.classes[:6]) + (", ..." if len(known.classes) > 6 else "")
    return f"{name} outputs {width} classes, but {known.loader} names {len(known.classes)} ({shown})"


@torch.no_grad()
def check_batch_norm_batches(model: nn.Module, run_one: Callable[[], Any], samples: int, batch_size: int) -> None:
    """Refuse a batch size that leaves one sample in each epoch's last batch when a BatchNorm layer would then
    see a single value per channel (after a Linear layer, or on a 1 x 1 feature map), which it cannot train
    on: the epoch's last step would crash. ``run_one`` passes a batch of one sample through the model to find out."""
    if samples % batch_size != 1:
        return
    single = []  # the BatchNorm layers that see one value per channel in a batch of one sample

    def note_single(layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if inputs[0][0, 0].numel() == 1:
            single.append(layer)

    # SyncBatchNorm under torchrun normalises over every process's samples: more than one.
    hooks = [layer.register_forward_hook(note_single) for layer in model.modules()
             if isinstance(layer, nn.modules.batchnorm._BatchNorm)
             and not (isinstance(layer, nn.SyncBatchNorm) and world_size() > 1)]  # fmt: skip
    was_training = model.training
    try:
        model.eval()  # no running statistics are updated
        run_one()
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    if single:
        raise ConfigRefused(
            f"data_loader.args.batch_size: {batch_size} leaves 1 of the {samples} training samples in each "
            f"epoch's last batch, which {type(single[0]).__name__} cannot train on (one value per channel); "
            f"use batch_size {next(size for size in range(batch_size + 1, samples + 2) if samples % size != 1)} "
            "or another validation_split"
        )


def check_loss(criterion: Metric, model_name: str, output: torch.Tensor, targets: Any) -> None:
    """The loss must give the batch mean as a 0-dim floating tensor: backward() differentiates only a scalar,
    and an integer has no gradient. Found here, it is one line instead of a crash in the first step."""
    try:
        value = criterion(output.float(), targets)
    except Exception as err:
        raise ConfigRefused(
            f"loss: it cannot compare {model_name}'s output with the labels ({first_sentence(err)})"
        ) from None
    wrong = not_a_loss(value)
    if wrong is not None:
        loss_name = getattr(criterion, "__name__", type(criterion).__name__)
        raise ConfigRefused(
            f"loss: {loss_name} returned {wrong}; return the batch mean as a 0-dim float tensor, without .item() "
            "(F.cross_entropy's default reduction, as model/loss.py's cross_entropy does)"
        )


def not_a_loss(value: Any) -> str | None:
    """What ``value`` is, when it is not what backward() can start from (a 0-dim floating-point tensor); else None."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and value.is_floating_point():
        return None
    if not isinstance(value, torch.Tensor):
        return type(value).__name__
    if value.dim() != 0:
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a tensor of {str(value.dtype).removeprefix('torch.')}"


@torch.no_grad()
def check_batch_loss(batch_loss: Callable[[nn.Module, Any], Any], trainer_name: str, model: nn.Module,
                     metrics: dict[str, Metric], batch: Any, known: KnownLabels) -> tuple[Any, Any]:  # fmt: skip
    """A subclass's ``batch_loss`` run on a batch (in eval mode): its ``(output, target)``, or a one-line
    ConfigRefused when it raises, returns no ``(loss, output, target)``, or a metric or the labels do not fit."""
    where, was_training = f"trainer.type: {trainer_name}.batch_loss", model.training
    model.eval()
    try:
        result = batch_loss(model, batch)
    except Exception as err:
        raise ConfigRefused(
            f"{where} failed on a training batch of {describe(batch)} ({first_sentence(err)}); check it against "
            "the data loader's batches and the model"
        ) from None
    finally:
        model.train(was_training)
    if not (isinstance(result, tuple) and len(result) == 3):
        raise ConfigRefused(f"{where} returned {type(result).__name__}; return BatchLoss(loss, output, target)")
    loss, output, target = result
    wrong = not_a_loss(loss)
    if wrong is not None:
        raise ConfigRefused(f"{where} gave a loss of {wrong}; make it the batch mean as a 0-dim float tensor")
    if scores_each_class(output, target):
        check_outputs_fit_labels(type(model).__name__, output.size(1), target, known)
    for metric_name, metric in metrics.items():
        check_metric(metric_name, metric, output, target)
    return output, target


def check_metric(name: str, metric: Metric, output: torch.Tensor, targets: Any) -> None:
    """A metric must give the batch mean as a 0-dim tensor: the Trainer adds it up on the device."""
    try:
        value = metric(output, targets)
    except Exception as err:
        raise ConfigRefused(f"metrics: {name} cannot score the model's output ({first_sentence(err)})") from None
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        got = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise ConfigRefused(
            f"metrics: {name} returned {got}; return the batch mean as a 0-dim tensor, without .item() "
            "(as model/metric.py's accuracy does)"
        )
