"""Named image datasets: where their files are looked for, how they are fetched, and
:func:`load_dataset`, which returns a :class:`PixelDataset` of ``uint8`` pixels.

>>> from pixelcnnpp.training.datasets import load_dataset
>>> train = load_dataset("fashion-mnist", split="train", num_bits=8)  # doctest: +SKIP
>>> train.images.shape, train.images.dtype  # doctest: +SKIP
(torch.Size([55000, 1, 28, 28]), torch.uint8)

Files are looked for, in order, in ``data_dir``, ``$PIXELCNNPP_DATA/<name>/``,
``$PIXELCNNPP_DATA/``, the packaged system copy ``/usr/share/datasets/<name>/`` (see
:data:`SYSTEM_DATA_DIRS`) and the download cache ``~/.cache/pixelcnnpp/<name>/``.

Axis key: N images, C channels, H height, W width, B batch.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from pixelcnnpp.registry import Registry

from .data_formats import (
    CIFAR10,
    CIFAR100,
    ArrayFileFormat,
    DataFormat,
    DatasetError,
    DownsampledImageNetFormat,
    IdxFormat,
    ImageFolderFormat,
    SvhnFormat,
)
from .download import download_file

__all__ = [
    "DATASETS",
    "DATA_ENV",
    "SYSTEM_DATA_DIRS",
    "DatasetError",
    "DatasetSpec",
    "PixelDataset",
    "RemoteFile",
    "dataset_status",
    "default_data_dirs",
    "default_download_dir",
    "download_dataset",
    "get_dataset_spec",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "split_indices",
]

DATA_ENV = "PIXELCNNPP_DATA"
# Where OS packages put datasets (``apt-get install dataset-fashion-mnist`` ->
# /usr/share/datasets/fashion-mnist); a list so tests and other systems can change it.
SYSTEM_DATA_DIRS: list[Path] = [Path("/usr/share/datasets")]
MAX_SOURCE_BITS = 8  # images are held as uint8


@dataclass(frozen=True)
class RemoteFile:
    """Where one dataset file is published, with the SHA-256 and size it must have."""

    url: str
    sha256: str | None
    size: int | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the toolkit knows about one dataset.

    ``image_shape`` is ``(C, H, W)``, or ``None`` when it depends on the files (image folders,
    arrays). ``files`` maps each official split to the file names it needs, as published: what
    a download fetches and what a missing-files message asks for. ``downloads`` maps those names
    to their :class:`RemoteFile`, or is ``None`` when there is no public direct download.
    ``reader`` parses the files; ``options`` names the extra :func:`load_dataset` arguments it
    takes. With ``data_dir_required`` the data is wherever ``data_dir`` points, nothing is
    searched.
    """

    name: str
    description: str
    image_shape: tuple[int, int, int] | None
    num_classes: int | None
    files: Mapping[str, tuple[str, ...]]
    downloads: Mapping[str, RemoteFile] | None
    how_to_get: str
    reader: DataFormat
    options: frozenset[str] = frozenset()
    data_dir_required: bool = False

    @property
    def splits(self) -> tuple[str, ...]:
        """The official splits, e.g. ``("train", "test")``."""
        return tuple(self.files)


SpecFactory = Callable[[], DatasetSpec]


def _check_spec(name: str, spec: object) -> None:
    if not isinstance(spec, DatasetSpec):
        raise ValueError(f"dataset {name!r} must be a DatasetSpec, got {type(spec).__name__}")
    if spec.name != name:
        raise ValueError(f"dataset {name!r}: its DatasetSpec is named {spec.name!r}")


DATASETS = Registry("dataset", entry_point_group="pixelcnnpp.datasets", check=_check_spec)
"""Dataset name -> ``DatasetSpec``; installed packages add specs through the entry-point group
``pixelcnnpp.datasets`` (each entry point names a ``DatasetSpec``)."""


def register_dataset(name: str, *, override: bool = False) -> Callable[[SpecFactory], SpecFactory]:
    """Decorator registering the :class:`DatasetSpec` the decorated function returns.

    A duplicate name is a ``ValueError`` unless ``override=True``::

        @register_dataset("my-digits")
        def my_digits() -> DatasetSpec:
            return DatasetSpec(name="my-digits", ...)
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a dataset name must be a non-empty string, got {name!r}")

    def add(factory: SpecFactory) -> SpecFactory:
        spec = factory()
        if not isinstance(spec, DatasetSpec):
            raise ValueError(
                f"dataset {name!r}: {factory.__qualname__} must return a DatasetSpec, "
                f"got {type(spec).__name__}"
            )
        DATASETS.register(name, spec, override=override)
        return factory

    return add


def get_dataset_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` registered as ``name``; unknown names list the known ones."""
    try:
        return DATASETS.get(name)
    except ValueError as error:
        raise DatasetError(str(error)) from None


