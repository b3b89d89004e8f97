"""What the toolkit knows about a dataset (:class:`DatasetSpec`) and the registry of them.

Installed packages add datasets through the entry-point group ``pixelcnnpp.datasets``: each
entry point names a :class:`DatasetSpec`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pixelcnnpp.registry import Registry

from .errors import DatasetError
from .formats import DataFormat, format_options, get_format

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "RemoteFile",
    "get_dataset_spec",
    "list_datasets",
    "register_dataset",
]


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
    ``reader`` parses the files: the name of a registered format (:func:`register_format`) or a
    format object. With ``data_dir_required`` the data is wherever ``data_dir`` points, nothing
    is searched. ``checksums`` adds SHA-256s of files beyond the downloads, by file name: a
    digest under ``name`` for a ``name.gz`` download is that of its decompressed contents, so a
    recompressed copy is recognised too.
    """

    name: str
    description: str
    image_shape: tuple[int, int, int] | None
    num_classes: int | None
    files: Mapping[str, tuple[str, ...]]
    downloads: Mapping[str, RemoteFile] | None
    how_to_get: str
    reader: str | DataFormat
    data_dir_required: bool = False
    checksums: Mapping[str, str] = field(default_factory=dict)

    def known_checksums(self) -> dict[str, str]:
        """File name -> SHA-256 of every file whose digest is known: downloads and
        ``checksums``."""
        published = {n: f.sha256 for n, f in (self.downloads or {}).items() if f.sha256}
        return {**published, **self.checksums}

    @property
    def splits(self) -> tuple[str, ...]:
        """The official splits, e.g. ``("train", "test")``."""
        return tuple(self.files)

    @property
    def format(self) -> DataFormat:
        """The format object that reads the files (``reader`` looked up if it is a name)."""
        return get_format(self.reader) if isinstance(self.reader, str) else self.reader

    @property
    def options(self) -> tuple[str, ...]:
        """The extra :func:`load_dataset` keywords its format takes (``image_size``, ...)."""
        return format_options(self.format)


SpecFactory = Callable[[], DatasetSpec]


def _check_spec(name: str, spec: object) -> None:
    if not isinstance(spec, DatasetSpec):
        raise ValueError(f"dataset {name!r} must be a DatasetSpec, got {type(spec).__name__}")
    if spec.name != name:
        raise ValueError(f"dataset {name!r}: its DatasetSpec is named {spec.name!r}")
    if not isinstance(spec.reader, (str, DataFormat)):
        raise ValueError(
            f"dataset {name!r}: reader must be a format name or an object with locate() and "
            f"read(), got {type(spec.reader).__name__}"
        )


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
