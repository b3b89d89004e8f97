"""CIFAR-10 / CIFAR-100, python version (https://www.cs.toronto.edu/~kriz/cifar.html).

Axis key: N images, C channels, H height, W width.
"""

from __future__ import annotations

import codecs
import pickle
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
from einops import rearrange

from .errors import DatasetError
from .formats import ArraySplit, register_format

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
            files=tuple(path / name for name in self.members[split]) if path.is_dir() else (),
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


@register_format("cifar10")
def cifar10() -> CifarFormat:
    """``cifar-10-python.tar.gz``: five training batches and one test batch, 10 classes."""
    return CifarFormat(
        archive="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        members={
            "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
            "test": ("test_batch",),
        },
        label_key="labels",
    )


@register_format("cifar100")
def cifar100() -> CifarFormat:
    """``cifar-100-python.tar.gz``: one train and one test pickle, labelled by fine class."""
    return CifarFormat(
        archive="cifar-100-python.tar.gz",
        folder="cifar-100-python",
        members={"train": ("train",), "test": ("test",)},
        label_key="fine_labels",
    )