def list_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return DATASETS.names()


def default_data_dirs(name: str) -> list[Path]:
    """Where the files of ``name`` are looked for after ``data_dir``, in order."""
    dirs = []
    root = os.environ.get(DATA_ENV)
    if root:
        dirs += [Path(root).expanduser() / name, Path(root).expanduser()]
    dirs += [Path(system) / name for system in SYSTEM_DATA_DIRS]
    dirs.append(_cache_root() / name)
    return dirs


def default_download_dir(name: str) -> Path:
    """Where ``download=True`` saves ``name`` without a ``data_dir``: under ``$PIXELCNNPP_DATA``
    if set, else under ``~/.cache/pixelcnnpp`` (``$XDG_CACHE_HOME/pixelcnnpp``)."""
    root = os.environ.get(DATA_ENV)
    return Path(root).expanduser() / name if root else _cache_root() / name


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "pixelcnnpp"


def dataset_status(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Whether the train split of ``name`` is on disk, and where it was looked for.

    Returns ``dict(name, found, path, searched, how_to_get, problem)``: ``path`` is where the
    files were found (or the folder with a ``problem``, e.g. an incomplete set), ``searched``
    every place looked at, in order.
    """
    spec = get_dataset_spec(name)
    searched = [] if spec.data_dir_required and data_dir is None else _search_dirs(spec, data_dir)
    path, problem = None, None
    for folder in searched:
        try:
            path = spec.reader.locate(folder, "train")
        except DatasetError as error:
            path, problem = folder, str(error)
        if path is not None:
            break
    return dict(
        name=name,
        found=path is not None and problem is None,
        path=None if path is None else str(path),
        searched=[str(folder) for folder in searched],
        how_to_get=spec.how_to_get,
        problem=problem,
    )


def download_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    splits: Iterable[str] = ("train", "test"),
    progress: Callable[[str, int, int | None], None] | None = None,
) -> Path:
    """Fetch the official files of ``splits`` into ``data_dir`` and return that folder.

    The folder defaults to :func:`default_download_dir`. Files already there are kept; each new
    one is checked against its published SHA-256 before it is put in place.
    ``progress(file_name, bytes_done, bytes_total)`` reports each file as it arrives.
    """
    spec = get_dataset_spec(name)
    if spec.downloads is None:
        raise DatasetError(f"{name} has no public direct download. {spec.how_to_get}")
    target = Path(data_dir).expanduser() if data_dir is not None else default_download_dir(name)
    names: dict[str, None] = {}
    for split in splits:
        if split not in spec.files:
            raise DatasetError(
                f"{name} has no split {split!r} to download; its splits are "
                f"{', '.join(spec.splits)}"
            )
        names.update(dict.fromkeys(spec.files[split]))
    for file_name in names:
        destination = target / file_name
        if destination.is_file():
            continue
        remote = spec.downloads.get(file_name)
        if remote is None or remote.sha256 is None:
            where = f"from {remote.url} " if remote is not None else ""
            raise DatasetError(
                f"{name}: no published SHA-256 for {file_name}, so it is not downloaded "
                f"unverified; fetch it {where}into {target} yourself"
            )
        report = None if progress is None else functools.partial(progress, file_name)
        download_file(remote.url, destination, remote.sha256, remote.size, progress=report)
    return target


class PixelDataset(Dataset):
    """Integer images of one split, held in memory as one contiguous ``uint8`` tensor.

    ``images`` is ``uint8 [N, C, H, W]`` with values in ``[0, 2**num_bits - 1]``; ``labels``
    is ``long [N]`` or ``None``. ``ds[i]`` is ``(image [C, H, W], label)``, the label ``-1``
    when there are none. A training loop indexes ``ds.images[indices]`` or calls
    :meth:`batch`.
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
    ):
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            found = (
                f"{images.dtype} {tuple(images.shape)}"
                if isinstance(images, torch.Tensor)
                else type(images).__name__
            )
            raise DatasetError(f"images must be a uint8 tensor [N, C, H, W], got {found}")
        _check_int("num_bits", num_bits, 1, MAX_SOURCE_BITS)
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
            found = (
                f"{labels.dtype} {tuple(labels.shape)}"
                if isinstance(labels, torch.Tensor)
                else type(labels).__name__
            )
            raise DatasetError(f"labels must be a long tensor [{len(images)}] or None, got {found}")
        self.images = images.contiguous()
        self.labels = labels
        self.num_bits = num_bits
        self.num_classes = num_classes
        self.name = name
        self.split = split
        self.source = None if source is None else Path(source)

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

    def __repr__(self) -> str:
        return (
            f"PixelDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"image_shape={self.image_shape}, num_bits={self.num_bits}, "
            f"num_classes={self.num_classes})"
        )


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
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    layout: str | None = None,
    source_bits: int | None = None,
) -> PixelDataset:
    """Read one split of a registered dataset into memory as integer pixels.

    - ``split``: ``"train"``, ``"validation"`` or ``"test"`` (SVHN also ``"extra"``).
      ``"validation"`` is ``validation_size`` images carved from the official train split at
      random with ``seed``; ``"train"`` is then the rest. ``validation_size=0`` carves nothing.
    - ``data_dir``: looked in first (see the module docstring for the rest); for
      ``image-folder`` and ``npz`` it is the data itself: a folder, or a ``.npz``/``.npy`` file.
    - ``download``: when nothing is found, fetch the official files (SHA-256 verified) into
      ``data_dir`` or :func:`default_download_dir`.
    - ``num_bits``: keep the top bits, ``x >> (source_bits - num_bits)`` (floor, as Glow/VDVAE).
    - ``subset``: keep the first ``subset`` images of the split (after carving; all of them
      when the split is smaller), for quick runs.
    - ``image_size`` (int or ``(H, W)``), ``channels`` (1 or 3): image folders only.
    - ``layout`` (``"NCHW"``/``"NHWC"``), ``source_bits`` (bit depth of the stored values,
      default 8): arrays only.

    Returns a :class:`PixelDataset` with ``images`` ``uint8 [N, C, H, W]``. Raises
    :class:`DatasetError` naming the file or folder and what was expected.
    """
    spec = get_dataset_spec(name)
    splits = ("train", "validation", *(s for s in spec.splits if s != "train"))
    if split not in splits:
        raise DatasetError(f"{name}: split must be one of {', '.join(splits)}, got {split!r}")
    _check_int("num_bits", num_bits, 1, MAX_SOURCE_BITS)
    _check_int("validation_size", validation_size, 0)
    _check_int("seed", seed, 0)
    if subset is not None:
        _check_int("subset", subset, 1)
    if split == "validation" and validation_size == 0:
        raise DatasetError("split='validation' needs validation_size > 0, got validation_size=0")
    options = {
        key: value
        for key, value in dict(
            image_size=image_size, channels=channels, layout=layout, source_bits=source_bits
        ).items()
        if value is not None
    }
    for key in options:
        if key not in spec.options:
            takers = [n for n in list_datasets() if key in DATASETS.get(n).options]
            raise DatasetError(f"{key} applies only to {', '.join(takers)}, not to {name}")
    if source_bits is not None:
        _check_int("source_bits", source_bits, 1, MAX_SOURCE_BITS)

    source_split = "train" if split == "validation" else split
    location = _find(spec, source_split, data_dir, download)
    raw = spec.reader.read(location, source_split, **options)
    images, labels = raw.images, raw.labels
    num_classes = spec.num_classes if spec.num_classes is not None else raw.num_classes
    _check_contents(spec, raw.source, images, labels, num_classes)
    if num_bits > raw.bits:
        raise DatasetError(
            f"num_bits={num_bits} exceeds the {raw.bits}-bit pixels of {name} ({raw.source})"
        )

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
    )


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or value < lo or (hi is not None and value > hi):
        expected = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
        raise DatasetError(f"{name} must be an integer {expected}, got {value!r}")


