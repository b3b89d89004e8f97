"""A split in memory: :class:`PixelDataset`, integer images and labels, and the files they came
from.

Axis key: N images, C channels, H height, W width, B batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .errors import DatasetError, check_int
from .files import DataFile, describe_files

__all__ = ["MAX_SOURCE_BITS", "PixelDataset"]

MAX_SOURCE_BITS = 8  # images are held as uint8


def _described(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} {tuple(value.shape)}"
    return type(value).__name__


class PixelDataset(Dataset):
    """Integer images of one split, held in memory as one contiguous ``uint8`` tensor.

    ``images`` is ``uint8 [N, C, H, W]`` with values in ``[0, 2**num_bits - 1]``; ``labels``
    is ``long [N]`` or ``None``. ``ds[i]`` is ``(image [C, H, W], label)``, the label ``-1``
    when there are none. A training loop indexes ``ds.images[indices]`` or calls
    :meth:`batch`.

    ``files`` is what :func:`load_dataset` read to make it, one :class:`DataFile` (path, size,
    checksum) per file, in the order read; :meth:`describe_files` is that as one line. A
    dataset built from tensors has none.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        num_bits: int = 8,
        num_classes: int | None = None,
        name: str = "custom",
        split: str = "train",
        source: str | os.PathLike | None = None,
        files: Sequence[DataFile] = (),
    ):
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            raise DatasetError(
                f"images must be a uint8 tensor [N, C, H, W], got {_described(images)}"
            )
        check_int("num_bits", num_bits, 1, MAX_SOURCE_BITS)
        top = int(images.max()) if images.numel() else 0
        if top >= 2**num_bits:
            raise DatasetError(
                f"images must hold values in [0, {2**num_bits - 1}] for num_bits={num_bits}, "
                f"found {top}"
            )
        if labels is not None and (
            not isinstance(labels, torch.Tensor)
            or labels.dtype != torch.long
            or tuple(labels.shape) != (len(images),)
        ):
            raise DatasetError(
                f"labels must be a long tensor [{len(images)}] or None, got {_described(labels)}"
            )
        self.images = images.contiguous()
        self.labels = labels
        self.num_bits = num_bits
        self.num_classes = num_classes
        self.name = name
        self.split = split
        self.source = None if source is None else Path(source)
        self.files: tuple[DataFile, ...] = tuple(files)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        c, h, w = self.images.shape[1:]
        return c, h, w

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """``(image uint8 [C, H, W], label)``; the label is ``-1`` without labels."""
        label = -1 if self.labels is None else int(self.labels[index])
        return self.images[index], label

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``images[indices]`` ``uint8 [B, C, H, W]`` and ``labels[indices]`` ``long [B]``
        (``None`` without labels), gathered in one indexing call each."""
        labels = None if self.labels is None else self.labels[indices]
        return self.images[indices], labels

    def describe_files(self) -> str:
        """The files read, as one line: ``fashion-mnist test: /usr/share/datasets/fashion-mnist:
        t10k-images-idx3-ubyte.gz (4.4 MB), t10k-labels-idx1-ubyte.gz (5.1 kB); SHA-256 matches
        the published digests``."""
        return f"{self.name} {self.split}: {describe_files(self.files)}"

    def __repr__(self) -> str:
        return (
            f"PixelDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"image_shape={self.image_shape}, num_bits={self.num_bits}, "
            f"num_classes={self.num_classes})"
        )
