"""What an on-disk format is (:class:`DataFormat`), what it reads (:class:`ArraySplit`), and the
registry of formats that dataset specs name.

Axis key: N images, C channels, H height, W width.

A format knows two things: where a split's files sit inside a folder (``locate``) and how to
parse them (``read``). Extra keyword arguments of ``read`` (with defaults) are the format's
options: ``load_dataset(name, image_size=32)`` passes ``image_size`` on to the format of
``name`` and refuses it for formats whose ``read`` does not declare it.

>>> from pixelcnnpp.training.data import get_format, format_options
>>> format_options(get_format("image-folder"))
('image_size', 'channels')
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from pixelcnnpp.registry import Registry

from .errors import DatasetError

__all__ = [
    "FORMATS",
    "ArraySplit",
    "DataFormat",
    "format_options",
    "get_format",
    "list_formats",
    "register_format",
]


@dataclass
class ArraySplit:
    """One split as read from disk.

    ``images`` is ``uint8 [N, C, H, W]``, C-contiguous and writable; ``labels`` is
    ``int64 [N]`` or ``None`` when the format has none. ``source`` is the file or folder the
    split came from (what messages name); ``files`` every file the format opened, in order
    (it defaults to ``(source,)`` when ``source`` is a file). ``num_classes`` is set by formats
    that learn it from the data (image folders, arrays); ``bits`` is the bit depth of the
    stored values (8 for every published format).
    """

    images: np.ndarray
    labels: np.ndarray | None
    source: Path
    num_classes: int | None = None
    bits: int = 8
    files: tuple[Path, ...] = ()

    def __post_init__(self):
        if not self.files:
            if not Path(self.source).is_file():
                raise DatasetError(
                    f"{self.source}: the format read a folder without listing the files it "
                    "opened; a format reading a folder must pass ArraySplit(files=...)"
                )
            self.files = (Path(self.source),)
        self.files = tuple(Path(f) for f in self.files)


@runtime_checkable
class DataFormat(Protocol):
    """How one kind of dataset is laid out on disk and parsed."""

    def locate(self, folder: Path, split: str) -> Path | None:
        """The file or folder holding ``split`` under ``folder``, or ``None`` if it is not there.

        ``folder`` may also be a file (a user's ``data_dir``); a format that takes single files
        returns it, the others return ``None``. Raises :class:`DatasetError` for files that are
        there but incomplete.
        """
        ...

    def read(self, path: Path, split: str, **options: Any) -> ArraySplit:
        """Parse ``split`` from what :meth:`locate` returned."""
        ...


def _check_format(name: str, obj: object) -> None:
    if not isinstance(obj, DataFormat):
        raise ValueError(
            f"data format {name!r} must have locate(folder, split) and read(path, split) "
            f"methods, got {type(obj).__name__}"
        )


FORMATS = Registry("data format", check=_check_format)
"""Format name -> a :class:`DataFormat` instance; a :class:`DatasetSpec` names its reader here."""

F = TypeVar("F", bound=Callable[[], DataFormat])


def register_format(name: str, *, override: bool = False) -> Callable[[F], F]:
    """Decorator registering the :class:`DataFormat` the decorated callable returns.

    The callable is called once, with no arguments; a class with a no-argument constructor is
    such a callable, so the decorator goes on the class itself::

        @register_format("my-format")
        class MyFormat:
            def locate(self, folder, split): ...
            def read(self, path, split): ...

    A duplicate name is a ``ValueError`` unless ``override=True``.
    """

    def add(factory: F) -> F:
        FORMATS.register(name, factory(), override=override)
        return factory

    return add


def get_format(name: str) -> DataFormat:
    """The format registered as ``name``; unknown names list the known ones."""
    try:
        return FORMATS.get(name)
    except ValueError as error:
        raise DatasetError(str(error)) from None


def list_formats() -> list[str]:
    """Registered format names, sorted."""
    return FORMATS.names()


def format_options(data_format: DataFormat) -> tuple[str, ...]:
    """The options ``data_format.read`` takes: its keyword parameters after ``path, split``."""
    parameters = list(inspect.signature(data_format.read).parameters.values())[2:]
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in parameters if p.kind in keyword)
