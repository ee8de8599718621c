"""Coming from victoresque/pytorch-template: its config.json, recognised by keys only it used (``n_gpu``,
``trainer.save_freq``...), is refused with one line listing every edit it needs, instead of one unknown key
per run; its ``-d 2,3`` gets advice too. docs/from-pytorch-template.md has the whole table."""

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from utils.errors import UsageError

_MISSING = object()
TORCHRUN = "CUDA_VISIBLE_DEVICES={ids} torchrun --standalone --nproc_per_node={count} train.py -c config.json"


def _n_gpu(value: Any, data: dict[str, Any]) -> str:
    if value == 0:
        return 'n_gpu: delete it; write "device": "cpu"'
    if isinstance(value, int) and value > 1:
        ids = ",".join(str(index) for index in range(value))
        command = TORCHRUN.format(ids=ids, count=value)
        return f"n_gpu: delete it; {value} GPUs take one process each (DistributedDataParallel): {command}"
    return 'n_gpu: delete it; "device": "auto" (the default) takes a GPU when there is one, else the CPU'


def _monitor_mode(value: Any, data: dict[str, Any]) -> str:
    metric = _lookup(data, "trainer.monitor")
    metric = metric if isinstance(metric, str) else "val_loss"
    return f'trainer.monitor_mode: delete it; write trainer.monitor as "{value} {metric}"'


def _model(value: Any, data: dict[str, Any]) -> str:
    arch = data.get("arch")
    if isinstance(arch, str):
        return 'model: delete it; write arch as {"type": ' + json.dumps(arch) + ', "args": <what model held>}'
    return "model: delete it (arch names the model class; its arguments go in arch.args)"


def _moved_into_object(key: str) -> Callable[[Any, dict[str, Any]], str]:
    written = '{"type": <value>, "args": <what KEY held>}'.replace("KEY", key)
    return lambda value, data: f"{key}_type: delete it; write {key} as {written.replace('<value>', json.dumps(value))}"


# Keys only pytorch-template used -> the edit each needs; "<value>" stands for the key's value. A
# "trainer." key is looked for in "training" too (the section's name in April 2019).
KEY_EDITS: dict[str, str | Callable[[Any, dict[str, Any]], str]] = {
    "n_gpu": _n_gpu,
    "cuda": 'cuda: delete it; "device" says where to train ("auto", "cpu", "cuda", "cuda:N", "mps")',
    "gpu": 'gpu: delete it; write "device": "cuda:<value>"',
    "save_dir": "save_dir: move it into trainer",
    "training": "training: rename it to trainer",
    "testing": "testing: delete it (test.py takes the checkpoint's config)",
    "visualization": 'visualization: delete it; for TensorBoard list "tensorboard" in trainer.loggers',
    "tensorboard.enabled": 'tensorboard: delete it; for TensorBoard list "tensorboard" in trainer.loggers',
    "trainer.tensorboardX": 'trainer.tensorboardX: delete it; for TensorBoard list "tensorboard" in trainer.loggers',
    "trainer.log_dir": "trainer.log_dir: delete it; TensorBoard events go in the run folder",
    "trainer.save_freq": "trainer.save_freq: rename it to trainer.save_period",
    "trainer.monitor_mode": _monitor_mode,
    "data_loader.args.n_cpu": "data_loader.args.n_cpu: rename it to num_workers",
    "data_loader.data_dir": 'data_loader: put its settings under "args", beside "type" (your loader class)',
    "validation": "validation: delete it; its validation_split goes in data_loader.args",
    "optimizer_type": _moved_into_object("optimizer"),
    "lr_scheduler_type": _moved_into_object("lr_scheduler"),
    "lr_scheduler_freq": 'lr_scheduler_freq: delete it; schedules step once per epoch ("interval": "step": per batch)',
    "model": _model,
}

