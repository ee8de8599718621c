"""A tiny model, tiny synthetic data, a loss and a metric: what the tests train instead of yours.

``TINY`` is the registry the tests hand to ``build_trainer``, ``train.main`` and ``test.main`` in
place of the project's model/, data_loader/ and trainer/trainer.py modules; ``tiny_config`` is a complete config for it.
"""

from pathlib import Path
from typing import Any

from tests.tiny import data_loaders, losses, metrics, models, trainers
from utils.registry import Registry

TINY = Registry(models=models, data_loaders=data_loaders, losses=losses, metrics=metrics, trainers=trainers)


def tiny_config(save_dir: Path, **trainer_settings: Any) -> dict[str, Any]:
    """A config that trains TinyConvNet on the striped images on the CPU in a fraction of a second per
    epoch, saving under ``save_dir``; ``trainer_settings`` override keys of its trainer section."""
    return {
        "name": "tiny",
        "seed": 1,
        "device": "cpu",
        "deterministic": False,
        "arch": {"type": "TinyConvNet", "args": {"num_classes": 3}},
        "data_loader": {"type": "TinyTensorLoader", "args": {"batch_size": 32, "validation_split": 0.2}},
        "optimizer": {"type": "Adam", "args": {"lr": 0.02}},
        "loss": "cross_entropy",
        "metrics": ["accuracy"],
        "lr_scheduler": None,
        "trainer": {
            "epochs": 1,
            "save_dir": str(save_dir),
            "save_period": 1,
            "keep_last": 0,
            "verbosity": 1,
            "monitor": "min val_loss",
            "early_stop": 0,
            "amp": "off",
            "compile": "off",
            **trainer_settings,
        },
    }
