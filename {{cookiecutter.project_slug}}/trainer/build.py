"""Build what config.json names, from the modules of a ``Registry``. Building writes nothing, so a
mistake found here leaves no run folder behind."""

import inspect
from dataclasses import dataclass

import torch

from base.base_data_loader import BaseDataLoader, Loader
from base.base_trainer import BaseTrainer, Metric, optimizer_steps_per_epoch
from parse_config import Config, ObjectSpec
from trainer.schedule import build_schedule, check_schedule_steps, is_per_step, run_length_settings
from utils.dist import rank
from utils.errors import ConfigRefused
from utils.registry import Registry, build, lookup_class, lookup_function
from utils.util import seed_everything


def build_data(config: Config, registry: Registry) -> BaseDataLoader:
    return build(config.data_loader, "data_loader", registry.data_loaders, BaseDataLoader, seed=config.seed)


@dataclass(frozen=True)
class RunData:
    """What a Trainer takes from the data loader: its training and validation loaders and the class names."""

    train_loader: Loader
    valid_loader: Loader | None
    classes: list[str] | None


def build_run_data(config: Config, registry: Registry, device: torch.device) -> RunData:
    """The data ``data_loader`` names, loaded and split into loaders on ``device``."""
    data = build_data(config, registry)
    train_loader, valid_loader = data.train_loaders(device)
    return RunData(train_loader, valid_loader, data.class_names())


def build_model(config: Config, registry: Registry, classes: list[str] | None = None) -> torch.nn.Module:
    """The model ``arch`` names; its ``num_classes``, when the config leaves it out, is the data's class count."""
    if classes and _class_count_left_out(config, registry):
        return build(config.arch, "arch", registry.models, torch.nn.Module, num_classes=len(classes))
    return build(config.arch, "arch", registry.models, torch.nn.Module)


def _class_count_left_out(config: Config, registry: Registry) -> bool:
    """Whether the model ``arch`` names takes ``num_classes`` and the config leaves it out."""
    factory = getattr(registry.models, config.arch.type, None)
    takes_classes = callable(factory) and "num_classes" in inspect.signature(factory).parameters
    return takes_classes and "num_classes" not in config.arch.args


def check_class_count(config: Config, registry: Registry, classes: list[str] | None) -> None:
    """A model that takes ``num_classes``, with none in the config and none counted from the data, would
    silently get its own default (10 for ConvNet): refuse that, so a 2-class run never trains 10 outputs.
    A width other than the number of class names the loader gives (whether num_classes is set or the model
    has none) is refused on the model's output, by check_model_fits (trainer/checks.py)."""
    if not classes and _class_count_left_out(config, registry):
        raise ConfigRefused(
            f"arch.args.num_classes: not set, and {config.data_loader.type} names no classes to count; set it in "
            "config.json (or give the loader its classes, as data_loader/data_loaders.py's loaders do)"
        )


# What every epoch records besides the metrics (train.log, metrics.csv, trackers), so no metric may be named so.
RECORDED_NAMES = ("epoch", "loss", "lr", "seconds")


def build_loss_and_metrics(config: Config, registry: Registry) -> tuple[Metric, dict[str, Metric]]:
    twice = [name for index, name in enumerate(config.metrics) if name in config.metrics[:index]]
    if twice:  # one column per name: the second would be dropped without a word
        raise ConfigRefused(f"metrics: {twice[0]!r} is listed twice; list each metric once")
    taken = [name for name in config.metrics if name in RECORDED_NAMES or name.startswith("val_")]
    if taken:
        raise ConfigRefused(
            f"metrics: {taken[0]!r} would overwrite what every run records ({', '.join(RECORDED_NAMES)}, and val_ "
            "for validation); rename the function in model/metric.py and in config.json"
        )
    criterion = lookup_function(registry.losses, config.loss, "loss")
    metrics = {name: lookup_function(registry.metrics, name, "metrics") for name in config.metrics}
    return criterion, metrics


def build_optimizer(config: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer ``optimizer`` names, over ``model``'s parameters. ``"fused": null`` (config.json has it for
    every answer, so that changing the accelerator edits only a value) is the default: left out, so that an
    optimizer without a fused kernel (RMSprop, NAdam...) is not refused for it."""
    args = {key: value for key, value in config.optimizer.args.items() if not (key == "fused" and value is None)}
    if not isinstance(args.get("fused", False), bool):  # torch takes any truthy value as true
        raise ConfigRefused(f"optimizer.args.fused: {args['fused']!r} is not true, false or null (the default)")
    spec = ObjectSpec(config.optimizer.type, args)
    optimizer = build(spec, "optimizer", torch.optim, torch.optim.Optimizer, model.parameters())
    # The training step calls optimizer.step() without arguments: refuse one that needs a closure (LBFGS).
    closure = inspect.signature(optimizer.step).parameters.get("closure")
    if closure is not None and closure.default is inspect.Parameter.empty:
        raise ConfigRefused(
            f"optimizer.type: {type(optimizer).__name__} needs a closure in step(), which this trainer does not "
            "pass; choose another optimizer (Adam, AdamW, SGD...)"
        )
    return optimizer


def build_trainer(config: Config, registry: Registry, device: torch.device, data: RunData | None = None) -> BaseTrainer:
    """Seed, then build the data (unless ``data``, built already from the same data_loader, seed and device, is
    given: sweep.py's check reuses it), model, loss, metrics, optimizer and scheduler, and the Trainer class that
    ``trainer.type`` names."""
    trainer_class = trainer_class_named(config, registry)
    seed_everything(config.seed + rank())  # own dropout masks per process; DDP syncs the weights
    if data is None:
        data = build_run_data(config, registry, device)
    train_loader, valid_loader, classes = data.train_loader, data.valid_loader, data.classes
    check_class_count(config, registry, classes)
    model = build_model(config, registry, classes).to(device)
    criterion, metrics = build_loss_and_metrics(config, registry)
    optimizer = build_optimizer(config, model)
    lr_scheduler, spec = None, config.lr_scheduler
    steps_per_epoch = optimizer_steps_per_epoch(train_loader, config.trainer.grad_accum_steps)
    if spec is not None:
        check_schedule_steps(spec, config.trainer.epochs, steps_per_epoch)
        lr_scheduler = build_schedule(spec, optimizer, config.trainer.epochs, steps_per_epoch)
    return trainer_class(
        model=model,
        criterion=criterion,
        metrics=metrics,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        schedule_per_step=spec is not None and is_per_step(spec),
        schedule_length_fixed=spec is not None and bool(run_length_settings(spec)),
        train_loader=train_loader,
        valid_loader=valid_loader,
        settings=config.trainer,
        device=device,
        recorded_config=config.to_dict(),
        classes=classes,
    )


def trainer_class_named(config: Config, registry: Registry) -> type[BaseTrainer]:
    """The class config.json's ``trainer.type`` names in trainer/trainer.py (the registry's trainers)."""
    return lookup_class(registry.trainers, config.trainer.type, "trainer.type", BaseTrainer)
