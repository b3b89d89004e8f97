"""Downsampled ImageNet (Chrabaszcz, Loshchilov, Hutter 2017; https://image-net.org, login).

Axis key: N images, C channels, H height, W width, S side of a square image.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from einops import rearrange

from .errors import DatasetError
from .formats import ArraySplit, register_format


@dataclass(frozen=True)
class DownsampledImageNetFormat:
    """``train_data_batch_1..10.npz`` and ``val_data.npz`` (the test split).

    Each holds ``data`` ``uint8 [N, 3*S*S]`` (red, green, blue planes, like CIFAR), ``labels``
    1..1000 (converted to 0..999) and ``mean`` (ignored). The files may sit in the folder
    itself or in the folders the official zips unpack to (``Imagenet32_train_npz/``,
    ``Imagenet32_val_npz/``, ``Imagenet64_train_part1_npz/``, ...).
    """

    size: int
    num_train_batches: int = 10

    def file_names(self, split: str) -> tuple[str, ...]:
        """The published file names of ``split``."""
        if split == "train":
            return tuple(f"train_data_batch_{i}.npz" for i in range(1, self.num_train_batches + 1))
        return ("val_data.npz",) if split == "test" else ()

    def locate(self, folder: Path, split: str) -> Path | None:
        return folder if self._paths(folder, split) else None

    def read(self, path: Path, split: str) -> ArraySplit:
        paths = self._paths(path, split)
        if not paths:
            raise DatasetError(f"{path}: no downsampled ImageNet files for the {split} split")
        # Labels first (small) to size one array, so the images are never held twice.
        batch_labels = [self._load(p, "labels").astype(np.int64).reshape(-1) for p in paths]
        labels = np.concatenate(batch_labels)
        if labels.min() < 1 or labels.max() > 1000:
            raise DatasetError(
                f"{path}: expected ImageNet labels in 1..1000, found {labels.min()}..{labels.max()}"
            )
        images = np.empty((len(labels), 3 * self.size * self.size), dtype=np.uint8)
        start = 0
        for p, count in zip(paths, map(len, batch_labels), strict=True):
            data = self._load(p, "data")
            if data.dtype != np.uint8 or data.shape != (count, images.shape[1]):
                raise DatasetError(
                    f"{p}: expected data as uint8 [{count}, {images.shape[1]}] (one row of "
                    f"{self.size}x{self.size}x3 pixels per label), found {data.dtype} {data.shape}"
                )
            images[start : start + count] = data
            start += count
        images = rearrange(images, "n (c h w) -> n c h w", c=3, h=self.size, w=self.size)
        return ArraySplit(images=images, labels=labels - 1, source=path, files=tuple(paths))

    def _paths(self, folder: Path, split: str) -> list[Path]:
        names = self.file_names(split)
        if not names or not folder.is_dir():
            return []
        folders = [folder, *sorted(p for p in folder.glob(f"Imagenet{self.size}_*") if p.is_dir())]
        paths = {}
        for name in names:
            for candidate in folders:
                if (candidate / name).is_file():
                    paths[name] = candidate / name
                    break
        if paths and len(paths) < len(names):
            missing = ", ".join(name for name in names if name not in paths)
            raise DatasetError(
                f"{folder}: the {split} split of downsampled ImageNet {self.size}x{self.size} "
                f"is incomplete, missing {missing}"
            )
        return [paths[name] for name in names] if paths else []

    @staticmethod
    def _load(path: Path, key: str) -> np.ndarray:
        try:
            with np.load(path, allow_pickle=False) as npz:
                if key not in npz:
                    raise DatasetError(f"{path}: expected an array {key!r}, found {npz.files}")
                return npz[key]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            if isinstance(error, DatasetError):
                raise
            raise DatasetError(f"{path}: not a readable .npz file ({error})") from error


@register_format("imagenet32")
def imagenet32() -> DownsampledImageNetFormat:
    """Downsampled ImageNet 32x32."""
    return DownsampledImageNetFormat(32)


@register_format("imagenet64")
def imagenet64() -> DownsampledImageNetFormat:
    """Downsampled ImageNet 64x64."""
    return DownsampledImageNetFormat(64)
