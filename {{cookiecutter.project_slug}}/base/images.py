"""Reading one image file as a data loader's splits hold their images. Data loaders that read files and
predict.py share it, so a file predicted on is prepared exactly as the files trained and tested on."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from utils.errors import UsageError

# PIL's mode for each channel count a model may take.
MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def eight_bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale (PNG, TIFF: PIL's "I;16" modes) scaled to 8 bits, which PIL's convert would clip
    at 255 instead; any other image as it is."""
    if not image.mode.startswith("I;16"):
        return image
    pixels = np.asarray(image).astype(np.uint16) // 257  # 65535 -> 255, keeping the whole range
    return Image.fromarray(pixels.astype(np.uint8), mode="L")


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
        try:
            with Image.open(path) as image:
                # Reads the whole file: a truncated one fails here.
                converted = eight_bit(image).convert(MODES[self.channels])
        except Image.DecompressionBombError as err:  # over PIL's pixel limit: no OSError, so said as one here
            raise OSError(f"{err} (PIL.Image.MAX_IMAGE_PIXELS raises the limit)") from None
        from torchvision.transforms import v2  # here: importing torchvision takes a second and a half

        steps = [v2.ToImage()] if self.size is None else [v2.ToImage(), v2.Resize(self.size), v2.CenterCrop(self.size)]
        return v2.Compose(steps)(converted).as_subclass(torch.Tensor)
