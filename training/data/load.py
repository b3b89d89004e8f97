"""Reading one split of a registered dataset: :func:`load_dataset`.

Axis key: N images, C channels, H height, W width.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .dataset import MAX_SOURCE_BITS, PixelDataset
from .download import download_dataset
from .errors import DatasetError, check_int
from .files import record_files
from .locations import default_download_dir, search_dirs
from .spec import DatasetSpec, get_dataset_spec, list_datasets

__all__ = ["load_dataset", "split_indices"]

MAX_LISTED = 5  # files named when a data_dir holds something other than what was expected


def split_indices(
    num_images: int, validation_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Carve ``validation_size`` of ``num_images`` indices at random (fixed by ``seed``).

    Returns ``(train, validation)``, disjoint, together ``0..num_images - 1``, each in
    increasing order so both keep the file's order.
    """
    order = np.random.default_rng(seed).permutation(num_images)
    return np.sort(order[validation_size:]), np.sort(order[:validation_size])


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    num_bits: int = 8,
    validation_size: int = 5000,
    subset: int | None = None,
    seed: int = 0,
    **options: Any,
) -> PixelDataset:
    """Read one split of a registered dataset into memory as integer pixels.

    - ``split``: ``"train"``, ``"validation"`` or ``"test"`` (SVHN also ``"extra"``).
      ``"validation"`` is ``validation_size`` images carved from the official train split at
      random with ``seed``; ``"train"`` is then the rest. ``validation_size=0`` carves nothing.
    - ``data_dir``: when given, the only place looked in (nothing else is searched; see
      :mod:`.locations` for where files are looked for without it); for ``image-folder`` and
      ``npz`` it is the data itself: a folder, or a ``.npz``/``.npy`` file.
    - ``download``: when nothing is found, fetch the official files (SHA-256 verified) into
      ``data_dir`` or :func:`default_download_dir`.
    - ``num_bits``: keep the top bits, ``x >> (source_bits - num_bits)`` (floor, as Glow/VDVAE).
    - ``subset``: keep the first ``subset`` images of the split (after carving; all of them
      when the split is smaller), for quick runs.
    - ``options``: passed on to the dataset's format, which declares them as keyword
      arguments of its ``read`` (``None`` means the format's default). The built-in ones:
      ``image_size`` (int or ``(H, W)``), ``channels`` (1 or 3) for image folders;
      ``layout`` (``"NCHW"``/``"NHWC"``), ``source_bits`` (bit depth of the stored values,
      default 8) for arrays.

    Returns a :class:`PixelDataset` with ``images`` ``uint8 [N, C, H, W]``; its ``files`` say
    which files were read (path, size, whether the published SHA-256 matched). Raises
    :class:`DatasetError` naming the file or folder and what was expected.
    """
    spec = get_dataset_spec(name)
    splits = ("train", "validation", *(s for s in spec.splits if s != "train"))
    if split not in splits:
        raise DatasetError(f"{name}: split must be one of {', '.join(splits)}, got {split!r}")
    check_int("num_bits", num_bits, 1, MAX_SOURCE_BITS)
    check_int("validation_size", validation_size, 0)
    check_int("seed", seed, 0)
    if subset is not None:
        check_int("subset", subset, 1)
    if split == "validation" and validation_size == 0:
        raise DatasetError("split='validation' needs validation_size > 0, got validation_size=0")
    options = {key: value for key, value in options.items() if value is not None}
    _check_options(spec, options)

    source_split = "train" if split == "validation" else split
    location = _find(spec, source_split, data_dir, download)
    raw = spec.format.read(location, source_split, **options)
    images, labels = raw.images, raw.labels
    num_classes = spec.num_classes if spec.num_classes is not None else raw.num_classes
    _check_contents(spec, raw.source, images, labels, num_classes)
    if num_bits > raw.bits:
        raise DatasetError(
            f"num_bits={num_bits} exceeds the {raw.bits}-bit pixels of {name} ({raw.source})"
        )
    files = record_files(raw.files, spec.known_checksums())

    if source_split == "train" and validation_size > 0:
        if validation_size >= len(images):
            raise DatasetError(
                f"validation_size={validation_size} leaves no training images: the train split "
                f"of {name} ({raw.source}) has {len(images)}"
            )
        train, validation = split_indices(len(images), validation_size, seed)
        keep = validation if split == "validation" else train
        images, labels = images[keep], None if labels is None else labels[keep]
    if subset is not None and subset < len(images):
        images = images[:subset].copy()
        labels = None if labels is None else labels[:subset].copy()
    if num_bits < raw.bits:
        np.right_shift(images, raw.bits - num_bits, out=images)
    return PixelDataset(
        torch.from_numpy(images),
        None if labels is None else torch.from_numpy(labels),
        num_bits=num_bits,
        num_classes=num_classes,
        name=name,
        split=split,
        source=raw.source,
        files=files,
    )


