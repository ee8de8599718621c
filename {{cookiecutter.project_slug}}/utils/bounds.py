"""What a number in the config may be. Anywhere in it (config.json, ``--set``, the arguments of a model, an
optimizer or a schedule): a finite float and an integer no larger than any size or count. In the arguments of an
optimizer or a schedule: the sign or range each rate, factor and step count needs, which torch checks for some
(Adam's ``lr``) but not others (OneCycleLR's ``max_lr``: negative, it trains by gradient ascent)."""

import json
import math
import re
from typing import Any

from utils.errors import ConfigRefused
from utils.settings import is_count, is_number

# No size or count comes near it, and beyond it a JSON number is not exact in every reader (a float, JavaScript).
LARGEST_INTEGER = 2**53
# The names of the step and epoch counts of torch's schedules (StepLR's step_size, OneCycleLR's total_steps...).
STEP_COUNTS = r"T_\w+|step_size\w*|\w*steps|steps_per_epoch|epochs|total_iters|patience|cooldown|milestones"
# (argument names, what a valid value is, its check), for the arguments of torch.optim and its lr_scheduler; a
# list (a value per parameter group, Adam's betas) is checked item by item, and what is not a number is left to
# the class. A step count may be 0 (StepLR's step_size 0 is refused when the schedule is first stepped).
ARGUMENT_RULES = (
    (r".*lr.*|eta_min", "a number >= 0 (a negative rate trains by gradient ascent)", lambda v: v >= 0),
    (r"weight_decay", "a number >= 0 (a negative one pushes the weights to grow)", lambda v: v >= 0),
    (r"(base_|max_)?momentum|dampening", "a number from 0 to 1", lambda v: 0 <= v <= 1),
    (r"betas", "numbers from 0 to below 1", lambda v: 0 <= v < 1),
    (r"eps|gamma", "a number > 0", lambda v: v > 0),
    (STEP_COUNTS, "an integer >= 0", is_count),
)


def check_numbers(value: Any, label: str = "") -> None:
    """Refuse NaN, an infinity (JSON's 1e400 reads as one) or an integer beyond LARGEST_INTEGER anywhere in
    ``value``, naming its dotted key (``label``: where ``value`` sits)."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_numbers(item, f"{label}.{key}" if label else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_numbers(item, f"{label}.{index}")
    elif isinstance(value, float) and not math.isfinite(value):
        beyond = "" if math.isnan(value) else " (as JSON reads a number beyond 1.8e308)"
        raise ConfigRefused(f"{label}: expected a finite number, got {json.dumps(value)}{beyond}")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > LARGEST_INTEGER:
        raise ConfigRefused(f"{label}: {value} is larger than any size or count; expected at most 2**53")


def check_arguments(args: dict[str, Any], label: str) -> None:
    """Refuse an argument of an optimizer or a schedule (``label``: ``optimizer.args``) that is outside the
    range its name calls for in ARGUMENT_RULES."""
    for name, value in args.items():
        rule = next((rule for rule in ARGUMENT_RULES if re.fullmatch(rule[0], name)), None)
        if rule is None:
            continue
        _, expected, check = rule
        if any(is_number(item) and not check(item) for item in (value if isinstance(value, list) else [value])):
            raise ConfigRefused(f"{label}.{name}: expected {expected}, got {json.dumps(value)}")