# Where each key that names your code looks, how to port yours, and the project's counterparts of
# pytorch-template's example names.
PORTING = {
    "arch.type": ("model/model.py", "copy your class there"),
    "data_loader.type": ("data_loader/data_loaders.py", "write yours there as a BaseDataLoader subclass"),
    "loss": ("model/loss.py", "copy yours there"),
    "metrics": ("model/metric.py", "copy yours there, returning tensors (no .item())"),
}
COUNTERPARTS = {
    "MnistModel": "ConvNet",
    "nll_loss": "cross_entropy",
    "top_k_acc": "top_3_accuracy",
    "my_metric": "accuracy",
    "my_metric2": "top_3_accuracy",
}


def _lookup(data: Any, path: str) -> Any:
    candidates = [path, "training" + path.removeprefix("trainer")] if path.startswith("trainer.") else [path]
    for candidate in candidates:
        node = data
        for key in candidate.split("."):
            node = node.get(key, _MISSING) if isinstance(node, dict) else _MISSING
        if node is not _MISSING:
            return node
    return _MISSING


def key_edits(data: dict[str, Any]) -> list[str]:
    """The edits the pytorch-template keys in ``data`` need; empty for a config written for this project."""
    edits = []
    for path, advice in KEY_EDITS.items():
        value = _lookup(data, path)
        if value is not _MISSING:
            edits.append(advice(value, data) if callable(advice) else advice.replace("<value>", str(value)))
    return edits


def name_edits(data: dict[str, Any], available: Mapping[str, Sequence[str]]) -> list[str]:
    """One edit for each key (arch.type, data_loader.type, loss, metrics) giving names ``available`` lacks."""
    metrics = data.get("metrics")
    given = {
        "arch.type": [_lookup(data, "arch.type")],
        "data_loader.type": [_lookup(data, "data_loader.type")],
        "loss": [data.get("loss")],
        "metrics": metrics if isinstance(metrics, list) else [],
    }
    edits = []
    for key, names in given.items():
        missing = [name for name in names if isinstance(name, str) and name not in available[key]]
        if missing:
            edits.append(_name_edit(key, missing, available[key]))
    return edits


def _name_edit(key: str, missing: list[str], available: Sequence[str]) -> str:
    counterparts = [COUNTERPARTS.get(name) for name in missing]
    if all(name in available for name in counterparts):
        instead = ", ".join(repr(name) for name in counterparts)
    else:
        instead = f"one of: {', '.join(available) or 'none yet'}"
    where, how = PORTING[key]
    edit = f"{key}: no {', '.join(repr(name) for name in missing)} in {where}: {how}, or use {instead}"
    if "nll_loss" in missing and "cross_entropy" in available:  # the one swap that changes what the model must output
        edit += " (nll_loss takes log_softmax outputs; the models here output logits)"
    return edit


def check_config(data: Any, label: str, available: Mapping[str, Sequence[str]] | None = None) -> None:
    """Refuse a config written for pytorch-template with ONE message listing every edit it needs (with
    ``available``, the names of your code, also those of its class and function names your code lacks)."""
    edits = key_edits(data) if isinstance(data, dict) else []
    if not edits:
        return
    if available is not None:
        edits += name_edits(data, available)
    count = f"{len(edits)} edit{'s' if len(edits) > 1 else ''}"
    listed = "; ".join(f"({number}) {edit}" for number, edit in enumerate(edits, 1))
    raise UsageError(
        f"{label} is written for victoresque/pytorch-template; {count} to make "
        f"(docs/from-pytorch-template.md): {listed}"
    )


def gpu_indices_advice(device: str) -> str | None:
    """What to write instead of pytorch-template's ``-d 2,3`` (GPU indices, which it put into
    CUDA_VISIBLE_DEVICES to share one process over them); None for any other ``-d``."""
    ids = device.replace(" ", "")
    if not re.fullmatch(r"\d+(,\d+)*", ids):
        return None
    indices = ids.split(",")
    if len(indices) == 1:
        return f"-d {device}: devices are auto, cpu, cuda, cuda:N or mps here; for GPU {ids} write -d cuda:{ids}"
    command = TORCHRUN.format(ids=ids, count=len(indices))
    return (
        f"-d {device}: a process trains on one device here; to train on GPUs {ids}, start one process "
        f"per GPU: {command} (or -d cuda:{indices[0]} for one of them)"
    )
