"""Folders of PNG / JPEG images: a user's own pictures, labelled by their subfolders.

Axis key: N images, C channels, H height, W width.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from einops import rearrange
from PIL import Image, UnidentifiedImageError

from pixelcnnpp.checks import is_int

from .errors import DatasetError
from .formats import ArraySplit, register_format

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Lanczos for resizing image folders: Pillow filters over the whole source footprint when
# downsampling (antialiased), and Lanczos keeps the most detail of the filters it offers.
RESAMPLE = Image.Resampling.LANCZOS


@register_format("image-folder")
class ImageFolderFormat:
    """Every PNG/JPEG under a folder, recursively, in sorted path order.

    Labels: when no image sits directly in the folder, each image's label is the index of its
    first-level subfolder among the sorted subfolder names (``root/cat/1.png`` -> "cat");
    otherwise there are none. Splits: a folder holding both ``train/`` and ``test/`` has those
    two; any other folder is one train split. Images are converted to RGB or grayscale (alpha
    is dropped) and, with ``image_size``, resized with :data:`RESAMPLE`.
    """

    def locate(self, folder: Path, split: str) -> Path | None:
        if not folder.is_dir():
            return None
        if (folder / "train").is_dir() and (folder / "test").is_dir():
            return folder / split
        if split != "train":
            raise DatasetError(
                f"{folder}: an image folder has a {split} split only when it holds train/ and "
                "test/ subfolders; this one does not, so use split='train' or 'validation' "
                "(validation is carved from train)"
            )
        return folder

    def read(
        self,
        path: Path,
        split: str,
        image_size: int | tuple[int, int] | None = None,
        channels: int | None = None,
    ) -> ArraySplit:
        resize_to = _check_image_size(image_size)
        if channels is not None and channels not in (1, 3):
            raise DatasetError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
        files = sorted(
            (
                p
                for p in path.rglob("*")
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
            ),
            key=lambda p: p.relative_to(path).as_posix(),
        )
        if not files:
            raise DatasetError(
                f"{path}: no images found; expected files ending in {', '.join(IMAGE_SUFFIXES)}"
            )
        first = _read_image(files[0], channels, resize_to)  # sets the channels and size
        images = np.empty((len(files), *first.shape), dtype=np.uint8)
        images[0] = first
        for i, file in enumerate(files[1:], start=1):
            pixels = _read_image(file, first.shape[0], resize_to)
            if pixels.shape != first.shape:
                raise DatasetError(
                    f"{file}: image is {pixels.shape[1]}x{pixels.shape[2]} (H x W) but "
                    f"{files[0]} is {first.shape[1]}x{first.shape[2]}; all images must have one "
                    "size (pass image_size to resize them)"
                )
            images[i] = pixels
        labels, num_classes = _folder_labels(path, files)
        return ArraySplit(
            images=images, labels=labels, source=path, num_classes=num_classes, files=tuple(files)
        )


def _check_image_size(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(is_int(s) for s in size):
        raise DatasetError(f"image_size must be an int or a pair (H, W), got {image_size!r}")
    if min(size) < 1:
        raise DatasetError(f"image_size must be positive, got {image_size!r}")
    return size


def _read_image(file: Path, channels: int | None, size: tuple[int, int] | None) -> np.ndarray:
    """One image file -> ``uint8 [C, H, W]``."""
    try:
        with Image.open(file) as image:
            if image.mode == "F" or image.mode.startswith("I"):
                raise DatasetError(
                    f"{file}: image mode {image.mode} holds more than 8 bits per channel; "
                    "expected 8-bit images"
                )
            if channels is None:
                channels = 1 if image.mode in ("1", "L", "LA") else 3
            converted = image.convert("L" if channels == 1 else "RGB")
            if size is not None and converted.size != (size[1], size[0]):
                converted = converted.resize((size[1], size[0]), RESAMPLE)
            pixels = np.asarray(converted, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(f"{file}: not a readable image ({error})") from error
    if channels == 1:
        return pixels[None]
    return rearrange(pixels, "h w c -> c h w")


def _folder_labels(root: Path, files: list[Path]) -> tuple[np.ndarray | None, int | None]:
    parts = [file.relative_to(root).parts for file in files]
    if any(len(p) == 1 for p in parts):
        return None, None
    classes = sorted({p[0] for p in parts})
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index[p[0]] for p in parts], dtype=np.int64), len(classes)
