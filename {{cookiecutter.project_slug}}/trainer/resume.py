"""What a resumed run may change, and how a change takes effect.

A resume rebuilds the run from its config (the checkpoint's, or ``-c``) plus the overrides, then
restores the checkpoint's state. Every difference from the config the checkpoint recorded either
takes effect or is refused with one line:

- refused: the architecture, the train/validation split (``seed``, ``data_loader.type``,
  ``data_loader.args.validation_split``), the optimizer's and the scheduler's class; what a schedule
  laid out over the run's length was computed from; part way through an epoch, anything that would
  change that epoch's batches or sums (``data_loader``, ``loss``, ``metrics``,
  ``trainer.grad_accum_steps``); and another number of processes where each one's steps matter;
- applied on top of the restored state: ``optimizer.args`` (into every parameter group) and
  ``lr_scheduler.args`` (into the restored scheduler), each logged as ``old -> new (override)``;
- everything else (``trainer.*``, ``device``, ``data_loader.args`` between epochs...) is read from
  the config as the run goes on.
"""

import dataclasses
import json
import logging
from typing import Any

from torch.optim.lr_scheduler import OneCycleLR

from base.base_data_loader import LoaderSettings
from parse_config import Config, SchedulerSpec
from trainer.schedule import is_per_step, length_filled_in, main_schedule, run_length_settings
from trainer.trainer import Trainer
from utils.errors import ConfigRefused, UsageError

logger = logging.getLogger(__name__)

FIXED = ("arch", "seed", "data_loader.type", "data_loader.args.validation_split", "optimizer.type", "lr_scheduler.type",
         "lr_scheduler.interval", "lr_scheduler.warmup_steps")  # fmt: skip
FIXED_WITHIN_AN_EPOCH = ("data_loader", "loss", "metrics", "trainer.grad_accum_steps")


def changed_keys(before: Any, after: Any, path: str = "") -> list[str]:
    """The dotted paths where two configs differ (inside objects; a list counts as one value)."""
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return [] if before == after else [path]
    keys = list(before) + [key for key in after if key not in before]
    return [change for key in keys for change in changed_keys(before.get(key), after.get(key), _join(path, key))]


def config_changes(recorded: Config, config: Config) -> list[str]:
    """The dotted paths where ``config`` differs from the one a checkpoint ``recorded``. A loader setting missing
    on one side counts as its default: a key a template update added (prefetch_factor) is no change."""
    before, after = recorded.to_dict(), config.to_dict()
    for side in (before, after):
        loader_args = side["data_loader"].setdefault("args", {})
        for setting in dataclasses.fields(LoaderSettings):
            if setting.default is not dataclasses.MISSING:
                loader_args.setdefault(setting.name, setting.default)
    return changed_keys(before, after)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == prefix or path.startswith(prefix + ".") for prefix in prefixes)


def refuse_fixed_changes(recorded: Config, config: Config, mid_epoch: dict[str, Any] | None) -> None:
    """Raise for the first key a resume changes that cannot change."""
    before = recorded.to_dict()
    for path in config_changes(recorded, config):
        if _under(path, FIXED):  # adding or dropping a whole lr_scheduler is allowed: "lr_scheduler" is not fixed
            top = next(prefix for prefix in FIXED if _under(path, (prefix,)))
            was = json.dumps(_lookup(before, top))
            raise ConfigRefused(
                f"{top}: cannot change when resuming (the checkpoint has {was}); keep it, or start a new run "
                "with -c (add --init-from CHECKPOINT to start from the checkpoint's weights)"
            )
        schedule = recorded.lr_scheduler
        if schedule is not None and _under(path, run_length_settings(schedule)):
            raise ConfigRefused(
                f"{path}: cannot change when resuming: {_laid_out(schedule)}; start a new run with -c and "
                "--init-from CHECKPOINT instead"
            )
        if mid_epoch is not None and _under(path, FIXED_WITHIN_AN_EPOCH):
            epoch = mid_epoch["epoch"]
            if schedule is not None and "trainer.epochs" in run_length_settings(schedule):  # the run cannot end early
                first = "finish the run without it (its schedule fixes trainer.epochs), or start a new run with -c"
                raise ConfigRefused(f"{path}: cannot change part way through epoch {epoch}; {first} and --init-from")
            raise ConfigRefused(
                f"{path}: cannot change part way through epoch {epoch}; resume without the change first to finish "
                f"that epoch (with --set trainer.epochs={epoch}), then resume with it"
            )


