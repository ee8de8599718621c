"""Which files predict.py classifies: the image files named, those under the folders named
(recursively) and those matched by the globs named, each once, in a stable order."""

import glob
from pathlib import Path

from utils.errors import UsageError

# What a folder is searched for; a file named on the command line is tried whatever its suffix.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
GLOB_CHARACTERS = frozenset("*?[")


def find_images(inputs: list[str]) -> list[Path]:
    """Every image file ``inputs`` name; an input that names nothing is refused with one line."""
    found: dict[Path, Path] = {}  # the file -> the name first given for it: keeps the order, drops repeats
    for text in inputs:
        for path in _expand(text):
            found.setdefault(path.resolve(), path)
    return list(found.values())


def _expand(text: str) -> list[Path]:
    path = Path(text)
    if path.is_file():
        return [path]
    if path.is_dir():
        images = _images_under(path)
        if not images:
            raise UsageError(f"no images in {text!r} (looked for {', '.join(IMAGE_SUFFIXES)} in it and below)")
        return images
    if GLOB_CHARACTERS & set(text):
        matches = sorted(Path(match) for match in glob.glob(text, recursive=True))
        files = [match for match in matches if match.is_file()]
        folders = [match for match in matches if match.is_dir()]
        files += [image for folder in folders for image in _images_under(folder)]
        if not files:
            raise UsageError(f"no image files match {text!r}")
        return files
    raise UsageError(f"{text!r} does not exist; pass image files, folders of images or globs")


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
