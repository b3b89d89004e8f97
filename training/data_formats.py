"""On-disk formats of image datasets, each read into one ``uint8`` array ``[N, C, H, W]``.

Axis key: N images, C channels, H height, W width, S side of a square image.

A format knows two things: where a split's files sit inside a folder (``locate``) and how to
parse them (``read``). Each parses its publisher's layout exactly: IDX (MNIST, Fashion-MNIST),
the CIFAR python pickles, SVHN's ``.mat`` files, downsampled ImageNet's ``.npz`` batches,
folders of PNG/JPEG images, and plain ``.npz``/``.npy`` arrays. Any problem with a file raises
:class:`DatasetError` naming the file and what was expected.
"""

from __future__ import annotations

import codecs
import gzip
import pickle
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

import numpy as np
import scipy.io
from einops import rearrange
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Lanczos for resizing image folders: Pillow filters over the whole source footprint when
# downsampling (antialiased), and Lanczos keeps the most detail of the filters it offers.
RESAMPLE = Image.Resampling.LANCZOS


class DatasetError(ValueError):
    """A dataset could not be found, downloaded or read; the message names the file and why."""


@dataclass
class ArraySplit:
    """One split as read from disk.

    ``images`` is ``uint8 [N, C, H, W]``, C-contiguous and writable; ``labels`` is
    ``int64 [N]`` or ``None`` when the format has none. ``num_classes`` is set by formats that
    learn it from the data (image folders, arrays); ``bits`` is the bit depth of the stored
    values (8 for every published format).
    """

    images: np.ndarray
    labels: np.ndarray | None
    source: Path
    num_classes: int | None = None
    bits: int = 8


class DataFormat(Protocol):
    """How one kind of dataset is laid out on disk and parsed."""

    def locate(self, folder: Path, split: str) -> Path | None:
        """The file or folder holding ``split`` under ``folder``, or ``None`` if it is not there."""
        ...

    def read(self, path: Path, split: str, **options: Any) -> ArraySplit:
        """Parse ``split`` from what :meth:`locate` returned."""
        ...


# IDX: MNIST, Fashion-MNIST (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS" section).

