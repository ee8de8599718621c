"""Finds the first NaN or infinite loss of an epoch without a host sync per step."""

import torch
import torch.distributed as dist

from utils.dist import all_reduce

NEVER = torch.iinfo(torch.long).max


class LossWatch:
    """Keeps the losses since the last check on the device (one copy per step), so that a check,
    the only host sync, can name the exact step where the loss first stopped being finite.

    Steps never added (batches skipped on purpose) count as finite.
    """

    def __init__(self, steps_between_checks: int, first_step: int, device: torch.device) -> None:
        self._losses = torch.zeros(steps_between_checks, device=device)
        self._first_step = first_step  # the step whose loss _losses[0] holds

    def add(self, step: int, loss: torch.Tensor) -> None:
        self._losses[step - self._first_step] = loss.detach()

    def first_bad_step(self, step: int) -> int | None:
        """The first step up to ``step`` (since the last check) whose loss was not finite in some
        process, or None. Under torchrun every process must call it at the same steps."""
        steps = torch.arange(self._first_step, self._first_step + len(self._losses), device=self._losses.device)
        candidates = torch.where(torch.isfinite(self._losses), NEVER, steps)
        # Empty when a run stopped at an epoch's last step resumes there: no step is left to check.
        first = candidates.min().reshape(1) if len(candidates) else steps.new_full((1,), NEVER)
        found = int(all_reduce(first, dist.ReduceOp.MIN).item())
        self._losses.zero_()
        self._first_step = step + 1
        return None if found == NEVER else found
