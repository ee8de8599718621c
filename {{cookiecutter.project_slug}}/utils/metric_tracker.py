"""Sample-weighted running means that stay on the device until somebody reads them."""

from collections.abc import Callable, Sequence
from typing import Any

import torch

from utils.dist import all_reduce, is_main


class MetricTracker:
    """Accumulates per-batch means weighted by batch size, without a host sync per batch.

    ``update`` only launches device work; ``result`` is the one place that copies to the host,
    so call it at log steps and at the end of an epoch.
    """

    def __init__(self, names: Sequence[str], device: torch.device) -> None:
        self.names = list(names)
        self._sums = torch.zeros(len(self.names), dtype=torch.float64, device=device)
        self._count = 0

    def update(self, batch_size: int, batch_means: torch.Tensor) -> None:
        """Add one batch: ``batch_means`` holds its mean of each name, in order (see ``batch_measures``)."""
        self._sums.add_(batch_means, alpha=batch_size)
        self._count += batch_size

    def _totals(self) -> tuple[torch.Tensor, int]:
        """Sums and count over every process (under torchrun each one sees its own share)."""
        totals = torch.cat([self._sums, self._sums.new_tensor([self._count])])
        all_reduce(totals)
        return totals[:-1], int(totals[-1].item())

    def state_dict(self) -> dict[str, Any]:
        """The running totals, so an epoch interrupted part way can be finished with the same sums.

        Under torchrun every process must call it (it adds up all their shares).
        """
        sums, count = self._totals()
        return {"names": self.names, "sums": sums.cpu(), "count": count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from saved totals (of the same names: Trainer.load_state_dict checks); under torchrun only
        rank 0 takes them, so they count once."""
        if is_main():
            self._sums.copy_(state["sums"])
            self._count = state["count"]

    def result(self) -> dict[str, float]:
        """Means over everything seen so far, by every process; the one host sync."""
        sums, count = self._totals()
        if count == 0:
            return dict.fromkeys(self.names, float("nan"))
        return dict(zip(self.names, (sums / count).tolist(), strict=True))


Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Measure = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def batch_measures(metrics: dict[str, Metric]) -> Measure:
    """A function of (loss, output, targets) that gives the batch's loss and each metric, in that
    order, as one float tensor for ``MetricTracker.update``.

    Left eager on purpose: on an H100, torch.compile made it slower (160 against 109 us of host
    time per batch of 512, measured with the template repository's .dev/bench_measures.py); its call
    costs more than the launches it saves.
    """
    if not metrics:
        return lambda loss, output, targets: loss.detach().reshape(1)  # a view: no kernel at all

    def measure(loss: torch.Tensor, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        values = [loss.detach(), *(metric(output, targets) for metric in metrics.values())]
        return torch.stack([value.float() for value in values])  # one kernel, however many metrics

    return measure
