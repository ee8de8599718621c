"""Sample-weighted running means that stay on the device until somebody reads them."""

from collections.abc import Sequence
from typing import Any

import torch


class MetricTracker:
    """Accumulates per-batch means weighted by batch size, without a host sync per batch.

    ``update`` only launches device work; ``result`` is the one place that copies to the host,
    so call it at log steps and at the end of an epoch.
    """

    def __init__(self, names: Sequence[str], device: torch.device) -> None:
        self.names = list(names)
        self._sums = torch.zeros(len(self.names), dtype=torch.float64, device=device)
        self._count = 0

    def update(self, batch_size: int, values: Sequence[torch.Tensor]) -> None:
        self._sums += torch.stack([value.detach().to(torch.float64) for value in values]) * batch_size
        self._count += batch_size

    @property
    def count(self) -> int:
        return self._count

    def state_dict(self) -> dict[str, Any]:
        """The running sums, so an epoch interrupted part way can be finished with the same totals."""
        return {"names": self.names, "sums": self._sums.cpu(), "count": self._count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["names"] != self.names:
            raise ValueError(f"metric names changed: {state['names']} in the checkpoint, {self.names} now")
        self._sums.copy_(state["sums"])
        self._count = state["count"]

    def result(self) -> dict[str, float]:
        if self._count == 0:
            return dict.fromkeys(self.names, float("nan"))
        return dict(zip(self.names, (self._sums / self._count).tolist(), strict=True))
