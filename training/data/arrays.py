"""Plain arrays: a user's own ``.npz`` / ``.npy`` files of integer pixels.

Axis key: N images, C channels, H height, W width.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
from einops import rearrange

from .dataset import MAX_SOURCE_BITS
from .errors import DatasetError, check_int
from .formats import ArraySplit, register_format

ARRAY_IMAGE_KEYS = ("images", "x", "data")
ARRAY_LABEL_KEYS = ("labels", "y")
LAYOUTS = ("NCHW", "NHWC")


@register_format("arrays")
class ArrayFileFormat:
    """An ``.npz``/``.npy`` file, or a folder with ``train.npz`` and ``test.npz`` (or ``.npy``).

    Images come from the first of the keys ``images``, ``x``, ``data`` that exists, labels from
    ``labels`` or ``y`` (``.npy`` files hold images only). Accepted shapes: ``[N, H, W]``
    (one channel), ``[N, C, H, W]`` and ``[N, H, W, C]``. Without an explicit ``layout`` the
    channel axis is the one of size 1 or 3: NHWC when only the last axis is, NCHW when only
    axis 1 is; anything else needs ``layout`` (which accepts any channel count). Labels may be
    ``[N]`` or ``[N, 1]``; ``num_classes`` is the largest label plus one. Values must be
    integers (floats holding whole numbers pass) in ``[0, 2**source_bits - 1]``. A single file
    has no test split.
    """

    def locate(self, folder: Path, split: str) -> Path | None:
        if folder.is_file():
            if split != "train":
                raise DatasetError(
                    f"{folder}: a single array file has only a train split; for a {split} "
                    f"split pass a folder holding train.npz and {split}.npz"
                )
            return folder
        for suffix in (".npz", ".npy"):
            if (folder / f"{split}{suffix}").is_file():
                return folder / f"{split}{suffix}"
        return None

    def read(
        self, path: Path, split: str, layout: str | None = None, source_bits: int = 8
    ) -> ArraySplit:
        if layout is not None and layout not in LAYOUTS:
            raise DatasetError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        check_int("source_bits", source_bits, 1, MAX_SOURCE_BITS)
        images, labels = _load_arrays(path)
        images = _to_nchw(images, layout, path)
        images = _as_integers(images, 2**source_bits - 1, f"{path}: pixel", source_bits)
        num_classes = None
        if labels is not None:
            if labels.shape == (len(images), 1):
                labels = labels[:, 0]
            if labels.shape != (len(images),):
                raise DatasetError(
                    f"{path}: expected labels of shape [{len(images)}], found {labels.shape}"
                )
            labels = _as_integers(labels, None, f"{path}: label", None)
            num_classes = int(labels.max()) + 1 if len(labels) else None
        return ArraySplit(
            images=np.ascontiguousarray(images, dtype=np.uint8),
            labels=labels,
            source=path,
            num_classes=num_classes,
            bits=source_bits,
        )


def _load_arrays(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    if path.suffix not in (".npz", ".npy"):
        raise DatasetError(f"{path}: expected a .npz or .npy file")
    try:
        with open(path, "rb") as f:
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return loaded, None
            with loaded as npz:
                image_key = next((k for k in ARRAY_IMAGE_KEYS if k in npz), None)
                if image_key is None:
                    raise DatasetError(
                        f"{path}: expected an array named one of {', '.join(ARRAY_IMAGE_KEYS)}, "
                        f"found {', '.join(npz.files) or 'none'}"
                    )
                label_key = next((k for k in ARRAY_LABEL_KEYS if k in npz), None)
                return npz[image_key], (npz[label_key] if label_key else None)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(f"{path}: not a readable {path.suffix} file ({error})") from error


def _to_nchw(images: np.ndarray, layout: str | None, path: Path) -> np.ndarray:
    if images.ndim == 3:
        return images[:, None]
    if images.ndim != 4:
        raise DatasetError(
            f"{path}: expected images shaped [N, H, W], [N, C, H, W] or [N, H, W, C], "
            f"found {images.shape}"
        )
    if layout is None:
        axis1, last = images.shape[1] in (1, 3), images.shape[3] in (1, 3)
        if axis1 == last:
            raise DatasetError(
                f"{path}: cannot tell the channel axis of images shaped {images.shape} "
                "(looked for exactly one of axis 1 and the last axis with 1 or 3 entries); "
                "pass layout='NCHW' or layout='NHWC'"
            )
        layout = "NCHW" if axis1 else "NHWC"
    return images if layout == "NCHW" else rearrange(images, "n h w c -> n c h w")


def _as_integers(values: np.ndarray, hi: int | None, what: str, bits: int | None) -> np.ndarray:
    """``values`` as integers checked to lie in ``[0, hi]`` (``hi=None``: no upper bound)."""
    if values.dtype.kind == "f":
        if not np.isfinite(values).all() or not (values == np.floor(values)).all():
            raise DatasetError(
                f"{what} values must be integers; found non-integer floats (scaled to [0, 1]? "
                "store the integer values instead)"
            )
    elif values.dtype.kind not in "biu":
        raise DatasetError(f"{what} values must be integers, found dtype {values.dtype}")
    if values.size:
        lo_seen, hi_seen = values.min(), values.max()
        if lo_seen < 0 or (hi is not None and hi_seen > hi):
            expected = f"[0, {hi}] ({bits}-bit)" if hi is not None else "non-negative"
            raise DatasetError(
                f"{what} values must be integers in {expected}; found values in "
                f"[{float(lo_seen):g}, {float(hi_seen):g}]"
            )
    return values.astype(np.int64 if hi is None else np.uint8, order="C")
