"""A trained model ready to use: the checkpoint found, its config (with overrides), the data loader
that config names (for its preprocessing and test split) and the model with its weights, in eval mode."""

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from base.base_data_loader import BaseDataLoader
from logger.logger import setup_logging
from parse_config import Config, load_config
from trainer.build import build_data, build_model
from utils.checkpoint import find_checkpoint, load_checkpoint, load_model_weights
from utils.cli import warnings_held
from utils.dist import init_distributed, launched_by_torchrun, rank
from utils.registry import Registry
from utils.util import resolve_device

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainedModel:
    model: torch.nn.Module  # on ``device``, in eval mode
    config: Config
    data: BaseDataLoader
    classes: list[str] | None  # the class names by label, as the checkpoint keeps them
    device: torch.device
    checkpoint_path: Path
    epoch: int  # the epochs it finished
    mid_epoch: dict[str, int] | None  # {"epoch", "step"} when it was saved part way through the next one
    input_shape: tuple[int, ...] | None = None  # one training sample's (C, H, W); None in older checkpoints

    @property
    def trained_for(self) -> str:
        """``epoch 3``, or ``epoch 4, step 25 (stopped part way)`` for a run stopped inside an epoch."""
        if self.mid_epoch is None:
            return f"epoch {self.epoch}"
        return f"epoch {self.mid_epoch['epoch']}, step {self.mid_epoch['step']} (stopped part way)"

    def warn_unnamed_classes(self, scored: int, consequence: str) -> None:
        """Warn when the model scores another number of classes than the checkpoint names (a checkpoint trained
        before the two were checked against each other); ``consequence``: what the output does about it."""
        if self.classes and len(self.classes) != scored:
            logger.warning("warning: the model scores %d classes but its checkpoint names %d; %s", scored,
                           len(self.classes), consequence)  # fmt: skip

    def class_name(self, index: int) -> str:
        """The name of class ``index``, or the index itself when the checkpoint has no names for it."""
        return self.classes[index] if self.classes and index < len(self.classes) else str(index)


def load_trained_model(
    resume: Path, overrides: list[str], modules: Registry, distributed: bool = False
) -> TrainedModel:
    """The model of a checkpoint, run folder or experiment folder (its newest run's best.pth); ``distributed``:
    under torchrun, join its process group (test.py shares the test split out among the processes)."""
    checkpoint_path = find_checkpoint(resume)
    checkpoint = load_checkpoint(checkpoint_path)
    config = load_config(None, overrides, recorded=checkpoint["config"])
    device = resolve_device(config.device)
    if distributed and launched_by_torchrun():
        device = init_distributed(device)
    setup_logging(None, config.trainer.verbosity, rank())  # under torchrun, rank 0 logs
    classes = checkpoint.get("classes")
    with warnings_held():  # shown only if nothing is refused (a model of width 0 warns, then its weights do not fit)
        model = build_model(config, modules, classes)
        load_model_weights(model, checkpoint["model"], checkpoint_path)
        model.to(device).eval()
        data = build_data(config, modules)
    point = checkpoint.get("mid_epoch")
    mid_epoch = {"epoch": point["epoch"], "step": point["step"]} if point else None
    shape = tuple(checkpoint["input_shape"]) if checkpoint.get("input_shape") else None
    return TrainedModel(model, config, data, classes, device, checkpoint_path, checkpoint["epoch"], mid_epoch, shape)
