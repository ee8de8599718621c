"""Models. Add yours here as a ``BaseModel`` subclass and name it in config.json's ``arch.type``."""

import itertools

import torch
from torch import nn

from base.base_model import BaseModel


class ConvNet(BaseModel):
    """Three conv blocks and a linear head; global pooling makes it work for any image size.

    Small enough to train on a laptop CPU in seconds: at width 16, about 98% on the MNIST sample.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        width: int = 32,
        dropout: float = 0.3,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            norm = nn.BatchNorm2d(c_out) if batch_norm else nn.Identity()
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm), norm, nn.ReLU())

        self.features = nn.Sequential(
            block(in_channels, width),
            nn.MaxPool2d(2),
            block(width, 2 * width),
            nn.MaxPool2d(2),
            block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLP(BaseModel):
    """A multilayer perceptron for feature vectors (N x in_features): ``layers`` hidden layers of ``hidden``
    units with ReLU, then a linear layer of ``out_features`` (class scores, or the values to regress)."""

    def __init__(
        self, in_features: int, out_features: int, hidden: int = 64, layers: int = 2, dropout: float = 0.0
    ) -> None:
        super().__init__()
        widths = [in_features] + [hidden] * layers
        blocks = [nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)) for a, b in itertools.pairwise(widths)]
        self.net = nn.Sequential(*blocks, nn.Linear(widths[-1], out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
