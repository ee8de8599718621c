"""The weights of a checkpoint this project did not write (``train.py --init-from FILE --trust-pickle``), such
as victoresque/pytorch-template's, whose pickled config ``torch.load(weights_only=True)`` refuses. Its unpickler
builds only tensors, ordered dicts and plain values: any other class or function the file names (os.system, in a
hostile one) is never imported or called but becomes an inert ``StandIn``. Only the model's weights are kept."""

import collections
import logging
import pickle
import types
from pathlib import Path
from typing import Any

import torch

from utils.errors import UsageError, first_sentence
from utils.settings import is_count

logger = logging.getLogger(__name__)

# The functions torch.save's pickles call to rebuild tensors and parameters (storages are rebuilt by
# torch.load itself before the unpickler is asked).
_TENSOR_REBUILDERS = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state")


class StandIn:
    """What an unknown class or function in the file becomes: takes any arguments, state and items, keeps none."""

    def _ignore(self, *args: Any, **kwargs: Any) -> None:
        pass

    # What unpickling calls on the objects it builds: the class, then BUILD, SETITEM(S) and APPEND(S).
    __init__ = __setstate__ = __setitem__ = append = extend = _ignore

    def __call__(self, *args: Any, **kwargs: Any) -> "StandIn":
        return StandIn()


def _allowed_global(module: str, name: str) -> Any:
    """The object ``module.name`` if a plain checkpoint needs it, else None."""
    if (module, name) == ("collections", "OrderedDict"):
        return collections.OrderedDict
    if module == "torch._utils" and name in _TENSOR_REBUILDERS:
        return getattr(torch._utils, name, None)
    value = vars(torch).get(name) if module == "torch" else None  # vars(): no lazy import of a submodule
    if value is torch.Size or isinstance(value, torch.dtype):
        return value
    return None


class StandInUnpickler(pickle.Unpickler):
    """An unpickler that never imports: the globals a checkpoint of tensors needs, and ``StandIn`` for the rest."""

    def find_class(self, module: str, name: str) -> Any:
        found = _allowed_global(module, name)
        return StandIn if found is None else found


def _load(file: Any, **kwargs: Any) -> Any:
    return StandInUnpickler(file, **kwargs).load()


# What torch.load takes as ``pickle_module``: it subclasses ``Unpickler`` (to rebuild storages) and calls ``load``.
_STAND_IN_PICKLE = types.SimpleNamespace(__name__="stand_in_pickle", Unpickler=StandInUnpickler, load=_load)


def _is_weights(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(key, str) and isinstance(tensor, torch.Tensor) for key, tensor in value.items())
    )


def _weights_in(contents: Any) -> dict[str, torch.Tensor] | None:
    """pytorch-template's ``state_dict``, this project's ``model``, or a file that is a state_dict itself."""
    if _is_weights(contents):
        return contents
    if isinstance(contents, dict):
        return next((contents[key] for key in ("state_dict", "model") if _is_weights(contents.get(key))), None)
    return None


def _without_data_parallel_prefix(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """pytorch-template wraps the model in DataParallel when n_gpu > 1, which puts ``module.`` before every key."""
    if not all(key.startswith("module.") for key in weights):
        return weights
    logger.info("Dropping the 'module.' prefix DataParallel put before every key")
    return {key.removeprefix("module."): tensor for key, tensor in weights.items()}


def import_weights(path: Path) -> dict[str, Any]:
    """The model weights of the pickled checkpoint at ``path``, and its epoch (0 if it has none), in the two
    entries of a checkpoint that ``--init-from`` uses: ``{"model": weights, "epoch": N}``."""
    try:
        contents = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_STAND_IN_PICKLE)
    except Exception as err:  # a file that is not a torch.save pickle can fail in almost any way
        raise UsageError(f"checkpoint {str(path)!r} cannot be unpickled: {first_sentence(err)}") from err
    weights = _weights_in(contents)
    if weights is None:
        raise UsageError(
            f"checkpoint {str(path)!r} holds no model weights (a 'state_dict' or 'model' entry of tensors, "
            "or a state_dict itself); pass the file torch.save wrote the model's state_dict into"
        )
    epoch = contents.get("epoch") if isinstance(contents, dict) else None
    logger.info("Unpickled %s with --trust-pickle: %d tensors of weights taken, the rest left out", path, len(weights))
    return {"model": _without_data_parallel_prefix(weights), "epoch": epoch if is_count(epoch) else 0}
