"""The tiny model: two 3x3 convolutions (so channels_last means something), global max pooling, a linear
head, and optional dropout (so that training draws from the global RNG)."""

import torch
from torch import nn

from base.base_model import BaseModel  # abstract: the registry must not offer it


class TinyConvNet(BaseModel):
    def __init__(self, in_channels: int = 1, num_classes: int = 3, width: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class PairOutputNet(TinyConvNet):
    """Returns (logits, features), which the trainer refuses: it takes one tensor per batch."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        features = self.features(x)
        return self.head(features), features


class NormHeadNet(TinyConvNet):
    """TinyConvNet with BatchNorm1d on its pooled features: one value per channel for one sample."""

    def __init__(self, **kwargs: float) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.norm = nn.BatchNorm1d(self.head[1].in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.features(x)))


def tiny_conv_net(num_classes: int = 3) -> TinyConvNet:
    """A factory function, as torchvision's resnet18 is: arch.type names only classes, and must say so."""
    return TinyConvNet(num_classes=num_classes)
