"""Writing and reading checkpoints: atomic on write; on read ``weights_only``, a digest check and a
schema check, so a corrupt, forged or foreign file is refused with one line instead of being used."""

import hashlib
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from utils.errors import UsageError, first_sentence, plain_text
from utils.settings import is_count, is_number
from utils.util import atomic_write


def _has(*keys: str) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, dict) and set(keys) <= value.keys()


def _is_monitor_state(value: Any) -> bool:
    return (
        _has("text", "best", "epochs_without_improvement")(value)
        and isinstance(value["text"], str)
        and is_number(value["best"])
        and is_count(value["epochs_without_improvement"])
    )


def _is_mid_epoch(value: Any) -> bool:
    """Where an interrupted epoch stopped: its number, the steps done in it, and the metric totals so far."""
    if not _has("epoch", "step", "metric_sums")(value) or not _has("names", "sums", "count")(value["metric_sums"]):
        return False
    sums = value["metric_sums"]
    return (
        is_count(value["epoch"])
        and is_count(value["step"])
        and isinstance(sums["names"], list)
        and isinstance(sums["sums"], torch.Tensor)
        and tuple(sums["sums"].shape) == (len(sums["names"]),)
        and is_count(sums["count"])
    )


# How torch.load(weights_only=True) names the class or function a pickle asks for that it will not build.
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")

# What test.py needs of a checkpoint, and what resuming needs besides: key -> (check, what it should hold).
EVALUATE_SCHEMA: dict[str, tuple[Callable[[Any], bool], str]] = {
    "arch": (lambda value: isinstance(value, str), "the model's class name"),
    "epoch": (is_count, "the number of finished epochs"),
    "config": (_has("arch", "data_loader"), "the run's config"),
    "model": (lambda v: isinstance(v, dict) and all(isinstance(t, torch.Tensor) for t in v.values()), "tensors"),
}
RESUME_SCHEMA = {
    **EVALUATE_SCHEMA,
    "optimizer": (_has("state", "param_groups"), "an optimizer state_dict"),
    "lr_scheduler": (lambda value: value is None or isinstance(value, dict), "a scheduler state_dict or null"),
    "grad_scaler": (lambda value: isinstance(value, dict), "a GradScaler state_dict"),
    "monitor": (_is_monitor_state, "the monitor's state"),
    "rng": (_has("python", "numpy", "torch", "cuda"), "the random number generators' states"),
}
DATA_LAYOUT_KEYS = ("train_samples", "valid_samples", "steps_per_epoch")
# Keys checked only where a checkpoint has them: a stop part way through an epoch writes mid_epoch, and
# checkpoints from before the others were recorded lack them.
RESUME_OPTIONAL_SCHEMA = {
    "mid_epoch": (_is_mid_epoch, "where an interrupted epoch stopped"),
    "data_layout": (
        lambda value: _has(*DATA_LAYOUT_KEYS)(value) and all(is_count(value[key]) for key in DATA_LAYOUT_KEYS),
        "the samples of each split and an epoch's optimizer steps",
    ),
}
OPTIONAL_SCHEMA = {
    "input_shape": (
        lambda shape: shape is None or (isinstance(shape, list) and all(is_count(n) and n >= 1 for n in shape)),
        "the shape of one input sample",
    ),
    "classes": (lambda v: v is None or (isinstance(v, list) and all(isinstance(n, str) for n in v)), "class names"),
    "world_size": (lambda value: is_count(value) and value >= 1, "the number of processes that trained it"),
}


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda handle: torch.save({**state, "digest": digest(state)}, handle))


def digest(state: Any) -> str:
    """SHA-256 over every tensor's bytes and every other value: one flipped bit anywhere changes it."""
    hasher = hashlib.sha256()
    _feed(hasher, state)
    return hasher.hexdigest()