_IDX_PREFIX = {"train": "train", "test": "t10k"}


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
            images=images[:, None], labels=labels.astype(np.int64), source=images_path
        )

    @staticmethod
    def _file(folder: Path, split: str, kind: str, ndim: int) -> Path | None:
        prefix = _IDX_PREFIX.get(split)
        if prefix is None:
            return None
        for stem in (f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"):
            for name in (f"{stem}.gz", stem):
                if (folder / name).is_file():
                    return folder / name
        return None


# CIFAR-10 / CIFAR-100, python version (https://www.cs.toronto.edu/~kriz/cifar.html).

# numpy's array pickles call ``_reconstruct``; take it from a pickle of an array rather than
# importing it from numpy.core (numpy 1) or numpy._core (numpy 2).
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_PICKLE_ALLOWED = {
    # Python 2's cPickle wrote the official CIFAR batches with these three.
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Batches re-pickled by Python 3 and numpy 2 name these as well.
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("_codecs", "encode"): codecs.encode,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, numbers, strings and numpy arrays; refuses every other global.

    A pickle can name any importable callable and call it while loading. Allowing only what
    numpy's array pickles need turns a malicious file into an error instead of running it.
    """

    def find_class(self, module: str, name: str) -> Any:
        allowed = _PICKLE_ALLOWED.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}; only numpy arrays may be rebuilt"
            )
        return allowed


def load_array_pickle(file: IO[bytes], source: str) -> Any:
    """Unpickle ``file`` (named ``source`` in errors) allowing numpy arrays and builtins only.

    Strings pickled by Python 2 come back as ``bytes`` (``encoding="bytes"``), as the CIFAR
    page's own loader does, so dict keys are ``b"data"``, ``b"labels"``.
    """
    try:
        return _ArrayUnpickler(file, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise DatasetError(f"{source}: not a readable pickle of numpy arrays ({error})") from error
    except (OSError, zlib.error) as error:
        raise DatasetError(f"{source}: cannot read it ({error})") from error


@dataclass(frozen=True)
class CifarFormat:
    """The official ``cifar-*-python.tar.gz`` or the folder it unpacks to.

    Each batch is a pickled dict: ``data`` ``uint8 [N, 3072]``, each row the red, green and
    blue 32x32 planes in row-major order, and the labels as a list under ``label_key``.
    The archive's members are read straight from the tar, nothing is unpacked to disk.
    """

    archive: str
    folder: str
    members: dict[str, tuple[str, ...]]
    label_key: str

    def locate(self, folder: Path, split: str) -> Path | None:
        names = self.members.get(split)
        if names is None:
            return None
        for candidate in (folder / self.folder, folder):
            if all((candidate / name).is_file() for name in names):
                return candidate
        archive = folder / self.archive
        return archive if archive.is_file() else None

    def read(self, path: Path, split: str) -> ArraySplit:
        batches = dict(self._batches(path, split))
        images, labels = [], []
        for name in self.members[split]:
            source = path / name if path.is_dir() else f"{path}:{self.folder}/{name}"
            data, batch_labels = self._parse_batch(batches[name], str(source))
            images.append(data)
            labels.append(batch_labels)
        images_array = rearrange(np.concatenate(images), "n (c h w) -> n c h w", c=3, h=32, w=32)
        return ArraySplit(
            images=np.ascontiguousarray(images_array),
            labels=np.concatenate(labels),
            source=path,
        )

    def _batches(self, path: Path, split: str) -> Iterator[tuple[str, Any]]:
        names = self.members[split]
        if path.is_dir():
            for name in names:
                with open(path / name, "rb") as f:
                    yield name, load_array_pickle(f, str(path / name))
            return
        wanted = {f"{self.folder}/{name}": name for name in names}
        found = set()
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:
                    name = wanted.get(str(PurePosixPath(member.name)))
                    if name is None or not member.isfile():
                        continue
                    file = tar.extractfile(member)
                    if file is None:
                        continue
                    found.add(name)
                    yield name, load_array_pickle(file, f"{path}:{member.name}")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
            raise DatasetError(f"{path}: not a readable tar.gz archive ({error})") from error
        missing = [member for member, name in wanted.items() if name not in found]
        if missing:
            raise DatasetError(
                f"{path}: the archive lacks {', '.join(missing)}; expected the official "
                f"{self.archive}"
            )

    def _parse_batch(self, batch: Any, source: str) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(batch, dict):
            raise DatasetError(f"{source}: expected a pickled dict, found {type(batch).__name__}")
        # Python 2's strings load as bytes; copies re-pickled by Python 3 have str keys.
        batch = {(k.decode("latin-1") if isinstance(k, bytes) else k): v for k, v in batch.items()}
        data, labels = batch.get("data"), batch.get(self.label_key)
        if (
            not isinstance(data, np.ndarray)
            or data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != 3072
        ):
            found = (
                f"{data.dtype} {data.shape}"
                if isinstance(data, np.ndarray)
                else type(data).__name__
            )
            raise DatasetError(f"{source}: expected 'data' as uint8 [N, 3072], found {found}")
        if labels is None or len(labels) != len(data):
            found = "none" if labels is None else f"{len(labels)}"
            raise DatasetError(
                f"{source}: expected {len(data)} labels under {self.label_key!r}, found {found}"
            )
        return data, np.asarray(labels, dtype=np.int64)


CIFAR10 = CifarFormat(
    archive="cifar-10-python.tar.gz",
    folder="cifar-10-batches-py",
    members={
        "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test": ("test_batch",),
    },
    label_key="labels",
)
CIFAR100 = CifarFormat(
    archive="cifar-100-python.tar.gz",
    folder="cifar-100-python",
    members={"train": ("train",), "test": ("test",)},
    label_key="fine_labels",
)


# SVHN cropped digits (http://ufldl.stanford.edu/housenumbers/, "Format 2").


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


# Downsampled ImageNet (Chrabaszcz, Loshchilov, Hutter 2017; https://image-net.org, login).


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
        return ArraySplit(images=images, labels=labels - 1, source=path)

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


# Folders of PNG / JPEG images.


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
        return ArraySplit(images=images, labels=labels, source=path, num_classes=num_classes)


def _check_image_size(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) for s in size):
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


# Plain arrays: .npz / .npy.

ARRAY_IMAGE_KEYS = ("images", "x", "data")
ARRAY_LABEL_KEYS = ("labels", "y")
LAYOUTS = ("NCHW", "NHWC")


class ArrayFileFormat:
    """An ``.npz``/``.npy`` file, or a folder with ``train.npz`` and ``test.npz`` (or ``.npy``).

    Images come from the first of the keys ``images``, ``x``, ``data`` that exists, labels from
    ``labels`` or ``y`` (``.npy`` files hold images only). Accepted shapes: ``[N, H, W]``
    (one channel), ``[N, C, H, W]`` and ``[N, H, W, C]``. Without an explicit ``layout`` the
    channel axis is the one of size 1 or 3: NHWC when only the last axis is, NCHW when only
    axis 1 is; anything else needs ``layout`` (which accepts any channel count). Labels may be
    ``[N]`` or ``[N, 1]``; ``num_classes`` is the largest label plus one. Values must be integers (floats holding whole
    numbers pass) in ``[0, 2**source_bits - 1]``. A single file has no test split.
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
