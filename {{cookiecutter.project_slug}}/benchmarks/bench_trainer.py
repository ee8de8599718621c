"""How much does the Trainer cost over a hand-written loop? python -m benchmarks.bench_trainer

Both train the same model from the same seed on the same data with the same optimizer, precision,
memory format and torch.compile mode, in this process. Two passes:

1. Memory: each path alone trains one epoch; the table gives that epoch's time (a warm-up that
   includes torch.compile, when on; the Trainer, second, reuses kernels the first path compiled)
   and the peak memory (CUDA: max_memory_allocated; CPU: the process's peak resident set size).
2. Time: both paths are built afresh and take turns, one epoch each, swapping who goes first
   every epoch, so that both see the same machine: a busy neighbour or a clock change hits both.
   ``--epochs`` epochs are timed per path (after a warm-up epoch; half of them with the paths
   built in the other order); the ratio is the median of the per-pair ratios Trainer / hand-written.

Two more paths on request: ``--limit`` adds the practical limit, the hand-written loop with every
speed option on whatever the config says (device-resident data, fused Adam, torch.compile, AMP,
channels-last); ``--with-metrics`` adds the Trainer computing the config's metrics as a real run does.

With the same seed on the CPU, the Trainer and the hand-written loop also see the same per-epoch
losses when run one after the other (tests/test_parity.py checks it).
"""

import argparse
import contextlib
import ctypes
import gc
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from parse_config import Config, load_config
from train import PROJECT_MODULES
from trainer.build import build_data, build_model, build_optimizer, build_trainer
from trainer.checkpoint import Checkpointer
from utils.cli import ArgumentParser, add_override_flags, overrides_from_flags, run_command
from utils.registry import Registry, lookup_function
from utils.util import resolve_device, seed_everything

PROC_STATUS = Path("/proc/self/status")


@dataclass
class Epoch:
    seconds: float
    loss: float
    samples: int


@dataclass
class PathResult:
    warmup_seconds: float
    peak_bytes: int
    samples: int
    epoch_seconds: list[float] = field(default_factory=list)  # the timed epochs, filled in by the second pass


# What "every speed option" means for the --limit path; amp "auto" is full precision on the CPU.
LIMIT_OVERRIDES = [
    "data_loader.args.device_resident=true",
    "optimizer.args.fused=true",
    "trainer.compile=default",
    "trainer.amp=auto",
    "trainer.channels_last=true",
]


def benchmark_config(config_path: Path, overrides: list[str], keep_metrics: bool = False) -> Config:
    """The project's config without what a plain loop lacks: validation, metrics besides the loss
    (unless ``keep_metrics``), a scheduler, early stopping; what is left is the Trainer's own overhead."""
    fixed = [
        *([] if keep_metrics else ["metrics=[]"]),
        "trainer.monitor=off",
        "lr_scheduler=null",
        "data_loader.args.validation_split=0",
    ]
    return load_config(config_path, [*fixed, *overrides])


# A path to time: hand_written_epochs or trainer_epochs with its config bound (functools.partial).
BenchPath = Callable[[Registry, torch.device], Iterator[Epoch]]


def reset_peak_memory(device: torch.device) -> None:
    gc.collect()  # what the previous path left in reference cycles
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    elif PROC_STATUS.exists():
        # Hand freed heap back to the OS first (glibc keeps it otherwise), so that each path's peak
        # starts from the same resident set instead of from what the previous path left behind.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM, the peak RSS


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    lines = PROC_STATUS.read_text().splitlines() if PROC_STATUS.exists() else []
    return next((int(line.split()[1]) * 1024 for line in lines if line.startswith("VmHWM:")), 0)


def hand_written_epochs(config: Config, modules: Registry, device: torch.device) -> Iterator[Epoch]:
    """The loop everyone writes first, built in the same order (and so from the same seed) as build_trainer."""
    seed_everything(config.seed)
    data_loader, _ = build_data(config, modules).train_loaders(device)
    model = build_model(config, modules).to(device)
    optimizer = build_optimizer(config, model)
    criterion = lookup_function(modules.losses, config.loss, "loss")
    amp_dtype = config.trainer.amp_dtype(device)
    memory_format = torch.channels_last if config.trainer.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    mode = config.trainer.compile
    forward = model if mode == "off" else torch.compile(model, mode=mode)
    for epoch in itertools.count(1):
        started = time.perf_counter()
        model.train()
        data_loader.set_epoch(epoch)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for data, target in data_loader:
            data = data.contiguous(memory_format=memory_format)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = criterion(forward(data), target)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * target.size(0)
        mean_loss = loss_sum.item() / data_loader.n_samples  # waits for the device, like the Trainer's epoch end
        yield Epoch(time.perf_counter() - started, mean_loss, data_loader.n_samples)


def trainer_epochs(config: Config, modules: Registry, device: torch.device) -> Iterator[Epoch]:
    """The project's Trainer, one ``train_epoch`` per step of the iteration, timed from outside."""
    trainer = build_trainer(config, modules, device)
    with tempfile.TemporaryDirectory() as run_dir:
        checkpoints = Checkpointer(Path(run_dir), save_period=1, keep_last=0)  # written only on a stop signal
        for epoch in itertools.count(1):
            started = time.perf_counter()
            epoch_metrics = trainer.train_epoch(epoch, checkpoints)  # ends with a host sync, like the loop above
            yield Epoch(time.perf_counter() - started, epoch_metrics["loss"], trainer.train_loader.n_samples)


