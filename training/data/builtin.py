"""The built-in datasets: what each is, where it is published, and the SHA-256 and size of
every published file. Data only; the code that reads it is in the other modules.

Every SHA-256 below is of the file at its official address, copied from where it was published
(named above each table); sizes in bytes from the same places. A dataset added here needs a
``@register_dataset`` function returning its :class:`DatasetSpec`; its ``reader`` names a
registered format (``list_formats()``).
"""

from __future__ import annotations

from collections.abc import Mapping

# The formats the specs below name, registered by importing their modules.
from . import arrays, cifar, idx, image_folder, imagenet, svhn  # noqa: F401
from .formats import get_format
from .spec import DatasetSpec, RemoteFile, register_dataset


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

# SHA-256 of the decompressed files, so that a recompressed copy is recognised: the Debian
# package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) recompressed the four files
# (gzip headers without the file name, each 24 bytes shorter), so only their contents can match.
# Zalando publishes MD5s of the .gz files only (github.com/zalandoresearch/fashion-mnist,
# "Get the Data"); these digests of their contents are the ones public loaders that check
# after gunzipping list, and what the Debian package's files decompress to.
FASHION_MNIST_CONTENTS = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
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
CIFAR10_ARCHIVE = get_format("cifar10").archive
CIFAR100_ARCHIVE = get_format("cifar100").archive
CIFAR10_FILES = {
    CIFAR10_ARCHIVE: (
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        170498071,
    ),
}
CIFAR100_FILES = {
    CIFAR100_ARCHIVE: (
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
        checksums=FASHION_MNIST_CONTENTS,
        how_to_get=(
            "`apt-get update && apt-get install dataset-fashion-mnist` (as root, or with sudo) "
            "installs the four IDX .gz files in "
            f"/usr/share/datasets/fashion-mnist, where they are found with no download; or "
            f"{_DOWNLOAD_HINT} them from {FASHION_MNIST_URL}"
        ),
        reader="idx",
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
        reader="idx",
    )


@register_dataset("cifar10")
def _cifar10() -> DatasetSpec:
    return DatasetSpec(
        name="cifar10",
        description="Tiny natural images, 32x32 RGB, 10 classes, 50k train / 10k test",
        image_shape=(3, 32, 32),
        num_classes=10,
        files={"train": (CIFAR10_ARCHIVE,), "test": (CIFAR10_ARCHIVE,)},
        downloads=_remote(CIFAR_URL, CIFAR10_FILES),
        how_to_get=(
            f"{_DOWNLOAD_HINT} {CIFAR_URL}{CIFAR10_ARCHIVE} (163 MB), or put that file or "
            f"the {get_format('cifar10').folder}/ folder it unpacks to in data_dir"
        ),
        reader="cifar10",
    )


@register_dataset("cifar100")
def _cifar100() -> DatasetSpec:
    return DatasetSpec(
        name="cifar100",
        description="Tiny natural images, 32x32 RGB, 100 fine classes, 50k train / 10k test",
        image_shape=(3, 32, 32),
        num_classes=100,
        files={"train": (CIFAR100_ARCHIVE,), "test": (CIFAR100_ARCHIVE,)},
        downloads=_remote(CIFAR_URL, CIFAR100_FILES),
        how_to_get=(
            f"{_DOWNLOAD_HINT} {CIFAR_URL}{CIFAR100_ARCHIVE} (161 MB), or put that file or "
            f"the {get_format('cifar100').folder}/ folder it unpacks to in data_dir"
        ),
        reader="cifar100",
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
        reader="svhn",
    )


def _downsampled_imagenet(size: int, zips: str) -> DatasetSpec:
    reader = get_format(f"imagenet{size}")
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
        reader=f"imagenet{size}",
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
        reader="image-folder",
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
        reader="arrays",
        data_dir_required=True,
    )
