"""Predicting on any data: the model's outputs over a split of the run's data, or over the inputs that the data
loader's ``read_inputs`` reads from files, prepared as test.py prepares the test split, in the run's precision.
They are written to a .pt file (the tensor, one row per sample) or to a .csv file (flat outputs: one row per
sample, one column per output, and the predicted class where the checkpoint names classes)."""

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from base.base_trainer import BaseTrainer
from base.batch import describe
from inference.trained import TrainedModel
from trainer.build import build_loss_and_metrics, trainer_class_named
from trainer.checks import model_output
from utils.cli import refuse_overwriting
from utils.errors import UsageError
from utils.registry import Registry
from utils.util import atomic_write

BatchOutput = Callable[[Any], torch.Tensor]  # a batch -> the outputs to write, one row per sample

SUFFIXES = (".csv", ".pt")


def predict_outputs(trained: TrainedModel, sources: list[str | Path], output: Path, modules: Registry) -> int:
    """Write the model's outputs over each of ``sources`` (a split's name or an input file) to ``output``,
    nothing when any source is refused; the number of samples written."""
    if output.suffix not in SUFFIXES:
        raise UsageError(f"-o {str(output)!r}: write the outputs to a .csv or a .pt file")
    files = [source for source in sources if isinstance(source, Path)]
    for path in files:
        if not path.is_file():
            raise UsageError(f"{str(path)!r} does not exist; pass files that {type(trained.data).__name__} reads")
    refuse_overwriting(output, files, "one of the input files")
    batch_output = output_function(trained, modules, from_files=bool(files))
    values, rows = [], []
    for source in sources:
        outputs = outputs_over(trained, source, batch_output)
        values.append(outputs)
        rows += [(str(source), sample) for sample in range(len(outputs))]
    outputs = torch.cat(values)
    if output.suffix == ".pt":
        buffer = io.BytesIO()
        torch.save(outputs, buffer)
        atomic_write(output, lambda handle: handle.write(buffer.getbuffer()))
    else:
        write_outputs_csv(outputs, rows, trained, output)
    return len(outputs)


def output_function(trained: TrainedModel, modules: Registry, from_files: bool) -> BatchOutput:
    """The model's output on a batch's inputs, or, for a Trainer subclass with its own ``batch_loss``, the output
    that it gives the metrics (which it may make with the batch's targets: a split has them, input files not)."""
    trainer_class = trainer_class_named(trained.config, modules)
    if trainer_class.batch_loss is BaseTrainer.batch_loss:
        return lambda batch: model_output(trained.model, batch[0])
    if from_files:
        raise UsageError(
            f"trainer.type: {trainer_class.__name__} makes a batch's outputs in its own batch_loss, from batches with "
            "targets, which input files lack; predict on a split with --split test (or train)"
        )
    criterion, metrics = build_loss_and_metrics(trained.config, modules)
    evaluator = trainer_class.for_evaluation(criterion, metrics, trained.config.trainer, trained.device)
    trained.model.eval()
    return lambda batch: evaluator.batch_loss(trained.model, batch).output


@torch.no_grad()
def outputs_over(trained: TrainedModel, source: str | Path, batch_output: BatchOutput) -> torch.Tensor:
    """The outputs on every sample of ``source``, in order, as float32 on the CPU."""
    amp = trained.config.trainer.amp_dtype(trained.device)
    batches = []
    for batch in trained.data.prediction_loader(source, trained.device):
        with torch.autocast(trained.device.type, dtype=amp, enabled=amp is not None):
            output = batch_output(batch)
        if not isinstance(output, torch.Tensor):
            raise UsageError(f"predict.py: the outputs are {describe(output)}, not a tensor; write them from a "
                             "tensor (the output that batch_loss gives the metrics)")  # fmt: skip
        batches.append(output.float().cpu())
    return torch.cat(batches)


def write_outputs_csv(outputs: torch.Tensor, rows: list[tuple[str, int]], trained: TrainedModel, path: Path) -> None:
    """One row per sample: ``input`` (the split or file), ``sample`` (its index there), with class names the
    predicted ``index`` and ``class``, then ``output_0``, ``output_1``... (the model's outputs)."""
    if outputs.dim() > 2:
        raise UsageError(f"-o {str(path)!r}: the model's outputs are {describe(outputs)}, more than one row of "
                         "numbers per sample; write them to a .pt file instead")  # fmt: skip
    outputs = outputs.reshape(len(outputs), -1)
    classified = bool(trained.classes) and outputs.size(1) > 1
    if classified:
        trained.warn_unnamed_classes(outputs.size(1), "classes without a name are written as their index")
    predicted = outputs.argmax(dim=1).tolist()
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    class_columns = ["index", "class"] if classified else []
    writer.writerow(["input", "sample", *class_columns, *(f"output_{k}" for k in range(outputs.size(1)))])
    for (source, sample), label, values in zip(rows, predicted, outputs.tolist(), strict=True):
        named = [label, trained.class_name(label)] if classified else []
        writer.writerow([source, sample, *named, *(f"{value:.9g}" for value in values)])  # float32, exactly
    atomic_write(path, lambda handle: handle.write(text.getvalue().encode("utf-8")))
