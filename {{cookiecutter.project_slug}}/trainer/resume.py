"""What a resumed run may change, and how a change takes effect.

A resume rebuilds the run from its config (the checkpoint's, or ``-c``) plus the overrides, then
restores the checkpoint's state. Every difference from the config the checkpoint recorded either
takes effect or is refused with one line:

- refused: the architecture, the train/validation split (``seed``, ``data_loader.type``,
  ``data_loader.args.validation_split``), the optimizer's and the scheduler's class; and, part way
  through an epoch, anything that would change that epoch's batches or sums (``data_loader``,
  ``loss``, ``metrics``, ``trainer.grad_accum_steps``);
- applied on top of the restored state: ``optimizer.args`` (into every parameter group) and
  ``lr_scheduler.args`` (into the restored scheduler), each logged as ``old -> new (override)``;
- everything else (``trainer.*``, ``device``, ``data_loader.args`` between epochs...) is read from
  the config as the run goes on.
"""

import json
import logging
from typing import Any

from parse_config import Config
from trainer.schedule import is_per_step, main_schedule
from trainer.trainer import Trainer
from utils.errors import UsageError

logger = logging.getLogger(__name__)

FIXED = ("arch", "seed", "data_loader.type", "data_loader.args.validation_split", "optimizer.type", "lr_scheduler.type",
         "lr_scheduler.interval", "lr_scheduler.warmup_steps")  # fmt: skip
# A schedule stepped per optimizer step was laid out over the run's steps: its length stays.
FIXED_PER_STEP = ("trainer.epochs", "trainer.grad_accum_steps", "data_loader.args.batch_size")
FIXED_WITHIN_AN_EPOCH = ("data_loader", "loss", "metrics", "trainer.grad_accum_steps")


def changed_keys(before: Any, after: Any, path: str = "") -> list[str]:
    """The dotted paths where two configs differ (inside objects; a list counts as one value)."""
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return [] if before == after else [path]
    keys = list(before) + [key for key in after if key not in before]
    return [change for key in keys for change in changed_keys(before.get(key), after.get(key), _join(path, key))]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == prefix or path.startswith(prefix + ".") for prefix in prefixes)


def refuse_fixed_changes(recorded: Config, config: Config, mid_epoch: dict[str, Any] | None) -> None:
    """Raise for the first key a resume changes that cannot change."""
    before, after = recorded.to_dict(), config.to_dict()
    for path in changed_keys(before, after):
        if _under(path, FIXED):  # adding or dropping a whole lr_scheduler is allowed: "lr_scheduler" is not fixed
            top = next(prefix for prefix in FIXED if _under(path, (prefix,)))
            was = json.dumps(_lookup(before, top))
            raise UsageError(
                f"{top}: cannot change when resuming (the checkpoint has {was}); keep it, or start a new run "
                "with -c (add --init-from CHECKPOINT to start from the checkpoint's weights)"
            )
        if recorded.lr_scheduler is not None and is_per_step(recorded.lr_scheduler) and _under(path, FIXED_PER_STEP):
            raise UsageError(
                f"{path}: cannot change when resuming: the lr_scheduler is stepped per optimizer step over the run's "
                "length; start a new run with -c and --init-from CHECKPOINT instead"
            )
        if mid_epoch is not None and _under(path, FIXED_WITHIN_AN_EPOCH):
            epoch = mid_epoch["epoch"]
            raise UsageError(
                f"{path}: cannot change part way through epoch {epoch}; resume without the change first to finish "
                f"that epoch (with --set trainer.epochs={epoch}), then resume with it"
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
        raise UsageError(f"optimizer.args.{key}: {type(trainer.optimizer).__name__} has no such setting to change")
    old = groups[0][key]
    for group in groups:
        group[key] = tuple(value) if isinstance(group[key], tuple) else value
        if key == "lr" and "initial_lr" in group:
            group["initial_lr"] = value  # where schedules that count from the start begin
    if key == "lr" and hasattr(trainer.lr_scheduler, "base_lrs"):
        trainer.lr_scheduler.base_lrs = [value] * len(groups)
    logger.info("optimizer.args.%s: %s -> %s (override)", key, old, value)


def _set_scheduler_arg(scheduler: Any, key: str, value: Any) -> None:
    if not hasattr(scheduler, key):
        raise UsageError(f"lr_scheduler.args.{key}: {type(scheduler).__name__} keeps no such setting to change")
    logger.info("lr_scheduler.args.%s: %s -> %s (override)", key, getattr(scheduler, key), value)
    setattr(scheduler, key, value)
