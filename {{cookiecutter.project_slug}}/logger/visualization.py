"""TensorBoard: each metric's train and val values share one tag in the event folders ``train/`` and ``val/``
(so one chart shows both curves); the run folder's own event file holds the config (Text tab) and its
settings as hyperparameters (HParams tab). Written when trainer.loggers lists "tensorboard"."""

import json
from pathlib import Path
from typing import Any


def place(name: str) -> tuple[str, str]:
    """(event folder, tag) of a metric: ``val_loss`` -> ("val", "loss"); ``loss`` and ``lr`` -> ("train", name)."""
    return ("val", name.removeprefix("val_")) if name.startswith("val_") else ("train", name)


class TensorboardWriter:
    """Scalars once per epoch (nothing per batch), and ``config`` once per start.

    ``purge_step``: the epoch a (resumed) run starts at; events that an earlier process wrote from it on,
    after its last checkpoint, are dropped, so a replayed epoch is not drawn twice."""

    def __init__(self, log_dir: Path, purge_step: int, config: dict[str, Any]) -> None:
        # Imported here: a run that does not log to TensorBoard never loads it (logger/trackers.py checks
        # that the package is installed before a run asks for it).
        from torch.utils.tensorboard import SummaryWriter

        self._log_dir, self._purge_step = Path(log_dir), purge_step
        self._writers: dict[str, SummaryWriter] = {}
        self._make = SummaryWriter
        self._add_config(config)

    @classmethod
    def for_run(cls, run_dir: Path, config: dict[str, Any], start_epoch: int) -> "TensorboardWriter":
        return cls(run_dir, purge_step=start_epoch, config=config)

    def _writer(self, folder: str) -> Any:
        """The SummaryWriter of an event folder ("" is the run folder itself), made when first needed
        (a run without validation has no val/)."""
        if folder not in self._writers:
            log_dir = self._log_dir / folder if folder else self._log_dir
            self._writers[folder] = self._make(log_dir=str(log_dir), purge_step=self._purge_step)
        return self._writers[folder]

    def add_epoch(self, epoch: int, epoch_metrics: dict[str, float], seconds: float) -> None:
        for name, value in epoch_metrics.items():
            folder, tag = place(name)
            self._writer(folder).add_scalar(tag, value, epoch)
        for writer in self._writers.values():
            writer.flush()

    def _add_config(self, config: dict[str, Any]) -> None:
        """The config as JSON text, at the step before the first epoch of this start, and as hyperparameters."""
        from torch.utils.tensorboard.summary import hparams

        run = self._writer("")
        text = "\n".join("    " + line for line in json.dumps(config, indent=2).splitlines())  # a code block
        run.add_text("config", text, global_step=self._purge_step - 1)
        # Only the session's start: the HParams tab then finds the metrics itself, in train/ and val/.
        _, session_start, _ = hparams(flat_settings(config), {})
        run.file_writer.add_summary(session_start)
        run.flush()

    def close(self, finished: bool) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def flat_settings(config: dict[str, Any], prefix: str = "") -> dict[str, float | str]:
    """``{"optimizer": {"args": {"lr": 0.1}}}`` -> ``{"optimizer.args.lr": 0.1}``: numbers stay numbers,
    everything else (lists, null, true/false) becomes its JSON text, as the HParams tab takes only these."""
    flat: dict[str, float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_settings(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = value
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value)
    return flat
