"""Base class for models: an ``nn.Module`` that reports its size when printed."""

from abc import ABC, abstractmethod

import torch
from torch import nn


class BaseModel(nn.Module, ABC):
    @abstractmethod
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The forward pass; subclasses must implement it."""

    def __str__(self) -> str:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return f"{super().__str__()}\nTrainable parameters: {trainable:,}"