def _feed(hasher: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous().reshape(-1)
        hasher.update(f"tensor {tensor.dtype} {tuple(value.shape)}".encode())
        hasher.update(tensor.view(torch.uint8).numpy().data)
    elif isinstance(value, dict):
        for key in sorted(value, key=repr):
            hasher.update(f"key {key!r}".encode())
            _feed(hasher, value[key])
    elif isinstance(value, list | tuple):
        hasher.update(f"sequence {len(value)}".encode())
        for item in value:
            _feed(hasher, item)
    else:
        hasher.update(f"value {value!r}".encode())


def load_checkpoint(path: Path, resume: bool = False) -> dict[str, Any]:
    """Load a checkpoint onto the CPU: only tensors and plain data, its digest verified, and the keys
    test.py needs (or, with ``resume``, everything training needs to continue) present and well-formed."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {str(path)!r} does not exist; pass a .pth file or a run folder")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # on a file that is not a checkpoint torch.load raises almost anything (KeyError...)
        raise UsageError(f"checkpoint {str(path)!r} cannot be loaded: {_why_unloadable(err, path)}") from err
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise UsageError(f"checkpoint {str(path)!r} was not written by this project's trainer")
    recorded = state.pop("digest", None)  # checkpoints from before digests were added have none
    if recorded is not None and recorded != digest(state):
        raise UsageError(f"checkpoint {str(path)!r} is corrupt: its contents do not match their digest; use another")
    optional = {**RESUME_OPTIONAL_SCHEMA, **OPTIONAL_SCHEMA} if resume else OPTIONAL_SCHEMA
    schema = dict(RESUME_SCHEMA if resume else EVALUATE_SCHEMA)
    schema.update((key, check) for key, check in optional.items() if key in state)
    for key, (valid, expected) in schema.items():
        if key not in state or not valid(state[key]):
            problem = "lacks" if key not in state else "has a malformed"
            raise UsageError(f"checkpoint {str(path)!r} {problem} {key!r} (expected {expected}); use another")
    return state


def _why_unloadable(err: Exception, path: Path) -> str:
    """PyTorch's reason in one sentence; for a pickled object (its message runs to a page, with escape
    codes), what it means here and the flag that takes the weights anyway."""
    unsupported = _UNSUPPORTED_GLOBAL.search(plain_text(str(err)))
    if unsupported is None and not _written_by_torch_save(path):
        return "it is not a file written by torch.save; pass a .pth file that train.py wrote, or its run folder"
    if unsupported is None:
        return first_sentence(err)
    return (
        f"it holds pickled Python objects (such as {unsupported[1]}; a victoresque or other foreign checkpoint?); "
        f"to take its weights use: python train.py -c config.json --init-from {path} --trust-pickle"
    )


def _written_by_torch_save(path: Path) -> bool:
    """torch.save writes a zip archive holding <name>/data.pkl (since PyTorch 1.6), or before that a pickle
    (protocol byte 0x80); other zip files (NumPy's .npz, say) are not checkpoints."""
    with path.open("rb") as handle:
        if zipfile.is_zipfile(handle):
            with zipfile.ZipFile(handle) as archive:
                return any(name.endswith("/data.pkl") for name in archive.namelist())
        handle.seek(0)
        return handle.read(1) == b"\x80"


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
        return find_checkpoint(max(runs, key=run_order), prefer)
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
            "use the arch and args the checkpoint was trained with, and the model code (model/) it was trained with"
        )
    model.load_state_dict(state_dict)


def check_same_classes(trained_on: list[str] | None, data_has: list[str] | None, source: Path, advice: str) -> None:
    """Refuse data whose classes are not those a checkpoint was trained on (an image_folder class folder renamed,
    added or removed): each label would then stand for another class, and every score would be silently wrong."""
    if trained_on is None or data_has is None or list(trained_on) == list(data_has):
        return
    raise UsageError(
        f"checkpoint {str(source)!r} was trained on the classes {_names(trained_on)}, but the data now has "
        f"{_names(data_has)}, so its labels would stand for other classes; {advice}"
    )


def _names(classes: list[str]) -> str:
    shown = ", ".join(classes[:6]) + (f", ... ({len(classes)} in all)" if len(classes) > 6 else "")
    return f"[{shown}]"


def run_order(run: Path) -> tuple[str, int]:
    """Sort key for run folders ``STAMP`` and ``STAMP-N``: by start time, then by N (so -10 follows -9)."""
    match = re.fullmatch(r"(\d{8}-\d{6})-(\d+)", run.name)
    return (match[1], int(match[2])) if match else (run.name, 1)
