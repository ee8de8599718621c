"""Host time per training batch of the project's metrics, eager (as the Trainer runs them) against
torch.compile'd. Run from a baked project: python ../../../.dev/bench_measures.py DEVICE

A small model's GPU step is bound by how fast the host launches kernels, so what counts here is the
wall time per call with the device kept busy, measured over many calls and synchronised once at the end.
"""

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path.cwd()))
from model import metric as metric_module  # noqa: E402  (the baked project's own metrics)
from utils.metric_tracker import MetricTracker, batch_measures  # noqa: E402

CALLS = 3000


def seconds_per_call(measure, loss, output, targets, tracker) -> float:
    with torch.no_grad():
        for _ in range(50):  # warm-up, compiles when compiled
            tracker.update(targets.size(0), measure(loss, output, targets))
        torch.cuda.synchronize() if output.is_cuda else None
        started = time.perf_counter()
        for _ in range(CALLS):
            tracker.update(targets.size(0), measure(loss, output, targets))
        tracker.result()  # the one host sync
    return (time.perf_counter() - started) / CALLS


def main(device_name: str) -> None:
    device = torch.device(device_name)
    names = json.loads(Path("config.json").read_text())["metrics"]
    metrics = {name: getattr(metric_module, name) for name in names}
    for batch in (512, 128):
        output = torch.randn(batch, 10, device=device, dtype=torch.bfloat16)
        targets = torch.randint(0, 10, (batch,), device=device)
        loss = torch.nn.functional.cross_entropy(output.float(), targets)
        times = {}
        variants = [
            ("loss alone", batch_measures({}), ["loss"]),
            ("eager metrics", batch_measures(metrics), ["loss", *metrics]),
            ("compiled metrics", torch.compile(batch_measures(metrics)), ["loss", *metrics]),
        ]
        for label, measure, tracked in variants:
            times[label] = seconds_per_call(measure, loss, output, targets, MetricTracker(tracked, device))
        row = ", ".join(f"{label} {seconds * 1e6:.1f} us" for label, seconds in times.items())
        print(f"batch {batch}, metrics {names}: per training batch {row}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cuda")
