"""Writing and reading checkpoints: atomic on write, ``weights_only`` on read."""

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from utils.errors import UsageError
from utils.util import atomic_write


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint onto the CPU; only tensors and plain Python data are accepted."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {str(path)!r} does not exist; pass a .pth file or a run folder")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"checkpoint {str(path)!r} cannot be loaded: {reason}") from err
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise UsageError(f"checkpoint {str(path)!r} was not written by this project's trainer")
    return state


def find_checkpoint(path: Path, prefer: tuple[str, ...] = ("best.pth", "last.pth")) -> Path:
    """Accept a checkpoint file, a run folder, or an experiment folder holding run folders.

    A folder resolves to the first of ``prefer`` it holds; an experiment folder to its newest run
    (run folders are named by start time, so the newest sorts last).
    """
    path = Path(path)
    if path.is_file() or not path.is_dir():
        return path
    for name in prefer:
        if (path / name).is_file():
            return path / name
    runs = [run for run in path.iterdir() if run.is_dir() and any((run / n).is_file() for n in prefer)]
    if runs:
        return find_checkpoint(max(runs, key=_run_order), prefer)
    raise UsageError(f"no best.pth or last.pth found in {str(path)!r}; train first or pass a .pth file")


def load_model_weights(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: Path) -> None:
    """``model.load_state_dict`` with an error that names the mismatched keys instead of a traceback."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = sorted(
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(own[key].shape)}"
        for key in set(own) & set(state_dict)
        if state_dict[key].shape != own[key].shape
    )
    problems = [
        f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", mismatched))
        if keys
    ]
    if problems:
        raise UsageError(
            f"checkpoint {str(source)!r} does not fit {type(model).__name__} ({'; '.join(problems)}); "
            "use the arch and args the checkpoint was trained with"
        )
    model.load_state_dict(state_dict)


def _run_order(run: Path) -> tuple[str, int]:
    """Sort key for run folders ``STAMP`` and ``STAMP-N``: by start time, then by N (so -10 follows -9)."""
    match = re.fullmatch(r"(\d{8}-\d{6})-(\d+)", run.name)
    return (match[1], int(match[2])) if match else (run.name, 1)
