"""Where a dataset's files are looked for.

A ``data_dir`` the user gives is the only place looked in. Without one, the files are looked
for, in order, in ``$PIXELCNNPP_DATA/<name>/``, ``$PIXELCNNPP_DATA/``, the packaged system copy
``/usr/share/datasets/<name>/`` (see :data:`SYSTEM_DATA_DIRS`) and the download cache
``~/.cache/pixelcnnpp/<name>/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import DatasetError
from .spec import DatasetSpec, get_dataset_spec

__all__ = [
    "DATA_ENV",
    "SYSTEM_DATA_DIRS",
    "dataset_status",
    "default_data_dirs",
    "default_download_dir",
    "search_dirs",
]

DATA_ENV = "PIXELCNNPP_DATA"
# Where OS packages put datasets (``apt-get install dataset-fashion-mnist`` ->
# /usr/share/datasets/fashion-mnist); a list so tests and other systems can change it.
SYSTEM_DATA_DIRS: list[Path] = [Path("/usr/share/datasets")]


def default_data_dirs(name: str) -> list[Path]:
    """Where the files of ``name`` are looked for when no ``data_dir`` is given, in order."""
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


def search_dirs(spec: DatasetSpec, data_dir: str | os.PathLike | None) -> list[Path]:
    """The places looked in for ``spec``'s files: ``[data_dir]`` when one is given, else the
    defaults (none for a dataset that needs ``data_dir``)."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    if spec.data_dir_required:
        return []
    return list(dict.fromkeys(default_data_dirs(spec.name)))


def dataset_status(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Whether the train split of ``name`` is on disk, and where it was looked for.

    Returns ``dict(name, found, path, searched, how_to_get, problem)``: ``path`` is where the
    files were found (or the folder with a ``problem``, e.g. an incomplete set), ``searched``
    every place looked at, in order.
    """
    spec = get_dataset_spec(name)
    searched = search_dirs(spec, data_dir)
    path, problem = None, None
    for folder in searched:
        try:
            path = spec.format.locate(folder, "train")
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