def _search_dirs(spec: DatasetSpec, data_dir: str | os.PathLike | None) -> list[Path]:
    given = [] if data_dir is None else [Path(data_dir).expanduser()]
    if spec.data_dir_required:
        return given
    return list(dict.fromkeys([*given, *default_data_dirs(spec.name)]))


def _find(
    spec: DatasetSpec, split: str, data_dir: str | os.PathLike | None, download: bool
) -> Path:
    if spec.data_dir_required and data_dir is None:
        raise DatasetError(f"{spec.name} needs data_dir: {spec.how_to_get}")
    if data_dir is not None and not download and not Path(data_dir).expanduser().exists():
        raise DatasetError(f"{spec.name}: data_dir {data_dir} does not exist")
    searched = _search_dirs(spec, data_dir)
    for folder in searched:
        location = spec.reader.locate(folder, split)
        if location is not None:
            return location
    if download:
        target = download_dataset(spec.name, data_dir, splits=(split,))
        location = spec.reader.locate(target, split)
        if location is not None:
            return location
    wanted = ", ".join(spec.files.get(split, ())) or "its files"
    places = "".join(f"\n  {folder}" for folder in searched)
    message = (
        f"{spec.name}: no {split} split found. Looked for {wanted} in:{places}\n"
        f"How to get it: {spec.how_to_get}"
    )
    if spec.downloads is not None and not download:
        target = Path(data_dir).expanduser() if data_dir is not None else None
        message += f"\nA download saves them in {target or default_download_dir(spec.name)}."
    raise DatasetError(message)


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


