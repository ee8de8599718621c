"""What a resumed run may change, and how a change takes effect (docs/resume.md's table): every
difference from the config a checkpoint recorded is either applied or refused with one line."""

import dataclasses
import json
import logging
from typing import Any

from torch.optim.lr_scheduler import OneCycleLR

from base.base_data_loader import LoaderSettings
from base.base_trainer import BaseTrainer
from parse_config import Config, SchedulerSpec
from trainer.schedule import is_per_step, length_filled_in, main_schedule, run_length_settings
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
    prefix = f"{path}." if path else ""
    return [change for key in keys for change in changed_keys(before.get(key), after.get(key), prefix + key)]


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


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == prefix or path.startswith(prefix + ".") for prefix in prefixes)


def refuse_fixed_changes(recorded: Config, config: Config, mid_epoch: dict[str, Any] | None) -> None:
    """Raise for the first key a resume changes that cannot change."""
    before = recorded.to_dict()
    schedule = recorded.lr_scheduler
    for path in config_changes(recorded, config):
        # adding or dropping a whole lr_scheduler is allowed: "lr_scheduler" is not fixed
        fixed = next((prefix for prefix in FIXED if _under(path, (prefix,))), None)
        if fixed is not None:
            was = json.dumps(_lookup(before, fixed))
            raise ConfigRefused(
                f"{fixed}: cannot change when resuming (the checkpoint has {was}); keep it, or start a new run "
                "with -c (add --init-from CHECKPOINT to start from the checkpoint's weights)"
            )
        if schedule is not None and _under(path, run_length_settings(schedule)):
            raise ConfigRefused(
                f"{path}: cannot change when resuming: {_laid_out(schedule)}; start a new run with -c and "
                "--init-from CHECKPOINT instead"
            )
        if mid_epoch is not None and _under(path, FIXED_WITHIN_AN_EPOCH):
            epoch = mid_epoch["epoch"]
            advice = _finish_epoch_first(schedule, epoch, "without the change")
            raise ConfigRefused(f"{path}: cannot change part way through epoch {epoch}; {advice}")


def _finish_epoch_first(schedule: SchedulerSpec | None, epoch: int, undone: str) -> str:
    """How to go on after a change refused part way through ``epoch``: finish that epoch with the change
    ``undone``, then make it; where the schedule fixes trainer.epochs the run cannot end after that epoch."""
    if schedule is not None and "trainer.epochs" in run_length_settings(schedule):
        new_run = "start a new run with -c and --init-from CHECKPOINT"
        return f"finish the run {undone} (its schedule fixes trainer.epochs), or {new_run}"
    return f"resume {undone} first to finish that epoch (with --set trainer.epochs={epoch}), then with the change"


def _laid_out(schedule: SchedulerSpec) -> str:
    if is_per_step(schedule):
        return "the lr_scheduler is stepped per optimizer step over the run's length"
    return f"the lr_scheduler's {length_filled_in(schedule)} was filled in from trainer.epochs"


def refuse_world_size_change(
    trained_with: int | None, world: int, schedule: SchedulerSpec | None, mid_epoch: dict[str, Any] | None
) -> None:
    """Each process takes 1/``world`` of an epoch's batches, so another number of processes than the checkpoint
    was ``trained_with`` (None: not recorded) takes other steps."""
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


def refuse_data_change(
    recorded: dict[str, int] | None, layout: dict[str, int], schedule: SchedulerSpec | None,
    mid_epoch: dict[str, Any] | None,
) -> None:  # fmt: skip
    """Data added to or removed from the files changes no config key, so compare the checkpoint's ``data_layout``
    (None before it was recorded: not checked) with this run's ``layout``. Under a schedule stepped per optimizer
    step, another number of steps per epoch would step it past its end, or stop it short."""
    if recorded is None:
        return
    change = _describe_data_change(recorded, layout)  # '' when no split's size changed
    if mid_epoch is not None and change:
        epoch = mid_epoch["epoch"]
        advice = _finish_epoch_first(schedule, epoch, "with the checkpoint's data")
        raise UsageError(f"data_loader: {change}, so epoch {epoch}, stopped part way, gets other batches; {advice}")
    steps_before, steps_now = recorded["steps_per_epoch"], layout["steps_per_epoch"]
    if schedule is not None and is_per_step(schedule) and steps_before != steps_now:
        steps = f"an epoch has {steps_now} optimizer steps (the checkpoint's had {steps_before})"
        raise UsageError(
            f"data_loader: {f'{change}, so {steps}' if change else steps}, and {_laid_out(schedule)}; start a new "
            "run with -c and --init-from CHECKPOINT instead"
        )
    if change:
        logger.warning("The training data changed since the checkpoint: %s%s", change, _split_redrawn(recorded, layout))


def _describe_data_change(recorded: dict[str, int], layout: dict[str, int]) -> str:
    """'the training split has 620 samples (the checkpoint's had 600)' for each split whose size changed."""
    changes = [
        f"the {split} split has {layout[key]} samples (the checkpoint's had {recorded[key]})"
        for split, key in (("training", "train_samples"), ("validation", "valid_samples"))
        if recorded[key] != layout[key]
    ]
    return ", ".join(changes)


def _split_redrawn(recorded: dict[str, int], layout: dict[str, int]) -> str:
    """Why a held-out validation split no longer means what it did: it is drawn from a permutation of all the
    training samples, which another total reshuffles (a count in validation_split as much as a fraction)."""
    total_before = recorded["train_samples"] + recorded["valid_samples"]
    total_now = layout["train_samples"] + layout["valid_samples"]
    if total_before == total_now or not (recorded["valid_samples"] or layout["valid_samples"]):
        return ""
    return (
        f"; the train/validation split (data_loader.args.validation_split) is drawn anew over {total_now} samples, "
        "so samples validated on before may now be trained on, and validation scores compare with earlier epochs' "
        "only roughly"
    )


def _lookup(config: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        config = config.get(key) if isinstance(config, dict) else None
    return config


def apply_overrides(trainer: BaseTrainer, recorded: Config, config: Config) -> None:
    """Put changed ``optimizer.args`` and ``lr_scheduler.args`` into the restored optimizer and scheduler."""
    for key, value in config.optimizer.args.items():
        if recorded.optimizer.args.get(key) != value:
            _set_optimizer_arg(trainer, key, value)
    if trainer.lr_scheduler is not None and recorded.lr_scheduler is not None and config.lr_scheduler is not None:
        for key, value in config.lr_scheduler.args.items():
            if recorded.lr_scheduler.args.get(key) != value:
                _set_scheduler_arg(main_schedule(trainer.lr_scheduler), key, value)


def _set_optimizer_arg(trainer: BaseTrainer, key: str, value: Any) -> None:
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
        raise ConfigRefused(
            f"lr_scheduler.args.{key}: {type(scheduler).__name__} keeps no such setting to change (it used it when "
            "built); start a new run with -c and --init-from CHECKPOINT instead"
        )
    logger.info("lr_scheduler.args.%s: %s -> %s (override)", key, getattr(scheduler, key), value)
    setattr(scheduler, key, value)
