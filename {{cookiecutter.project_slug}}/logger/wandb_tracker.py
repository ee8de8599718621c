"""Weights & Biases (``"wandb"`` in ``trainer.loggers``; wandb is a dependency with the wandb answer).

One W&B run per run folder, in the project named after the config's ``name``: the flattened config,
every epoch's metrics at step = epoch, and ``best.pth`` and ``config.json`` saved with the run when it
ends. Its files go in ``wandb/`` inside the run folder; its id is kept in ``wandb.json`` there, so a
resumed run continues the same W&B run. ``WANDB_MODE=offline`` needs no network (``wandb sync`` uploads
later); the API key and entity come from W&B's own settings (``wandb login``, WANDB_* variables).
"""

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import wandb

from logger.runs import run_artifacts
from logger.visualization import flat_settings

logger = logging.getLogger(__name__)

ID_FILE = "wandb.json"


class WandbTracker:
    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        id_file = self.run_dir / ID_FILE
        known = json.loads(id_file.read_text(encoding="utf-8"))["run_id"] if id_file.is_file() else None
        run_id = known or uuid.uuid4().hex[:12]
        id_file.write_text(json.dumps({"run_id": run_id}), encoding="utf-8")
        self.run = wandb.init(
            project=config["name"],
            name=self.run_dir.name,
            id=run_id,
            resume="allow",
            dir=str(self.run_dir),
            config=flat_settings(config),
            allow_val_change=True,  # a resume may change settings
            reinit="finish_previous",
        )
        logger.info("W&B: run %s (%s)", run_id, self.run.settings.mode)

    @classmethod
    def for_run(cls, run_dir: Path, config: dict[str, Any], start_epoch: int) -> "WandbTracker":
        return cls(run_dir, config)

    def add_epoch(self, epoch: int, epoch_metrics: dict[str, float], seconds: float) -> None:
        self.run.log({**epoch_metrics, "seconds": seconds, "epoch": epoch}, step=epoch)

    def close(self, finished: bool) -> None:
        for path in run_artifacts(self.run_dir):
            self.run.save(str(path), base_path=str(self.run_dir.parent), policy="now")
        self.run.finish(exit_code=0 if finished else 1)
