"""What ``trainer.monitor`` watches, the best value so far, and early stopping."""

import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from utils.errors import ConfigRefused


@dataclass
class Monitor:
    """``"min val_loss"``, ``"max val_accuracy"`` or ``"off"``, with the best value seen so far and
    the number of epochs since it last improved (both saved in checkpoints)."""

    mode: str
    metric: str = ""
    best: float = field(init=False)
    epochs_without_improvement: int = 0

    def __post_init__(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf

    @classmethod
    def parse(cls, text: str) -> "Monitor":
        words = text.split()
        if words == ["off"]:
            return cls("off")
        if len(words) != 2 or words[0] not in ("min", "max"):
            raise ConfigRefused(
                f"trainer.monitor: {text!r} is not understood; write 'min <metric>', "
                "'max <metric>' or 'off' (e.g. 'min val_loss')"
            )
        return cls(words[0], words[1])

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def check(self, measured: list[str], key: str = "trainer.monitor") -> None:
        """Refuse a metric that nothing measures, before anything is trained or written."""
        if self.enabled and self.metric not in measured:
            validation = self.metric.startswith("val_")  # offer a training metric for a training one only
            same_split = [name for name in measured if name.startswith("val_") == validation]
            close = difflib.get_close_matches(self.metric, same_split, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigRefused(
                f"{key}: {self.metric!r} is not measured; "
                f"{hint}choose one of {', '.join(measured)} (val_* needs a validation_split)"
            )

    def update(self, epoch_metrics: dict[str, float]) -> bool:
        """Record an epoch's metrics; True when the monitored one improved on the best so far."""
        if not self.enabled:
            return False
        value = epoch_metrics[self.metric]
        improved = not math.isnan(value) and (value < self.best if self.mode == "min" else value > self.best)
        if improved:
            self.best, self.epochs_without_improvement = value, 0
        else:
            self.epochs_without_improvement += 1
        return improved

    def patience_exhausted(self, early_stop: int) -> bool:
        """True after ``early_stop`` epochs in a row without improvement (0: never)."""
        return early_stop > 0 and self.epochs_without_improvement >= early_stop

    def describe(self) -> str:
        count = self.epochs_without_improvement
        return f"{self.metric} has not improved for {count} epoch{'s' * (count != 1)} (best {self.best:.4g})"

    def state_dict(self) -> dict[str, Any]:
        return {"text": self.text(), "best": self.best, "epochs_without_improvement": self.epochs_without_improvement}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Take the best value and counter, if the checkpoint monitored the same thing; else keep fresh ones."""
        if state["text"] != self.text():
            return False
        self.best, self.epochs_without_improvement = state["best"], state["epochs_without_improvement"]
        return True

    def text(self) -> str:
        return f"{self.mode} {self.metric}" if self.enabled else "off"


def measured_names(metrics: list[str], validates: bool) -> list[str]:
    """What each epoch measures: the loss and ``metrics`` on the training data, and the same with
    ``val_`` in front when the run holds out a validation split."""
    names = ["loss", *metrics]
    return names + [f"val_{name}" for name in names] if validates else names