def _laid_out(schedule: SchedulerSpec) -> str:
    if is_per_step(schedule):
        return "the lr_scheduler is stepped per optimizer step over the run's length"
    return f"the lr_scheduler's {length_filled_in(schedule)} was filled in from trainer.epochs"


def refuse_world_size_change(
    trained_with: int | None, world: int, schedule: SchedulerSpec | None, mid_epoch: dict[str, Any] | None
) -> None:
    """Each process takes 1/``world`` of an epoch's batches, so a resume with another number of processes
    than the checkpoint was ``trained_with`` (None: not recorded) has other steps: refused part way
    through an epoch, and for a schedule laid out over the run's optimizer steps."""
    if trained_with is None or trained_with == world:
        return
    processes = f"{trained_with} process{'es' if trained_with > 1 else ''}"
    was = f"torchrun --nproc_per_node: the checkpoint was trained with {processes}, this run has {world}"
    same = f"resume with --nproc_per_node={trained_with}" if trained_with > 1 else "resume without torchrun"
    if mid_epoch is not None:
        raise UsageError(f"{was}, and it stopped part way through epoch {mid_epoch['epoch']}; {same} to finish it")
    if schedule is not None and is_per_step(schedule):
        raise UsageError(
            f"{was}, and its lr_scheduler is stepped per optimizer step over the run's length; {same}, or "
            "start a new run with -c and --init-from CHECKPOINT"
        )


def _lookup(config: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        config = config.get(key) if isinstance(config, dict) else None
    return config


def apply_overrides(trainer: Trainer, recorded: Config, config: Config) -> None:
    """Put changed ``optimizer.args`` and ``lr_scheduler.args`` into the restored optimizer and scheduler."""
    for key, value in config.optimizer.args.items():
        if recorded.optimizer.args.get(key) != value:
            _set_optimizer_arg(trainer, key, value)
    if trainer.lr_scheduler is not None and recorded.lr_scheduler is not None and config.lr_scheduler is not None:
        for key, value in config.lr_scheduler.args.items():
            if recorded.lr_scheduler.args.get(key) != value:
                _set_scheduler_arg(main_schedule(trainer.lr_scheduler), key, value)


def _set_optimizer_arg(trainer: Trainer, key: str, value: Any) -> None:
    groups = trainer.optimizer.param_groups
    if any(key not in group for group in groups):
        raise ConfigRefused(f"optimizer.args.{key}: {type(trainer.optimizer).__name__} has no such setting to change")
    old = groups[0][key]
    for group in groups:
        group[key] = tuple(value) if isinstance(group[key], tuple) else value
        if key == "lr" and "initial_lr" in group:
            group["initial_lr"] = value  # where schedules that count from the start begin
    if key == "lr" and hasattr(trainer.lr_scheduler, "base_lrs"):
        trainer.lr_scheduler.base_lrs = [value] * len(groups)
    logger.info("optimizer.args.%s: %s -> %s (override)", key, old, value)


def _set_scheduler_arg(scheduler: Any, key: str, value: Any) -> None:
    if isinstance(scheduler, OneCycleLR) and key == "total_steps":  # its phases were laid out when it was built
        raise ConfigRefused(
            "lr_scheduler.args.total_steps: cannot change when resuming (OneCycleLR lays out its phases when "
            "built); start a new run with -c and --init-from CHECKPOINT instead"
        )
    if not hasattr(scheduler, key):
        raise ConfigRefused(f"lr_scheduler.args.{key}: {type(scheduler).__name__} keeps no such setting to change")
    logger.info("lr_scheduler.args.%s: %s -> %s (override)", key, getattr(scheduler, key), value)
    setattr(scheduler, key, value)