def bench_paths(args: argparse.Namespace) -> tuple[Config, dict[str, BenchPath]]:
    """The config of the two plain paths, and the paths to time, by name; the flags' overrides apply to all."""
    overrides = overrides_from_flags(args)
    config = benchmark_config(args.config, overrides)
    paths = {"hand-written": partial(hand_written_epochs, config), "Trainer": partial(trainer_epochs, config)}
    if args.with_metrics:
        paths["Trainer+metrics"] = partial(trainer_epochs, benchmark_config(args.config, overrides, True))
    if args.limit:
        paths["limit"] = partial(hand_written_epochs, benchmark_config(args.config, [*overrides, *LIMIT_OVERRIDES]))
    return config, paths


def warmup_and_memory(paths: dict[str, BenchPath], modules: Registry, device: torch.device) -> dict[str, PathResult]:
    """Each path alone for one epoch: its time and the peak memory."""
    results = {}
    for name, path in paths.items():
        reset_peak_memory(device)
        first = next(path(modules, device))  # the generator and all it built go when this returns
        results[name] = PathResult(first.seconds, peak_memory(device), first.samples)
    return results


def paired_epoch_seconds(
    paths: dict[str, BenchPath], modules: Registry, device: torch.device, timed_epochs: int
) -> dict[str, list[float]]:
    """The paths take turns an epoch at a time, each turn in a rotated order; the first epoch of each
    is a warm-up and not kept.

    Half the turns come from paths built in the listed order, half from paths built in reverse:
    whichever is built later can run a little slower (2% in runs of one path against itself here).
    """
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    halves = ((timed_epochs + 1) // 2, timed_epochs // 2)
    for build_order, epochs in zip((list(paths), list(reversed(paths))), halves, strict=True):
        if epochs == 0:
            continue
        running = {name: paths[name](modules, device) for name in build_order}
        names = list(running)
        for turn in range(epochs + 1):
            shift = turn % len(names)
            for name in names[shift:] + names[:shift]:
                epoch = next(running[name])
                if turn > 0:
                    seconds[name].append(epoch.seconds)
        running.clear()  # frees every path before the next set is built
    return seconds


def table(device: torch.device, results: dict[str, PathResult]) -> str:
    memory = "max_memory_allocated" if device.type == "cuda" else "peak RSS"
    rows = [f"{'path':<16} {'warm-up s':>10} {'epoch s (median)':>17} {'samples/s':>10} {memory + ' MiB':>25}"]
    for name, result in results.items():
        median = statistics.median(result.epoch_seconds)
        rows.append(
            f"{name:<16} {result.warmup_seconds:>10.3f} {median:>17.3f} {result.samples / median:>10.0f} "
            f"{result.peak_bytes / 2**20:>25.1f}"
        )
    reference = "limit" if "limit" in results else "hand-written"
    pairs = [("Trainer", "hand-written")] + ([("Trainer", "limit")] if reference == "limit" else [])
    if "Trainer+metrics" in results:
        pairs.append(("Trainer+metrics", reference))
    rows.extend(ratio_row(results[path], results[baseline], f"{path}/{baseline}") for path, baseline in pairs)
    return "\n".join(rows)


def ratio_row(path: PathResult, baseline: PathResult, label: str) -> str:
    """Time as the median of the per-turn ratios (both epochs of a turn saw the same machine), and memory."""
    pair_ratios = [p / b for p, b in zip(path.epoch_seconds, baseline.epoch_seconds, strict=True)]
    memory_ratio = path.peak_bytes / baseline.peak_bytes if baseline.peak_bytes else float("nan")
    return (
        f"ratio {label}: time {statistics.median(pair_ratios):.3f} "
        f"(median of {len(pair_ratios)} paired epochs; range {min(pair_ratios):.3f}-{max(pair_ratios):.3f}), "
        f"memory {memory_ratio:.3f}"
    )


def run(args: argparse.Namespace, modules: Registry) -> None:
    config, paths = bench_paths(args)
    device = resolve_device(config.device)
    results = warmup_and_memory(paths, modules, device)
    for name, seconds in paired_epoch_seconds(paths, modules, device, args.epochs).items():
        results[name].epoch_seconds = seconds
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    batch_size = config.data_loader.args.get("batch_size", "default")
    workload = f"{results['hand-written'].samples} samples, batch {batch_size}"
    print(f"{config.arch.type}, {workload}, 1 warm-up + {args.epochs} timed epochs per path, {machine}")
    print(table(device, results))


def main(argv: list[str] | None = None, modules: Registry = PROJECT_MODULES) -> int:
    parser = ArgumentParser(
        prog="python -m benchmarks.bench_trainer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-c", "--config", type=Path, default=Path("config.json"))
    parser.add_argument("--epochs", type=int, default=8, help="timed epochs per path, after one warm-up epoch")
    parser.add_argument("--limit", action="store_true", help="also time a hand-written loop with all speed options on")
    parser.add_argument("--with-metrics", action="store_true", help="also time the Trainer with the config's metrics")
    add_override_flags(parser)
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs {args.epochs}: time at least 1 epoch")
    return run_command(lambda: run(args, modules), args.debug)


if __name__ == "__main__":
    sys.exit(main())