# Built-in datasets. Every SHA-256 below is of the file at its official address, copied from
# where it was published (named above each table); sizes in bytes from the same places.


def _idx_files() -> dict[str, tuple[str, ...]]:
    return {
        "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    }


def _remote(base_url: str, table: Mapping[str, tuple[str, int]]) -> dict[str, RemoteFile]:
    return {
        name: RemoteFile(base_url + name, sha256, size) for name, (sha256, size) in table.items()
    }


FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# TensorFlow Datasets, tensorflow_datasets/url_checksums/fashion_mnist.txt (URL, size, SHA-256);
# the same digests are in torchvision's prototype datasets (_builtin/mnist.py, FashionMNIST).
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": (
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        26421880,
    ),
    "train-labels-idx1-ubyte.gz": (
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        29515,
    ),
    "t10k-images-idx3-ubyte.gz": (
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        4422102,
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        5148,
    ),
}

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
# torchvision's prototype datasets (_builtin/mnist.py, MNIST._CHECKSUMS, which serves these
# files from yann.lecun.com and this mirror alike) and TensorFlow Datasets'
# url_checksums/mnist.txt (same digests for its own mirror; sizes from there).
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        9912422,
    ),
    "train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        28881,
    ),
    "t10k-images-idx3-ubyte.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        1648877,
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        4542,
    ),
}

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"
# Keras (keras/datasets/cifar10.py and cifar100.py, get_file(file_hash=...)) and torchvision's
# prototype datasets (_builtin/cifar.py, Cifar10 / Cifar100 resources) publish these SHA-256s.
CIFAR10_FILES = {
    "cifar-10-python.tar.gz": (
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        170498071,
    ),
}
CIFAR100_FILES = {
    "cifar-100-python.tar.gz": (
        "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
        169001437,
    ),
}

SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
# TensorFlow Datasets, url_checksums/svhn_cropped.txt (URL, size, SHA-256); the same digests
# are in torchvision's prototype datasets (_builtin/svhn.py, SVHN._CHECKSUMS).
SVHN_FILES = {
    "train_32x32.mat": (
        "435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8",
        182040794,
    ),
    "test_32x32.mat": (
        "cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b",
        64275384,
    ),
    "extra_32x32.mat": (
        "a133a4beb38a00fcdda90c9489e0c04f900b660ce8a316a5e854838379a71eb3",
        1329278602,
    ),
}

_DOWNLOAD_HINT = "load with download=True (CLI: --download) to fetch"


@register_dataset("fashion-mnist")
def _fashion_mnist() -> DatasetSpec:
    return DatasetSpec(
        name="fashion-mnist",
        description="Zalando article images, 28x28 grayscale, 10 classes, 60k train / 10k test",
        image_shape=(1, 28, 28),
        num_classes=10,
        files=_idx_files(),
        downloads=_remote(FASHION_MNIST_URL, FASHION_MNIST_FILES),
        how_to_get=(
            "`sudo apt-get install dataset-fashion-mnist` installs the four IDX .gz files in "
            f"/usr/share/datasets/fashion-mnist, where they are found with no download; or "
            f"{_DOWNLOAD_HINT} them from {FASHION_MNIST_URL}"
        ),
        reader=IdxFormat(),
    )


@register_dataset("mnist")
def _mnist() -> DatasetSpec:
    return DatasetSpec(
        name="mnist",
        description="Handwritten digits, 28x28 grayscale, 10 classes, 60k train / 10k test",
        image_shape=(1, 28, 28),
        num_classes=10,
        files=_idx_files(),
        downloads=_remote(MNIST_URL, MNIST_FILES),
        how_to_get=(
            f"{_DOWNLOAD_HINT} the four IDX .gz files from {MNIST_URL} (a mirror of "
            "http://yann.lecun.com/exdb/mnist/), or put them in data_dir"
        ),
        reader=IdxFormat(),
    )


