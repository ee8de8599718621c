"""Metrics, named by config.json's ``metrics``.

Each returns the batch mean as a 0-dim tensor on the batch's device; the trainer weights it by
batch size and reads it only at log steps, so a metric must not call ``.item()``.
``mean(dtype=...)`` averages the booleans in the same kernel that casts them.
"""

import torch


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (output.argmax(dim=1) == target).mean(dtype=torch.float32)


def top_3_accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    top = output.topk(min(3, output.size(1)), dim=1).indices
    return (top == target.unsqueeze(1)).any(dim=1).mean(dtype=torch.float32)


def mae(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error, for regression (its root mean squared error is the square root of an mse loss)."""
    return (output.float() - target).abs().mean()
