"""SVHN cropped digits (http://ufldl.stanford.edu/housenumbers/, "Format 2").

Axis key: N images, C channels, H height, W width.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import scipy.io
from einops import rearrange

from .errors import DatasetError
from .formats import ArraySplit, register_format


@register_format("svhn")
class SvhnFormat:
    """``{train,test,extra}_32x32.mat``: ``X`` ``uint8 [32, 32, 3, N]``, ``y`` ``[N, 1]`` in 1..10.

    Label 10 stands for the digit 0 and is mapped to 0, so labels are the digits 0..9.
    """

    def locate(self, folder: Path, split: str) -> Path | None:
        path = folder / f"{split}_32x32.mat"
        return path if path.is_file() else None

    def read(self, path: Path, split: str) -> ArraySplit:
        try:
            content = scipy.io.loadmat(path, variable_names=("X", "y"))
        except (scipy.io.matlab.MatReadError, ValueError, TypeError, OSError, zlib.error) as error:
            raise DatasetError(f"{path}: not a readable MATLAB file ({error})") from error
        x, y = content.get("X"), content.get("y")
        if x is None or x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
            found = "no X" if x is None else f"X as {x.dtype} {x.shape}"
            raise DatasetError(f"{path}: expected X as uint8 [32, 32, 3, N], found {found}")
        if y is None or y.size != x.shape[3]:
            found = "no y" if y is None else f"y of shape {y.shape}"
            raise DatasetError(f"{path}: expected y with {x.shape[3]} labels, found {found}")
        labels = y.reshape(-1).astype(np.int64)
        if labels.min() < 1 or labels.max() > 10:
            raise DatasetError(
                f"{path}: expected labels in 1..10 (10 = digit 0), found "
                f"{labels.min()}..{labels.max()}"
            )
        images = np.ascontiguousarray(rearrange(x, "h w c n -> n c h w"))
        return ArraySplit(images=images, labels=labels % 10, source=path)
