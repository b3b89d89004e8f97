"""Which files a load read: a :class:`DataFile` record per file, with its size and whether its
SHA-256 matches the published one, and the one-line description commands print.

>>> from pathlib import Path
>>> files = [DataFile(Path("/data/fm/train-images-idx3-ubyte.gz"), 26421880, "matched"),
...          DataFile(Path("/data/fm/train-labels-idx1-ubyte.gz"), 29515, "matched")]
>>> describe_files(files)
'/data/fm: train-images-idx3-ubyte.gz (26.4 MB), train-labels-idx1-ubyte.gz (29.5 kB); SHA-256 matches the published digests'
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from .errors import DatasetError

__all__ = ["DataFile", "describe_files", "file_sha256", "record_files"]

Checksum = Literal["matched", "contents matched", "mismatched", "unknown"]
_CHECKSUMS: tuple[str, ...] = get_args(Checksum)
MAX_NAMED = 4  # more files than this are summarised as a count under their common folder


@dataclass(frozen=True)
class DataFile:
    """One file a dataset load read.

    ``path`` is where it was read, ``size`` its length in bytes. ``checksum`` says how it
    compares with the SHA-256 known for a file of that name:

    - ``"matched"``: the file is byte for byte the published one;
    - ``"contents matched"``: a ``.gz`` whose decompressed bytes are the published ones (a
      recompressed copy, as OS packages make: only the gzip header differs);
    - ``"mismatched"``: same name, other bytes (another version, or a damaged copy);
    - ``"unknown"``: no digest is known for it (own data, unpacked archives, ImageNet).
    """

    path: Path
    size: int
    checksum: Checksum

    def describe(self) -> str:
        """``/data/fm/t10k-labels-idx1-ubyte.gz (5.1 kB, SHA-256 matches the published one)``."""
        word = {
            "matched": "SHA-256 matches the published one",
            "contents matched": "its decompressed contents match the known SHA-256",
            "mismatched": "SHA-256 differs from the known one",
            "unknown": "no known SHA-256",
        }[self.checksum]
        return f"{self.path} ({_size(self.size)}, {word})"


def record_files(paths: Iterable[Path], known: Mapping[str, str | None]) -> tuple[DataFile, ...]:
    """A :class:`DataFile` per path (made absolute, so a record read later still points at the
    file). ``known`` maps file names to their SHA-256; for ``name.gz``, a digest under
    ``name`` is that of its decompressed contents. Digests are computed only for files with a
    known one."""
    return tuple(_record(path, known) for path in paths)


def _record(path: Path, known: Mapping[str, str | None]) -> DataFile:
    path = Path(path).absolute()
    try:
        stat = path.stat()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read it ({error})") from error
    whole = known.get(path.name)
    contents = known.get(path.name.removesuffix(".gz")) if path.name.endswith(".gz") else None
    checksum: Checksum = "unknown" if whole is None and contents is None else "mismatched"
    if whole is not None and file_sha256(path, stat.st_size, stat.st_mtime_ns) == whole.lower():
        checksum = "matched"
    elif contents is not None:
        digest = file_sha256(path, stat.st_size, stat.st_mtime_ns, decompress=True)
        checksum = "contents matched" if digest == contents.lower() else "mismatched"
    return DataFile(path, stat.st_size, checksum)


@functools.lru_cache(maxsize=64)
def file_sha256(path: Path, size: int, mtime_ns: int, decompress: bool = False) -> str:
    """The SHA-256 of ``path`` (of its gunzipped bytes with ``decompress``), hex; cached by
    ``(path, size, mtime_ns)``, so the splits of one dataset loaded in one process hash each
    file once. A file that does not decompress has the digest ``""``."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as raw, gzip.open(raw) if decompress else raw as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile):
        return ""
    except OSError as error:
        raise DatasetError(f"{path}: cannot read it ({error})") from error
    return digest.hexdigest()


def describe_files(files: Sequence[DataFile]) -> str:
    """One line naming the files read, their sizes and how their checksums compare.

    A few files are named one by one under their folder; more are counted (an image folder
    holds thousands): ``/data/pets: 1200 files (31.0 MB); no known SHA-256``.
    """
    if not files:
        return "no files"
    folder = Path(os.path.commonpath([f.path.parent for f in files]))
    if len(files) > MAX_NAMED:
        listed = f"{len(files)} files ({_size(sum(f.size for f in files))})"
    else:
        listed = ", ".join(
            f"{f.path.relative_to(folder).as_posix()} ({_size(f.size)})" for f in files
        )
    return f"{folder}: {listed}; {_checksums(files)}"


def _checksums(files: Sequence[DataFile]) -> str:
    names = {kind: [f.path.name for f in files if f.checksum == kind] for kind in _CHECKSUMS}
    if len(names["matched"]) == len(files):
        return "SHA-256 matches the published digests"
    if len(names["contents matched"]) == len(files):
        return "the decompressed contents match the known SHA-256 digests"
    if len(names["unknown"]) == len(files):
        return "no known SHA-256"
    phrases = {
        "mismatched": "SHA-256 DIFFERS from the known digest for {}",
        "matched": "matches for {}",
        "contents matched": "decompressed contents match for {}",
        "unknown": "none known for {}",
    }
    return "; ".join(
        phrase.format(_names(names[kind])) for kind, phrase in phrases.items() if names[kind]
    )


def _names(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= MAX_NAMED else f"{len(names)} files"


def _size(num_bytes: int) -> str:
    """Decimal units, as the publishers give them: ``26.4 MB``, ``512 B``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes} B"
