"""Fetch a dataset's published files over HTTP(S) (or ``file://``), verify each one's SHA-256,
and only then put it in place.

The bytes go to a temporary file beside the destination while their digest is computed; a
file whose size or digest is wrong is deleted, a good one is renamed onto the destination.
So the destination is either absent or the verified file, never half written.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import DatasetError
from .locations import default_download_dir
from .spec import get_dataset_spec

__all__ = ["download_dataset", "download_file"]

CHUNK_SIZE = 1 << 20
USER_AGENT = "pixelcnnpp-downloader"
Progress = Callable[[int, int | None], None]


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


def download_file(
    url: str,
    destination: str | os.PathLike,
    sha256: str,
    expected_size: int | None = None,
    progress: Progress | None = None,
    *,
    attempts: int = 2,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``destination`` if its SHA-256 is ``sha256``; return the path.

    ``progress(bytes_done, bytes_total)`` is called as bytes arrive (``bytes_total`` from the
    server's Content-Length, else ``expected_size``, else ``None``). Network errors and server
    errors (5xx) are retried, ``attempts`` tries in all; a wrong size or digest is not. Raises
    :class:`DatasetError` naming the URL and what went wrong; nothing is left behind then.
    """
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise DatasetError(f"sha256 must be 64 hexadecimal digits, got {sha256!r} (for {url})")
    destination = Path(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatasetError(f"cannot create the folder {destination.parent}: {error}") from error
    last_error: Exception | None = None
    for _ in range(attempts):
        try:
            return _fetch(url, destination, sha256.lower(), expected_size, progress, timeout)
        except urllib.error.HTTPError as error:
            if error.code < 500:
                raise DatasetError(
                    f"downloading {url} failed: HTTP {error.code} {error.reason}"
                ) from error
            last_error = error
        except (
            urllib.error.URLError,
            http.client.HTTPException,
            ConnectionError,
            TimeoutError,
        ) as error:
            last_error = error
        except OSError as error:
            raise DatasetError(f"downloading {url} to {destination} failed: {error}") from error
    raise DatasetError(f"downloading {url} failed after {attempts} attempt(s): {last_error}")


def _fetch(
    url: str,
    destination: Path,
    sha256: str,
    expected_size: int | None,
    progress: Progress | None,
    timeout: float,
) -> Path:
    fd, temporary = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".part", dir=destination.parent
    )
    try:
        digest, done = hashlib.sha256(), 0
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(request, timeout=timeout) as response,
        ):
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else expected_size
            if progress is not None:
                progress(0, total)
            while chunk := response.read(CHUNK_SIZE):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        if expected_size is not None and done != expected_size:
            raise DatasetError(
                f"downloading {url} gave {done} bytes, expected {expected_size}; "
                "the file was discarded"
            )
        actual = digest.hexdigest()
        if actual != sha256:
            raise DatasetError(
                f"downloading {url}: SHA-256 mismatch, expected {sha256}, got {actual}; "
                "the file was discarded"
            )
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return destination
