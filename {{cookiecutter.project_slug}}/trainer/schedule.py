"""Learning-rate schedules: stepped per epoch or per optimizer step, with an optional linear warmup,
and their length filled in from the run's when the config leaves it out (OneCycleLR's peak
``max_lr`` too: left out, it is the optimizer's ``lr``).

``"lr_scheduler": {"type": "CosineAnnealingLR", "args": {}, "warmup_steps": 200}`` warms up linearly
for 200 optimizer steps, then follows a cosine over the rest of the run. ``interval`` says how often
the schedule is stepped: ``"step"`` (after every optimizer step; the default for OneCycleLR,
CyclicLR and any schedule with a warmup) or ``"epoch"`` (the default otherwise).
"""

import torch
from torch.optim.lr_scheduler import LinearLR, LRScheduler, ReduceLROnPlateau, SequentialLR

from parse_config import ObjectSpec, SchedulerSpec
from utils.errors import ConfigRefused
from utils.registry import build

PER_STEP_BY_DEFAULT = ("OneCycleLR", "CyclicLR")
LENGTH_ARGUMENT = {"OneCycleLR": "total_steps", "CosineAnnealingLR": "T_max"}  # filled in when left out
PEAK_ARGUMENT = {"OneCycleLR": "max_lr"}  # left out: the optimizer's lr, so that --lr sets the peak


def is_per_step(spec: SchedulerSpec) -> bool:
    if spec.interval is not None:
        return spec.interval == "step"
    return spec.type in PER_STEP_BY_DEFAULT or spec.warmup_steps > 0


def length_filled_in(spec: SchedulerSpec) -> str | None:
    """The length argument (``T_max``, ``total_steps``) the run fills in for ``spec``; None when the config gives it."""
    name = LENGTH_ARGUMENT.get(spec.type)
    if name is None or name in spec.args or (spec.type == "OneCycleLR" and "epochs" in spec.args):
        return None
    return name


def run_length_settings(spec: SchedulerSpec) -> tuple[str, ...]:
    """The settings a schedule's shape was computed from, so that a resume cannot change them: the run's
    optimizer steps for a per-step schedule, the epochs for a per-epoch one whose length was filled in."""
    if is_per_step(spec):
        return ("trainer.epochs", "trainer.grad_accum_steps", "data_loader.args.batch_size")
    return ("trainer.epochs",) if length_filled_in(spec) else ()


def build_schedule(
    spec: SchedulerSpec, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int
) -> LRScheduler:
    """The scheduler ``spec`` names, over a run of ``epochs`` epochs of ``steps_per_epoch`` optimizer steps."""
    per_step = is_per_step(spec)
    if spec.warmup_steps and not per_step:
        raise ConfigRefused('lr_scheduler.interval: a warmup is stepped per optimizer step; set interval to "step"')
    if spec.warmup_steps and spec.type == "ReduceLROnPlateau":
        raise ConfigRefused("lr_scheduler.warmup_steps: ReduceLROnPlateau cannot follow a warmup; set it to 0")
    if per_step and spec.type == "ReduceLROnPlateau":  # it is stepped with the monitored metric, once an epoch
        raise ConfigRefused(
            'lr_scheduler.interval: ReduceLROnPlateau is stepped once per epoch; set interval to "epoch"'
        )
    length = (epochs * steps_per_epoch if per_step else epochs) - spec.warmup_steps
    if length < 0:  # the schedule the config names would never start
        raise ConfigRefused(f"lr_scheduler.warmup_steps: {spec.warmup_steps} is more than the run's "
                            f"{epochs * steps_per_epoch} optimizer steps; warm up for fewer")  # fmt: skip
    args = dict(spec.args)
    peak = PEAK_ARGUMENT.get(spec.type)
    if peak is not None and peak not in args:
        args[peak] = [group["lr"] for group in optimizer.param_groups]
    name = length_filled_in(spec)
    if name is not None:
        args[name] = max(length, 1)
    elif spec.type == "OneCycleLR":
        check_one_cycle_length(args, length)
    main = build(ObjectSpec(spec.type, args), "lr_scheduler", torch.optim.lr_scheduler, LRScheduler, optimizer)
    if not spec.warmup_steps:
        return main
    warmup = LinearLR(optimizer, start_factor=1 / (spec.warmup_steps + 1), total_iters=spec.warmup_steps)
    return SequentialLR(optimizer, [warmup, main], milestones=[spec.warmup_steps])


def check_one_cycle_length(args: dict, length: int) -> None:
    """OneCycleLR fails when stepped past its length (``total_steps``, or ``epochs`` x ``steps_per_epoch``):
    refuse a length shorter than the run's ``length`` steps before anything is trained."""
    given = args.get("total_steps")
    key = "total_steps"
    if given is None and isinstance(args.get("epochs"), int) and isinstance(args.get("steps_per_epoch"), int):
        given, key = args["epochs"] * args["steps_per_epoch"], "epochs x steps_per_epoch"
    if isinstance(given, int) and given < length:
        raise ConfigRefused(
            f"lr_scheduler.args: OneCycleLR's {key} gives {given} steps, fewer than the run's {length}; "
            "leave them out to have the length filled in"
        )


def check_schedule_steps(spec: SchedulerSpec, epochs: int, steps_per_epoch: int) -> None:
    """Step the schedule twice (or as often as the run will, if less) on a throwaway optimizer: arguments
    that fail only when stepped (``step_size`` 0, an abstract class) then fail before anything is trained."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = build_schedule(spec, optimizer, epochs, steps_per_epoch)
    steps_in_run = epochs * steps_per_epoch if is_per_step(spec) else epochs
    try:
        for _ in range(min(2, steps_in_run)):
            optimizer.step()
            scheduler.step(0.0) if isinstance(scheduler, ReduceLROnPlateau) else scheduler.step()
    except Exception as err:
        raise ConfigRefused(f"lr_scheduler.args: {spec.type} fails when stepped ({err})") from None


def main_schedule(scheduler: LRScheduler) -> LRScheduler:
    """The named schedule inside a warmup (the one whose arguments the config sets)."""
    return scheduler._schedulers[-1] if isinstance(scheduler, SequentialLR) else scheduler