@register_dataset("cifar10")
def _cifar10() -> DatasetSpec:
    return DatasetSpec(
        name="cifar10",
        description="Tiny natural images, 32x32 RGB, 10 classes, 50k train / 10k test",
        image_shape=(3, 32, 32),
        num_classes=10,
        files={"train": (CIFAR10.archive,), "test": (CIFAR10.archive,)},
        downloads=_remote(CIFAR_URL, CIFAR10_FILES),
        how_to_get=(
            f"{_DOWNLOAD_HINT} {CIFAR_URL}{CIFAR10.archive} (163 MB), or put that file or "
            f"the {CIFAR10.folder}/ folder it unpacks to in data_dir"
        ),
        reader=CIFAR10,
    )


@register_dataset("cifar100")
def _cifar100() -> DatasetSpec:
    return DatasetSpec(
        name="cifar100",
        description="Tiny natural images, 32x32 RGB, 100 fine classes, 50k train / 10k test",
        image_shape=(3, 32, 32),
        num_classes=100,
        files={"train": (CIFAR100.archive,), "test": (CIFAR100.archive,)},
        downloads=_remote(CIFAR_URL, CIFAR100_FILES),
        how_to_get=(
            f"{_DOWNLOAD_HINT} {CIFAR_URL}{CIFAR100.archive} (161 MB), or put that file or "
            f"the {CIFAR100.folder}/ folder it unpacks to in data_dir"
        ),
        reader=CIFAR100,
    )


@register_dataset("svhn")
def _svhn() -> DatasetSpec:
    return DatasetSpec(
        name="svhn",
        description="Street View House Numbers, cropped digits, 32x32 RGB, 10 classes, "
        "73k train / 26k test / 531k extra",
        image_shape=(3, 32, 32),
        num_classes=10,
        files={
            "train": ("train_32x32.mat",),
            "test": ("test_32x32.mat",),
            "extra": ("extra_32x32.mat",),
        },
        downloads=_remote(SVHN_URL, SVHN_FILES),
        how_to_get=(
            f"{_DOWNLOAD_HINT} train_32x32.mat and test_32x32.mat (extra_32x32.mat for "
            f"split='extra') from {SVHN_URL}"
        ),
        reader=SvhnFormat(),
    )


def _downsampled_imagenet(size: int, zips: str) -> DatasetSpec:
    reader = DownsampledImageNetFormat(size)
    return DatasetSpec(
        name=f"imagenet{size}",
        description=f"Downsampled ImageNet (Chrabaszcz et al. 2017), {size}x{size} RGB, "
        "1000 classes, 1.28M train / 50k validation (used as test)",
        image_shape=(3, size, size),
        num_classes=1000,
        files={"train": reader.file_names("train"), "test": reader.file_names("test")},
        downloads=None,
        how_to_get=(
            "no direct download: log in at https://image-net.org/download-images.php, get "
            f"'Downsampled ImageNet {size}x{size}' ({zips}; see "
            "https://patrykchrabaszcz.github.io/Imagenet32/) and unzip them into data_dir or "
            f"$PIXELCNNPP_DATA/imagenet{size}"
        ),
        reader=reader,
    )


@register_dataset("imagenet32")
def _imagenet32() -> DatasetSpec:
    return _downsampled_imagenet(32, "Imagenet32_train_npz.zip, Imagenet32_val_npz.zip")


@register_dataset("imagenet64")
def _imagenet64() -> DatasetSpec:
    return _downsampled_imagenet(
        64,
        "Imagenet64_train_part1_npz.zip, Imagenet64_train_part2_npz.zip, Imagenet64_val_npz.zip",
    )


@register_dataset("image-folder")
def _image_folder() -> DatasetSpec:
    return DatasetSpec(
        name="image-folder",
        description="Your own folder of PNG/JPEG images (class subfolders give labels)",
        image_shape=None,
        num_classes=None,
        files={"train": (), "test": ()},
        downloads=None,
        how_to_get=(
            "pass data_dir=<folder of PNG/JPEG images>; class subfolders give labels, "
            "train/ and test/ subfolders give the two splits"
        ),
        reader=ImageFolderFormat(),
        options=frozenset({"image_size", "channels"}),
        data_dir_required=True,
    )


@register_dataset("npz")
def _npz() -> DatasetSpec:
    return DatasetSpec(
        name="npz",
        description="Your own arrays: a .npz/.npy file, or a folder with train.npz and test.npz",
        image_shape=None,
        num_classes=None,
        files={"train": ("train.npz",), "test": ("test.npz",)},
        downloads=None,
        how_to_get=(
            "pass data_dir=<.npz or .npy file> (images under 'images', 'x' or 'data', labels "
            "under 'labels' or 'y'), or a folder holding train.npz and test.npz"
        ),
        reader=ArrayFileFormat(),
        options=frozenset({"layout", "source_bits"}),
        data_dir_required=True,
    )