def _check_options(spec: DatasetSpec, options: dict[str, Any]) -> None:
    for key in options:
        if key in spec.options:
            continue
        takers = [n for n in list_datasets() if key in get_dataset_spec(n).options]
        if takers:
            raise DatasetError(f"{key} applies only to {', '.join(takers)}, not to {spec.name}")
        raise DatasetError(
            f"{spec.name}: unknown option {key!r}; it takes "
            f"{', '.join(map(repr, spec.options)) or 'no options'}"
        )


def _find(
    spec: DatasetSpec, split: str, data_dir: str | os.PathLike | None, download: bool
) -> Path:
    if spec.data_dir_required and data_dir is None:
        raise DatasetError(f"{spec.name} needs data_dir: {spec.how_to_get}")
    if data_dir is not None and not download and not Path(data_dir).expanduser().exists():
        raise DatasetError(f"{spec.name}: data_dir {data_dir} does not exist")
    searched = search_dirs(spec, data_dir)
    for folder in searched:
        location = spec.format.locate(folder, split)
        if location is not None:
            return location
    if download:
        target = download_dataset(spec.name, data_dir, splits=(split,))
        location = spec.format.locate(target, split)
        if location is not None:
            return location
    wanted = ", ".join(spec.files.get(split, ())) or "its files"
    if data_dir is not None:
        (folder,) = searched
        places = f"\n  {folder} ({_what_is_there(folder)}; the only place looked in: data_dir)"
    else:
        places = "".join(f"\n  {folder}" for folder in searched)
    message = (
        f"{spec.name}: no {split} split found. Looked for {wanted} in:{places}\n"
        f"How to get it: {spec.how_to_get}"
    )
    if spec.downloads is not None and not download:
        target = Path(data_dir).expanduser() if data_dir is not None else None
        message += f"\nA download saves them in {target or default_download_dir(spec.name)}."
    raise DatasetError(message)


def _what_is_there(path: Path) -> str:
    """``a file, not a folder``, ``empty``, or ``it holds a.txt, b.bin`` for a message."""
    if not path.is_dir():
        return "a file, not a folder" if path.exists() else "absent"
    names = sorted(p.name for p in path.iterdir())
    if not names:
        return "empty"
    shown = ", ".join(names[:MAX_LISTED])
    more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return f"it holds {shown}{more}"


def _check_contents(
    spec: DatasetSpec,
    source: Path,
    images: np.ndarray,
    labels: np.ndarray | None,
    num_classes: int | None,
) -> None:
    if spec.image_shape is not None and images.shape[1:] != spec.image_shape:
        raise DatasetError(
            f"{source}: {spec.name} images are {spec.image_shape} (C, H, W), these are "
            f"{images.shape[1:]}"
        )
    if labels is not None and num_classes is not None and len(labels):
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise DatasetError(
                f"{source}: {spec.name} labels must be in 0..{num_classes - 1}, found {lo}..{hi}"
            )
