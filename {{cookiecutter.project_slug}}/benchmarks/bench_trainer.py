"""How much does the Trainer cost over a hand-written loop? python -m benchmarks.bench_trainer

Both train the same model from the same seed on the same data with the same optimizer,
precision and memory format, in this process, ``--repeats`` times each, alternating. The table gives the median
epoch time (each run's first epoch is a warm-up and not counted), samples per second, peak memory
(CUDA: max_memory_allocated; CPU: the process's peak resident set size) and the ratios
Trainer / hand-written. With the same seed on the CPU both also see the same per-epoch losses
(tests/test_parity.py checks it).
"""

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import data_loader.data_loaders as module_data
import model.model as module_arch
from base.base_data_loader import BaseDataLoader
from parse_config import ConfigError, ConfigParser
from train import build_trainer
from utils.util import resolve_amp, resolve_device, seed_everything

PROC_STATUS = Path("/proc/self/status")


@dataclass
class Measurement:
    epoch_seconds: list[float]
    epoch_losses: list[float]
    samples: int
    peak_bytes: int

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.epoch_seconds[1:] or self.epoch_seconds)


def benchmark_config(config_path: Path, epochs: int, overrides: list[str]) -> ConfigParser:
    """The project's config without what a plain loop lacks: validation, metrics besides the loss,
    a scheduler, early stopping; what is left is the Trainer's own overhead."""
    fixed = [
        "metrics=[]",
        f"trainer.epochs={epochs}",
        "trainer.monitor=off",
        "trainer.early_stop=0",
        "trainer.save_period=1000000",
        "trainer.verbosity=0",
        "lr_scheduler=null",
        "data_loader.args.validation_split=0",
    ]
    return ConfigParser.load(config_path, [*fixed, *overrides])


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    elif PROC_STATUS.exists():
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM, the peak RSS


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    lines = PROC_STATUS.read_text().splitlines() if PROC_STATUS.exists() else []
    return next((int(line.split()[1]) * 1024 for line in lines if line.startswith("VmHWM:")), 0)


def run_hand_written(config: ConfigParser, device: torch.device) -> Measurement:
    """The loop everyone writes first, built in the same order (and so from the same seed) as build_trainer."""
    seed_everything(config["seed"])
    data_loader, _ = config.init_obj("data_loader", module_data, seed=config["seed"], base=BaseDataLoader).loaders_for(
        device
    )
    model = config.init_obj("arch", module_arch, base=torch.nn.Module).to(device)
    optimizer = config.init_obj("optimizer", torch.optim, model.parameters(), base=torch.optim.Optimizer)
    amp_dtype = resolve_amp(config["trainer"]["amp"], device)
    memory_format = torch.channels_last if config["trainer"]["channels_last"] else torch.contiguous_format
    model.to(memory_format=memory_format)
    reset_peak_memory(device)
    seconds, losses = [], []
    for epoch in range(1, config["trainer"]["epochs"] + 1):
        started = time.perf_counter()
        model.train()
        data_loader.set_epoch(epoch)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for data, target in data_loader:
            data, target = data.to(device, non_blocking=True), target.to(device, non_blocking=True)
            data = data.contiguous(memory_format=memory_format)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = F.cross_entropy(model(data), target)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * target.size(0)
        losses.append(loss_sum.item() / data_loader.n_samples)
        seconds.append(time.perf_counter() - started)
    return Measurement(seconds, losses, data_loader.n_samples, peak_memory(device))


def run_trainer(config: ConfigParser, device: torch.device) -> Measurement:
    trainer = build_trainer(config, device)
    with tempfile.TemporaryDirectory() as run_dir:
        reset_peak_memory(device)
        trainer.train(Path(run_dir))
        peak = peak_memory(device)
    seconds = [epoch["seconds"] for epoch in trainer.history]
    losses = [epoch["loss"] for epoch in trainer.history]
    return Measurement(seconds, losses, trainer.data_loader.n_samples, peak)


def combine(runs: list[Measurement]) -> Measurement:
    """Pool the timed epochs of repeated runs (each run's first epoch stays a warm-up)."""
    seconds = [runs[0].epoch_seconds[0]] + [s for run in runs for s in run.epoch_seconds[1:]]
    return Measurement(seconds, runs[0].epoch_losses, runs[0].samples, max(run.peak_bytes for run in runs))


def table(device: torch.device, hand: Measurement, trainer: Measurement) -> str:
    memory = "max_memory_allocated" if device.type == "cuda" else "peak RSS"
    rows = [f"{'path':<14} {'epoch s (median)':>17} {'samples/s':>11} {memory + ' MiB':>25}"]
    for name, result in (("hand-written", hand), ("Trainer", trainer)):
        rate = result.samples / result.median_seconds
        rows.append(f"{name:<14} {result.median_seconds:>17.3f} {rate:>11.0f} {result.peak_bytes / 2**20:>25.1f}")
    time_ratio = trainer.median_seconds / hand.median_seconds
    memory_ratio = trainer.peak_bytes / hand.peak_bytes if hand.peak_bytes else float("nan")
    rows.append(f"ratio Trainer/hand-written: time {time_ratio:.3f}, memory {memory_ratio:.3f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", type=Path, default=Path("config.json"))
    parser.add_argument("-d", "--device", default=None, help="auto, cpu, cuda or cuda:N (default: the config's)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is a warm-up")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path, alternating, to even out drift")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    args = parser.parse_args(argv)
    try:
        overrides = ([f"device={args.device}"] if args.device else []) + args.overrides
        config = benchmark_config(args.config, args.epochs, overrides)
        device = resolve_device(config["device"])
        runs = [(run_hand_written(config, device), run_trainer(config, device)) for _ in range(args.repeats)]
        hand, trainer = (combine([pair[i] for pair in runs]) for i in (0, 1))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{config['arch']['type']}, {hand.samples} samples, batch {config['data_loader']['args']['batch_size']}, "
          f"{args.repeats} x {args.epochs} epochs per path, {name}")  # fmt: skip
    print(table(device, hand, trainer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
