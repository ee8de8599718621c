"""Reading one image file the way a data loader's split holds its images: uint8 C x H x W with the
loader's channel count, resized and centre-cropped to its ``image_size``. Data loaders that read
files (``ImageFolderDataLoader``) and predict.py use this one definition, so a file predicted on
is prepared exactly as the files trained and tested on."""

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms import v2

from utils.errors import UsageError

# PIL's mode for each channel count a model may take.
MODES = {1: "L", 3: "RGB", 4: "RGBA"}


@dataclass(frozen=True)
class ImageReader:
    """``reader(path)``: the image at ``path`` as uint8 ``channels`` x ``size`` x ``size``.

    ``size`` None keeps the file's own size (for data whose images all have the model's size).
    A file that is not an image raises an ``OSError`` (PIL's ``UnidentifiedImageError`` is one).
    Plain data, so DataLoader workers can pickle it.
    """

    channels: int
    size: int | None = None

    def __post_init__(self) -> None:
        if self.channels not in MODES:
            raise UsageError(
                f"image files are read as 1 (grey), 3 (RGB) or 4 (RGBA) channels, but the data loader's mean "
                f"has {self.channels}; give it one of those"
            )

    def __call__(self, path: str | Path) -> torch.Tensor:
        with Image.open(path) as image:
            converted = image.convert(MODES[self.channels])  # reads the whole file: a truncated one fails here
        steps = [v2.ToImage()] if self.size is None else [v2.ToImage(), v2.Resize(self.size), v2.CenterCrop(self.size)]
        return v2.Compose(steps)(converted).as_subclass(torch.Tensor)
