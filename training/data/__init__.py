"""Image datasets: named specs, their on-disk formats, where files are looked for, downloads,
and :func:`load_dataset`, which returns a :class:`PixelDataset` of ``uint8`` pixels together
with the files it read.

>>> from pixelcnnpp.training.data import load_dataset
>>> test = load_dataset("fashion-mnist", split="test")  # doctest: +SKIP
>>> test.images.shape, test.images.dtype  # doctest: +SKIP
(torch.Size([10000, 1, 28, 28]), torch.uint8)
>>> test.describe_files()  # doctest: +SKIP
'fashion-mnist test: /usr/share/datasets/fashion-mnist: t10k-images-idx3-ubyte.gz (4.4 MB), ...'

The modules, one concept each:

- ``errors``: :class:`DatasetError`.
- ``formats``: the :class:`DataFormat` protocol, :class:`ArraySplit` and the format registry;
  one module per format: ``idx``, ``cifar``, ``svhn``, ``imagenet``, ``image_folder``,
  ``arrays``.
- ``spec``: :class:`DatasetSpec` and the dataset registry (entry points
  ``pixelcnnpp.datasets``); ``builtin``: the built-in specs (URLs, checksums).
- ``locations``: where files are looked for; ``download``: verified downloads.
- ``files``: :class:`DataFile`, the record of a file read; ``dataset``: :class:`PixelDataset`;
  ``load``: :func:`load_dataset`.

docs/datasets.md shows how to add a dataset and a format.
"""

from . import builtin  # noqa: F401  (registers the built-in formats and datasets)
from .dataset import PixelDataset
from .download import download_dataset, download_file
from .errors import DatasetError
from .files import DataFile, describe_files, record_files
from .formats import (
    FORMATS,
    ArraySplit,
    DataFormat,
    format_options,
    get_format,
    list_formats,
    register_format,
)
from .load import load_dataset, split_indices
from .locations import (
    DATA_ENV,
    SYSTEM_DATA_DIRS,
    dataset_status,
    default_data_dirs,
    default_download_dir,
)
from .spec import (
    DATASETS,
    DatasetSpec,
    RemoteFile,
    get_dataset_spec,
    list_datasets,
    register_dataset,
)

__all__ = [
    "DATASETS",
    "DATA_ENV",
    "FORMATS",
    "SYSTEM_DATA_DIRS",
    "ArraySplit",
    "DataFile",
    "DataFormat",
    "DatasetError",
    "DatasetSpec",
    "PixelDataset",
    "RemoteFile",
    "dataset_status",
    "default_data_dirs",
    "default_download_dir",
    "describe_files",
    "download_dataset",
    "download_file",
    "format_options",
    "get_dataset_spec",
    "get_format",
    "list_datasets",
    "list_formats",
    "load_dataset",
    "record_files",
    "register_dataset",
    "register_format",
    "split_indices",
]
