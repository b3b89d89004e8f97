"""IDX: MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS" section).

Axis key: N images, H height, W width.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .formats import ArraySplit, register_format

_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes with ``ndim`` dimensions, gzipped or not.

    The header is the magic number ``0x000008{ndim:02x}`` (type 0x08 = unsigned byte) then one
    big-endian ``uint32`` per dimension; the data follows in C order. Returns ``uint8 [*dims]``.
    """
    raw = _read_maybe_gzip(path)
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != 0x800 + ndim:
        found = "a file shorter than 4 bytes" if magic is None else f"0x{magic:08x}"
        raise DatasetError(
            f"{path}: not an IDX file of unsigned bytes with {ndim} dimension(s): expected the "
            f"magic number 0x{0x800 + ndim:08x}, found {found}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(raw)} of {header} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DatasetError(
            f"{path}: the IDX header gives dimensions {dims}, so {expected} bytes, but the file "
            f"holds {len(raw)} bytes (truncated or corrupt)"
        )
    return np.frombuffer(bytearray(raw), np.uint8, offset=header).reshape(dims)


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read it ({error})") from error
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"{path}: not a readable gzip file ({error})") from error


@register_format("idx")
class IdxFormat:
    """``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]`` and ``t10k-*`` for test.

    Also accepts the ``train-images.idx3-ubyte`` spelling some mirrors use. Images come out
    ``[N, 1, H, W]``.
    """

    def locate(self, folder: Path, split: str) -> Path | None:
        if self._file(folder, split, "images", 3) and self._file(folder, split, "labels", 1):
            return folder
        return None

    def read(self, path: Path, split: str) -> ArraySplit:
        images_path = self._file(path, split, "images", 3)
        labels_path = self._file(path, split, "labels", 1)
        if images_path is None or labels_path is None:
            raise DatasetError(f"{path}: no IDX images and labels for the {split} split")
        images = read_idx(images_path, ndim=3)
        labels = read_idx(labels_path, ndim=1)
        if len(labels) != len(images):
            raise DatasetError(
                f"{labels_path}: {len(labels)} labels for the {len(images)} images of "
                f"{images_path.name}; expected one label per image"
            )
        return ArraySplit(
            images=images[:, None],
            labels=labels.astype(np.int64),
            source=images_path,
            files=(images_path, labels_path),
        )

    @staticmethod
    def _file(folder: Path, split: str, kind: str, ndim: int) -> Path | None:
        prefix = _PREFIX.get(split)
        if prefix is None:
            return None
        for stem in (f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"):
            for name in (f"{stem}.gz", stem):
                if (folder / name).is_file():
                    return folder / name
        return None
