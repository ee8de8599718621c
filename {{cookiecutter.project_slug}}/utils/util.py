"""Small helpers: JSON files, atomic writes, seeding and random state, devices and kernels."""

import errno
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.errors import ConfigRefused, UsageError


def metric_text(value: float) -> str:
    """A metric's value with a fixed number of decimals, so that epoch lines and table columns line up."""
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"


def read_json(path: Path) -> dict[str, Any]:
    with Path(path).open(encoding="utf-8") as handle:
        return json.load(handle)


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file_object)`` on a temporary file, fsync it, then rename it over ``path``.

    The rename is atomic, so a crash leaves either the old file or the new one, never half of one.
    The file gets the usual permissions (0644 under umask 022), so teammates can read it.
    A full disk, a read-only folder or missing permissions become one ``UsageError`` naming the path.
    """
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise storage_error(path, err) from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes it 0600
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as err:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(err, OSError | RuntimeError) and os_error_behind(err) is not None:
            raise storage_error(path, err) from None
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def os_error_behind(err: BaseException | None) -> OSError | None:
    """The OSError behind ``err`` (torch.save reports a full disk as a RuntimeError caused by one)."""
    while err is not None and not isinstance(err, OSError):
        err = err.__cause__ or err.__context__
    return err


# What to do about the usual reasons a write fails, by errno.
WRITE_FIXES = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space",
    errno.EACCES: "fix the folder's permissions",
    errno.EPERM: "fix the folder's permissions",
    errno.EROFS: "write to another folder",
    errno.ENOENT: "create the folder or write to another one",
}


def storage_error(path: Path, err: BaseException) -> UsageError:
    cause = os_error_behind(err)
    reason = cause.strerror or str(cause) if cause is not None else str(err)
    fix = WRITE_FIXES.get(cause.errno if cause is not None else None, "free some space or fix the folder's permissions")
    return UsageError(f"cannot write {str(path)!r}: {reason}; {fix}")


def write_json(data: Any, path: Path) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: torch seeds each worker, so derive the other RNGs from it."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def rng_state() -> dict[str, Any]:
    """Every RNG state a training step can consume, as plain data and tensors."""
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "key": np_state["state"]["key"].tolist(),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuples(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np.asarray(np_state["key"], dtype=np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])


def _as_tuples(value: Any) -> Any:
    # random.setstate insists on tuples; a checkpoint may hand lists back.
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(item) for item in value)
    return value


def resolve_device(spec: str) -> torch.device:
    """Turn ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` into a device, refusing what this machine lacks;
    ``auto`` picks CUDA, then Apple's MPS, then the CPU."""
    spec = spec.strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigRefused(
            f"device: unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps (e.g. -d cpu)"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"device: {spec!r} asked for, but this machine has no usable CUDA GPU; "
                "run on the CPU with --device cpu (or --set device=auto)"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UsageError(
                f"device: {spec!r} asked for, but this machine has {count} GPU(s) "
                f"(cuda:0..cuda:{count - 1}); pick one of those with --device"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(
            "device: 'mps' asked for, but this machine has no usable Apple GPU (MPS needs Apple silicon and a "
            "PyTorch built with MPS); run on the CPU with --device cpu (or --set device=auto)"
        )
    elif device.type not in ("cpu", "mps"):
        raise ConfigRefused(f"device: {spec!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    return device


def configure_backends(device: torch.device, deterministic: bool) -> None:
    """Fast kernels by default; reproducible ones when the config asks for ``deterministic``."""
    if deterministic:
        # cuBLAS needs this workspace setting before its first call to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic
