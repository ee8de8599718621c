"""Base class for models: an ``nn.Module`` that reports its size when printed."""

from abc import ABC, abstractmethod

import torch
from torch import nn


class BaseModel(nn.Module, ABC):
    @abstractmethod
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The forward pass; subclasses must implement it."""

    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def __str__(self) -> str:
        return f"{super().__str__()}\nTrainable parameters: {self.num_trainable_parameters():,}"
