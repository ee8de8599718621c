"""The ``trainer`` section of config.json as typed settings. Every key has a default, so a config
written for an older or newer version of this template still loads (see README.md)."""

from dataclasses import dataclass

import torch

from trainer.monitor import Monitor
from utils.settings import setting

AMP_MODES = ("auto", "bf16", "fp16", "off")
LOGGERS = ("csv", "tensorboard", "mlflow", "wandb")  # logger/trackers.py
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _is_monitor(text: str) -> bool:
    Monitor.parse(text)  # raises with its own message
    return True


@dataclass(frozen=True)
class TrainerSettings:
    """How to train: length, checkpoints, monitoring, precision and speed switches, logging."""

    epochs: int = setting(10, "an integer >= 1", lambda v: v >= 1)
    save_dir: str = setting("saved/", "a folder path")
    save_period: int = setting(5, "an integer >= 1", lambda v: v >= 1)
    keep_last: int = setting(3, "an integer >= 0 (0 keeps every epoch-N.pth)", lambda v: v >= 0)
    verbosity: int = setting(1, "0, 1 or 2", lambda v: v in (0, 1, 2))
    monitor: str = setting("min val_loss", "'min <metric>', 'max <metric>' or 'off'", _is_monitor)
    early_stop: int = setting(5, "an integer >= 0 (0 turns it off)", lambda v: v >= 0)
    nonfinite_loss: str = setting("stop", "'stop' or 'skip'", lambda v: v in ("stop", "skip"))
    amp: str = setting("auto", "'auto', 'bf16', 'fp16' or 'off'", lambda v: v in AMP_MODES)
    compile: str = setting("off", f"one of {', '.join(COMPILE_MODES)}", lambda v: v in COMPILE_MODES)
    channels_last: bool = setting(False, "true or false")
    sync_batchnorm: bool = setting(False, "true or false")
    grad_accum_steps: int = setting(1, "an integer >= 1 (1: a step per batch)", lambda v: v >= 1)
    grad_clip_norm: float | None = setting(None, "null or a positive number", lambda v: v > 0)
    tensorboard: bool = setting(True, "true or false")
    loggers: list[str] = setting(
        ["csv"], f"a list of {', '.join(LOGGERS)} (csv is always on)", lambda v: all(name in LOGGERS for name in v)
    )
    tracking_uri: str | None = setting(
        None, "null (MLFLOW_TRACKING_URI, else sqlite:///mlflow.db) or an MLflow tracking URI"
    )
    log_step: int = setting(20, "an integer >= 1", lambda v: v >= 1)

    def amp_dtype(self, device: torch.device) -> torch.dtype | None:
        """The autocast dtype on ``device``, or None for full precision.

        ``auto`` means bf16 on GPUs that support it, fp16 (with a GradScaler) on older ones, and full
        precision on the CPU, where autocast rarely pays off.
        """
        if self.amp == "off" or (self.amp == "auto" and device.type != "cuda"):
            return None
        if self.amp == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return {"bf16": torch.bfloat16, "fp16": torch.float16}[self.amp]
