"""Build what config.json names, from the modules of a ``Registry``. Building writes nothing, so a
mistake found here leaves no run folder behind."""

import inspect

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from base.base_data_loader import BaseDataLoader
from parse_config import Config, ObjectSpec, Registry, build, lookup_function
from trainer.trainer import Metric, Trainer
from utils.dist import rank
from utils.errors import UsageError
from utils.util import seed_everything


def build_data(config: Config, registry: Registry) -> BaseDataLoader:
    return build(config.data_loader, "data_loader", registry.data_loaders, BaseDataLoader, seed=config.seed)


def build_model(config: Config, registry: Registry) -> torch.nn.Module:
    return build(config.arch, "arch", registry.models, torch.nn.Module)


def build_loss_and_metrics(config: Config, registry: Registry) -> tuple[Metric, dict[str, Metric]]:
    criterion = lookup_function(registry.losses, config.loss, "loss")
    metrics = {name: lookup_function(registry.metrics, name, "metrics") for name in config.metrics}
    return criterion, metrics


def check_schedule_steps(spec: ObjectSpec) -> None:
    """Step the schedule twice on a throwaway optimizer: arguments that fail only when stepped
    (``step_size`` 0, an abstract class) then fail before anything is trained or written."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = build(spec, "lr_scheduler", torch.optim.lr_scheduler, LRScheduler, optimizer)
    try:
        for _ in range(2):
            optimizer.step()
            scheduler.step(0.0) if isinstance(scheduler, ReduceLROnPlateau) else scheduler.step()
    except Exception as err:
        raise UsageError(f"lr_scheduler.args: {spec.type} fails when stepped ({err})") from None


def check_optimizer_steps(optimizer: torch.optim.Optimizer) -> None:
    """The training step calls ``optimizer.step()`` without arguments: refuse an optimizer that needs a closure."""
    closure = inspect.signature(optimizer.step).parameters.get("closure")
    if closure is not None and closure.default is inspect.Parameter.empty:
        raise UsageError(
            f"optimizer.type: {type(optimizer).__name__} needs a closure in step(), which this trainer does not "
            "pass; choose another optimizer (Adam, AdamW, SGD...)"
        )


def build_trainer(config: Config, registry: Registry, device: torch.device) -> Trainer:
    """Seed, then build the data, model, loss, metrics, optimizer and scheduler, and the Trainer."""
    seed_everything(config.seed + rank())  # own dropout masks per process; DDP syncs the weights
    train_loader, valid_loader = build_data(config, registry).train_loaders(device)
    model = build_model(config, registry).to(device)
    criterion, metrics = build_loss_and_metrics(config, registry)
    optimizer = build(config.optimizer, "optimizer", torch.optim, torch.optim.Optimizer, model.parameters())
    check_optimizer_steps(optimizer)
    lr_scheduler = None
    if config.lr_scheduler is not None:
        check_schedule_steps(config.lr_scheduler)
        lr_scheduler = build(config.lr_scheduler, "lr_scheduler", torch.optim.lr_scheduler, LRScheduler, optimizer)
    return Trainer(
        model=model,
        criterion=criterion,
        metrics=metrics,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        train_loader=train_loader,
        valid_loader=valid_loader,
        settings=config.trainer,
        device=device,
        recorded_config=config.to_dict(),
    )
