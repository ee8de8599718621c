"""The ``trainer`` section of config.json as typed settings. Every key has a default, so a config
written for an older or newer version of this template still loads (see docs/resume.md)."""

import json
import logging
from dataclasses import dataclass
from typing import Any

import torch

from logger.trackers import BACKENDS
from trainer.monitor import Monitor
from utils.errors import ConfigRefused
from utils.settings import setting

logger = logging.getLogger(__name__)

AMP_MODES = ("auto", "bf16", "fp16", "off")
LOGGERS = tuple(BACKENDS)  # csv: metrics.csv, always written; the others need their package
MAX_EPOCHS = 1_000_000  # more is a typo: a million epochs of one second each take eleven days
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class TrainerSettings:
    """How to train: length, checkpoints, monitoring, precision and speed switches, logging."""

    type: str = setting("Trainer", "the name of a Trainer class in trainer/trainer.py")
    epochs: int = setting(10, f"an integer from 1 to {MAX_EPOCHS:,}", lambda v: 1 <= v <= MAX_EPOCHS)
    save_dir: str = setting("saved/", "a folder path")
    save_period: int = setting(5, "an integer >= 1", lambda v: v >= 1)
    keep_last: int = setting(3, "an integer >= 0 (0 keeps every epoch-N.pth)", lambda v: v >= 0)
    verbosity: int = setting(1, "0, 1 or 2", lambda v: v in (0, 1, 2))
    # Monitor.parse raises with its own message
    monitor: str = setting("min val_loss", "'min <metric>', 'max <metric>' or 'off'", lambda v: bool(Monitor.parse(v)))
    early_stop: int = setting(5, "an integer >= 0 (0 turns it off)", lambda v: v >= 0)
    nonfinite_loss: str = setting("stop", "'stop' or 'skip'", lambda v: v in ("stop", "skip"))
    amp: str = setting("auto", "'auto', 'bf16', 'fp16' or 'off'", lambda v: v in AMP_MODES)
    compile: str = setting("off", f"one of {', '.join(COMPILE_MODES)}", lambda v: v in COMPILE_MODES)
    channels_last: bool = setting(False, "true or false")
    sync_batchnorm: bool = setting(False, "true or false")
    grad_accum_steps: int = setting(1, "an integer >= 1 (1: a step per batch)", lambda v: v >= 1)
    grad_clip_norm: float | None = setting(None, "null or a positive number", lambda v: v > 0)
    loggers: list[str] = setting(
        ["csv"], f"a list of {', '.join(LOGGERS)} (csv is always on)", lambda v: all(name in LOGGERS for name in v)
    )
    tracking_uri: str | None = setting(
        None, "null (MLFLOW_TRACKING_URI, else sqlite:///mlflow.db) or an MLflow tracking URI"
    )
    log_step: int = setting(20, "an integer >= 1", lambda v: v >= 1)

    def amp_dtype(self, device: torch.device) -> torch.dtype | None:
        """The autocast dtype on ``device``, or None for full precision. ``auto``: bf16 on GPUs that support it,
        fp16 (with a GradScaler) on older ones, full precision on the CPU, where autocast rarely pays off."""
        if self.amp == "off" or (self.amp == "auto" and device.type != "cuda"):
            return None
        if self.amp == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return {"bf16": torch.bfloat16, "fp16": torch.float16}[self.amp]


def upgrade_retired_keys(config: Any, strict: bool) -> Any:
    """``config`` with ``trainer.tensorboard: true`` (the switch before trainer.loggers) read as "tensorboard" in
    ``loggers``, so runs recorded with it keep their curves when resumed. ``strict``: a file the user wrote, who
    is told to edit it (a checkpoint's recorded config is upgraded quietly, at info level)."""
    trainer = config.get("trainer") if isinstance(config, dict) else None
    if not isinstance(trainer, dict) or "tensorboard" not in trainer:
        return config
    trainer = dict(trainer)
    switched_on = trainer.pop("tensorboard")
    if not isinstance(switched_on, bool):
        raise ConfigRefused(
            f"trainer.tensorboard: expected true or false, got {json.dumps(switched_on)}; better, delete it "
            'and list "tensorboard" in trainer.loggers'
        )
    loggers = trainer.setdefault("loggers", TrainerSettings().loggers)
    if switched_on and isinstance(loggers, list) and "tensorboard" not in loggers:
        trainer["loggers"] = [*loggers, "tensorboard"]
    fix = "; write that instead" if strict else ""
    level = logging.WARNING if strict else logging.INFO
    logger.log(level, "trainer.tensorboard (an earlier version's switch) is read as trainer.loggers %s%s",
               json.dumps(trainer["loggers"]), fix)  # fmt: skip
    return {**config, "trainer": trainer}
