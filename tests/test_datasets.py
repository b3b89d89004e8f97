"""The dataset layer: every on-disk format is written in its published layout into tmp_path and
read back; search order, splits, bit depth, errors and verified downloads."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import inspect
import io
import os
import pickle
import re
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from pixelcnnpp.training import DATASETS
from pixelcnnpp.training.data import (
    ArraySplit,
    DataFile,
    DataFormat,
    DatasetError,
    DatasetSpec,
    PixelDataset,
    RemoteFile,
    dataset_status,
    default_data_dirs,
    describe_files,
    download_dataset,
    download_file,
    format_options,
    get_dataset_spec,
    get_format,
    list_datasets,
    list_formats,
    load_dataset,
    locations,
    record_files,
    register_dataset,
    register_format,
)
from pixelcnnpp.training.data.cifar import load_array_pickle

REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
BUILT_IN = [
    "cifar10",
    "cifar100",
    "fashion-mnist",
    "image-folder",
    "imagenet32",
    "imagenet64",
    "mnist",
    "npz",
    "svhn",
]


@pytest.fixture(autouse=True)
def isolated_locations(tmp_path, monkeypatch):
    """No test sees the real system copy, $PIXELCNNPP_DATA or ~/.cache unless it sets them."""
    monkeypatch.delenv("PIXELCNNPP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(locations, "SYSTEM_DATA_DIRS", [tmp_path / "system"])


def numbered_images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Random uint8 images whose first value is their index, so a row tells where it came from."""
    images = np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    images.reshape(n, -1)[:, 0] = np.arange(n)
    return images


# IDX (MNIST, Fashion-MNIST)


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x000008<ndim>, big-endian dims, C-order data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(
    folder: Path, split: str, images: np.ndarray, labels: np.ndarray, gz=True, dotted=False
) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "train" if split == "train" else "t10k"
    sep = "." if dotted else "-"
    paths = []
    for kind, ndim, array in (("images", 3, images), ("labels", 1, labels)):
        data = idx_bytes(array)
        name = f"{prefix}-{kind}{sep}idx{ndim}-ubyte" + (".gz" if gz else "")
        (folder / name).write_bytes(gzip.compress(data) if gz else data)
        paths.append(folder / name)
    return paths[0], paths[1]


def idx_dataset(folder: Path, n_train=12, n_test=5, **kwargs) -> dict[str, tuple]:
    rng = np.random.default_rng(1)
    arrays = {
        "train": (
            numbered_images(n_train, (28, 28)),
            rng.integers(0, 10, n_train).astype(np.uint8),
        ),
        "test": (
            numbered_images(n_test, (28, 28), 2),
            rng.integers(0, 10, n_test).astype(np.uint8),
        ),
    }
    for split, (images, labels) in arrays.items():
        write_idx(folder, split, images, labels, **kwargs)
    return arrays


def test_idx_gzipped_reads_pixels_labels_and_splits(tmp_path):
    arrays = idx_dataset(tmp_path / "fm")
    for split in ("train", "test"):
        ds = load_dataset("fashion-mnist", split, data_dir=tmp_path / "fm", validation_size=0)
        images, labels = arrays[split]
        assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.long
        assert ds.images.shape == (len(images), 1, 28, 28)
        assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
        assert torch.equal(ds.labels, torch.from_numpy(labels.astype(np.int64)))
        assert (ds.name, ds.split, ds.num_classes, ds.num_bits) == ("fashion-mnist", split, 10, 8)
        assert ds.image_shape == (1, 28, 28)
        assert len(ds) == len(images)
        image, label = ds[3]
        assert torch.equal(image, ds.images[3]) and label == int(labels[3])
    assert ds.source == tmp_path / "fm" / "t10k-images-idx3-ubyte.gz"


@pytest.mark.parametrize("gz, dotted", [(False, False), (False, True), (True, True)])
def test_idx_uncompressed_and_dotted_names(tmp_path, gz, dotted):
    arrays = idx_dataset(tmp_path, gz=gz, dotted=dotted)
    ds = load_dataset("mnist", "test", data_dir=tmp_path)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(arrays["test"][0]))
    assert torch.equal(ds.labels, torch.from_numpy(arrays["test"][1].astype(np.int64)))


def corrupt_idx(folder: Path, how: str) -> Path:
    images, labels = write_idx(
        folder, "train", numbered_images(4, (28, 28)), np.arange(4, dtype=np.uint8)
    )
    raw = idx_bytes(numbered_images(4, (28, 28)))
    if how == "bad magic":
        images.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + raw[4:]))
    elif how == "short data":
        images.write_bytes(gzip.compress(raw[:-10]))
    elif how == "truncated gzip":
        images.write_bytes(images.read_bytes()[:-40])
    elif how == "not gzip":
        images.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    elif how == "label count":
        labels.write_bytes(gzip.compress(idx_bytes(np.arange(3, dtype=np.uint8))))
        return labels
    return images


@pytest.mark.parametrize(
    "how, expected",
    [
        ("bad magic", "magic number 0x00000803, found 0x00000801"),
        ("short data", "truncated or corrupt"),
        ("truncated gzip", "gzip"),
        ("not gzip", "gzip"),
        ("label count", "3 labels for the 4 images"),
    ],
)
def test_idx_corrupt_files_name_the_file(tmp_path, how, expected):
    path = corrupt_idx(tmp_path, how)
    with pytest.raises(DatasetError) as error:
        load_dataset("mnist", data_dir=tmp_path, validation_size=0)
    assert str(path) in str(error.value)
    assert expected in str(error.value)


# CIFAR-10 / CIFAR-100 (python pickles)

RECONSTRUCT = np.empty(0).__reduce__()[0]


class Python2Pickler(pickle._Pickler):
    """Protocol-2 pickles as Python 2's cPickle wrote the official CIFAR batches: every string a
    byte string (SHORT_BINSTRING / BINSTRING) and numpy's reconstructor under numpy.core."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_byte_string(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_byte_string
    dispatch[bytes] = save_byte_string

    def save_global(self, obj, name=None):
        if obj is RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def python2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def cifar_rows(images_hwc: np.ndarray) -> np.ndarray:
    """[N, 32, 32, 3] -> [N, 3072]: the red plane row by row, then green, then blue."""
    planes = [images_hwc[..., c].reshape(len(images_hwc), -1) for c in range(3)]
    return np.concatenate(planes, axis=1)


CIFAR_LAYOUT = {
    "cifar10": (
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
        {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
        "labels",
        10,
    ),
    "cifar100": (
        "cifar-100-python",
        "cifar-100-python.tar.gz",
        {"train": ["train"], "test": ["test"]},
        "fine_labels",
        100,
    ),
}


def write_cifar(folder: Path, name: str, as_tar: bool, per_batch=3, pickler=python2_pickle):
    """The official files: pickled dicts in <folder>/cifar-*-*/ or in the official tar.gz."""
    subfolder, archive, members, label_key, num_classes = CIFAR_LAYOUT[name]
    rng = np.random.default_rng(3)
    members_bytes, expected = {"readme.html": b"<html></html>"}, {}
    for split, batch_names in members.items():
        images, labels = [], []
        for i, batch_name in enumerate(batch_names):
            hwc = rng.integers(0, 256, size=(per_batch, 32, 32, 3), dtype=np.uint8)
            batch_labels = [int(v) for v in rng.integers(0, num_classes, per_batch)]
            batch = {
                "batch_label": f"batch {i + 1}",
                label_key: batch_labels,
                "data": cifar_rows(hwc),
                "filenames": [f"img_{i}_{j}.png" for j in range(per_batch)],
            }
            if name == "cifar100":
                batch["coarse_labels"] = [v // 5 for v in batch_labels]
            members_bytes[batch_name] = pickler(batch)
            images.append(hwc.transpose(0, 3, 1, 2))
            labels += batch_labels
        expected[split] = (np.concatenate(images), np.array(labels))
    folder.mkdir(parents=True, exist_ok=True)
    if as_tar:
        with tarfile.open(folder / archive, "w:gz") as tar:
            directory = tarfile.TarInfo(subfolder)
            directory.type = tarfile.DIRTYPE
            tar.addfile(directory)
            for member, data in members_bytes.items():
                info = tarfile.TarInfo(f"{subfolder}/{member}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    else:
        (folder / subfolder).mkdir()
        for member, data in members_bytes.items():
            (folder / subfolder / member).write_bytes(data)
    return expected


@pytest.mark.parametrize("as_tar", [True, False], ids=["tar.gz", "extracted"])
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_reads_official_pickles(tmp_path, name, as_tar):
    expected = write_cifar(tmp_path, name, as_tar)
    for split in ("train", "test"):
        ds = load_dataset(name, split, data_dir=tmp_path, validation_size=0)
        images, labels = expected[split]
        assert ds.images.shape == (len(images), 3, 32, 32)
        assert torch.equal(ds.images, torch.from_numpy(images))
        assert torch.equal(ds.labels, torch.from_numpy(labels))
        assert ds.num_classes == CIFAR_LAYOUT[name][4]
    if as_tar:  # read in place, nothing unpacked
        assert os.listdir(tmp_path) == [CIFAR_LAYOUT[name][1]]


def test_cifar_test_pickles_are_python2_style(tmp_path):
    blob = python2_pickle({"data": np.zeros((1, 3072), np.uint8), "labels": [1]})
    assert b"numpy.core.multiarray\n_reconstruct" in blob
    assert b"_codecs" not in blob and b"X\x04\x00\x00\x00data" not in blob
    assert load_array_pickle(io.BytesIO(blob), "blob")[b"labels"] == [1]


def test_cifar_accepts_python3_pickles(tmp_path):
    expected = write_cifar(tmp_path, "cifar10", as_tar=False, pickler=pickle.dumps)
    ds = load_dataset("cifar10", "test", data_dir=tmp_path)
    assert torch.equal(ds.images, torch.from_numpy(expected["test"][0]))


def test_cifar_refuses_pickles_that_run_code(tmp_path):
    write_cifar(tmp_path, "cifar10", as_tar=False)
    payload = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.mkdir, (str(payload),))

    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(pickle.dumps({b"data": Exploit()}, protocol=2))
    with pytest.raises(DatasetError, match="only numpy arrays may be rebuilt") as error:
        load_dataset("cifar10", data_dir=tmp_path, validation_size=0)
    assert str(batch) in str(error.value)
    assert not payload.exists()


def test_cifar_corrupt_archive_and_truncated_batch(tmp_path):
    write_cifar(tmp_path / "a", "cifar10", as_tar=True)
    archive = tmp_path / "a" / "cifar-10-python.tar.gz"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DatasetError, match=re.escape("tar.gz")) as error:
        load_dataset("cifar10", "test", data_dir=tmp_path / "a")
    assert str(archive) in str(error.value)

    write_cifar(tmp_path / "b", "cifar100", as_tar=False)
    batch = tmp_path / "b" / "cifar-100-python" / "test"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(DatasetError, match="not a readable pickle") as error:
        load_dataset("cifar100", "test", data_dir=tmp_path / "b")
    assert str(batch) in str(error.value)


def test_cifar_archive_missing_a_member(tmp_path):
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        data = python2_pickle({"data": np.zeros((1, 3072), np.uint8), "labels": [0]})
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DatasetError, match="lacks cifar-10-batches-py/data_batch_2"):
        load_dataset("cifar10", data_dir=tmp_path, validation_size=0)


# SVHN (.mat)


@pytest.mark.parametrize("label_dtype", [np.uint8, np.float64])
def test_svhn_mat_layout_and_label_10_is_digit_0(tmp_path, label_dtype):
    rng = np.random.default_rng(4)
    expected = {}
    for split, n in (("train", 6), ("test", 4), ("extra", 3)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)  # [H, W, C, N]
        y = np.array([[10], [1], [9], [10], [5], [2]][:n], dtype=label_dtype)
        scipy.io.savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
        expected[split] = (x.transpose(3, 2, 0, 1), y[:, 0].astype(np.int64) % 10)
    for split in ("train", "test", "extra"):
        ds = load_dataset("svhn", split, data_dir=tmp_path, validation_size=0)
        assert torch.equal(ds.images, torch.from_numpy(expected[split][0]))
        assert torch.equal(ds.labels, torch.from_numpy(expected[split][1]))
    assert ds.labels.tolist() == [0, 1, 9]


def test_svhn_truncated_mat(tmp_path):
    path = tmp_path / "train_32x32.mat"
    scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 50), np.uint8), "y": np.ones((50, 1))})
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DatasetError, match="MATLAB") as error:
        load_dataset("svhn", data_dir=tmp_path, validation_size=0)
    assert str(path) in str(error.value)


# Downsampled ImageNet (.npz batches)


def write_imagenet(folder: Path, size: int, per_batch=2, unzipped=False) -> dict[str, tuple]:
    rng = np.random.default_rng(5)
    expected = {}
    names = {"train": [f"train_data_batch_{i}.npz" for i in range(1, 11)], "test": ["val_data.npz"]}
    for split, files in names.items():
        subfolder = folder / f"Imagenet{size}_{'train' if split == 'train' else 'val'}_npz"
        target = subfolder if unzipped else folder
        target.mkdir(parents=True, exist_ok=True)
        images, labels = [], []
        for k, name in enumerate(files):
            hwc = rng.integers(0, 256, size=(per_batch, size, size, 3), dtype=np.uint8)
            hwc[:, 0, 0, 0] = k  # which batch the image came from
            batch_labels = rng.integers(1, 1001, per_batch)
            batch_labels[0] = 1000 if k % 2 else 1
            data = np.concatenate([hwc[..., c].reshape(per_batch, -1) for c in range(3)], 1)
            np.savez(
                target / name, data=data, labels=list(batch_labels), mean=np.zeros(3 * size**2)
            )
            images.append(hwc.transpose(0, 3, 1, 2))
            labels.append(batch_labels - 1)
        expected[split] = (np.concatenate(images), np.concatenate(labels))
    return expected


@pytest.mark.parametrize("size, unzipped", [(32, False), (32, True), (64, False)])
def test_imagenet_npz_batches(tmp_path, size, unzipped):
    expected = write_imagenet(tmp_path, size, unzipped=unzipped)
    for split in ("train", "test"):
        ds = load_dataset(f"imagenet{size}", split, data_dir=tmp_path, validation_size=0)
        assert ds.images.shape == (len(expected[split][0]), 3, size, size)
        assert torch.equal(ds.images, torch.from_numpy(expected[split][0]))
        assert torch.equal(ds.labels, torch.from_numpy(expected[split][1]))
    train = load_dataset(f"imagenet{size}", data_dir=tmp_path, validation_size=0)
    assert train.images[:, 0, 0, 0].tolist() == [k for k in range(10) for _ in range(2)]
    assert train.labels.min() >= 0 and train.labels.max() == 999 and train.num_classes == 1000


def test_imagenet_incomplete_train_split_lists_missing_batches(tmp_path):
    write_imagenet(tmp_path, 32)
    (tmp_path / "train_data_batch_7.npz").unlink()
    with pytest.raises(DatasetError, match=re.escape("missing train_data_batch_7.npz")):
        load_dataset("imagenet32", data_dir=tmp_path, validation_size=0)
    status = dataset_status("imagenet32", data_dir=tmp_path)
    assert not status["found"] and "train_data_batch_7.npz" in status["problem"]


def test_imagenet_has_no_direct_download(tmp_path):
    with pytest.raises(DatasetError, match=re.escape("image-net.org")) as error:
        load_dataset("imagenet32", data_dir=tmp_path, download=True)
    assert "no public direct download" in str(error.value)


# Image folders (PNG / JPEG)


def save_image(path: Path, pixels: np.ndarray, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)


def test_image_folder_class_subfolders_give_labels(tmp_path):
    rng = np.random.default_rng(6)
    pictures = {
        f"{cls}/{i}.png": rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
        for cls, i in (("dog", 0), ("cat", 1), ("cat", 0), ("eel", 2))
    }
    for name, pixels in pictures.items():
        save_image(tmp_path / name, pixels)
    ds = load_dataset("image-folder", data_dir=tmp_path, validation_size=0)
    order = sorted(pictures)  # cat/0, cat/1, dog/0, eel/2
    assert ds.images.shape == (4, 3, 5, 7)
    for i, name in enumerate(order):
        assert torch.equal(ds.images[i], torch.from_numpy(pictures[name].transpose(2, 0, 1)))
    assert ds.labels.tolist() == [0, 0, 1, 2] and ds.num_classes == 3
    assert ds.source == tmp_path


def test_image_folder_without_classes_is_recursive_and_unlabelled(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    save_image(tmp_path / "z.png", gray)
    save_image(tmp_path / "a" / "deep" / "b.png", gray + 100)
    (tmp_path / "notes.txt").write_text("not an image")
    ds = load_dataset("image-folder", data_dir=tmp_path, validation_size=0)
    assert ds.labels is None and ds.num_classes is None
    assert ds.images.shape == (2, 1, 3, 4)
    assert torch.equal(ds.images[0, 0], torch.from_numpy(gray + 100))  # a/deep/b.png first
    assert ds[1][1] == -1
    rgb = load_dataset("image-folder", data_dir=tmp_path, validation_size=0, channels=3)
    assert rgb.images.shape == (2, 3, 3, 4)
    assert torch.equal(rgb.images[1], torch.from_numpy(np.stack([gray] * 3)))


def test_image_folder_rgba_drops_alpha_and_jpeg_reads(tmp_path):
    rgba = np.random.default_rng(7).integers(0, 256, (4, 4, 4), dtype=np.uint8)
    save_image(tmp_path / "a.png", rgba)
    save_image(tmp_path / "b.jpg", np.full((4, 4, 3), (200, 40, 90), np.uint8), quality=100)
    ds = load_dataset("image-folder", data_dir=tmp_path, validation_size=0)
    assert torch.equal(ds.images[0], torch.from_numpy(rgba[..., :3].transpose(2, 0, 1)))
    jpeg = ds.images[1].int()
    assert (jpeg - torch.tensor([200, 40, 90])[:, None, None]).abs().max() <= 3


def test_image_folder_resize_and_size_mismatch(tmp_path):
    save_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    save_image(tmp_path / "b.png", np.full((6, 10, 3), 255, np.uint8))
    with pytest.raises(DatasetError, match="6x10") as error:
        load_dataset("image-folder", data_dir=tmp_path, validation_size=0)
    assert str(tmp_path / "b.png") in str(error.value) and "image_size" in str(error.value)
    ds = load_dataset("image-folder", data_dir=tmp_path, validation_size=0, image_size=(4, 5))
    assert ds.images.shape == (2, 3, 4, 5)
    assert ds.images[0].max() == 0 and ds.images[1].min() == 255
    assert load_dataset(
        "image-folder", data_dir=tmp_path, validation_size=0, image_size=3
    ).images.shape == (2, 3, 3, 3)


def test_image_folder_splits(tmp_path):
    save_image(tmp_path / "flat" / "a.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(DatasetError, match="train/ and test/ subfolders"):
        load_dataset("image-folder", "test", data_dir=tmp_path / "flat")
    for split, value in (("train", 10), ("train", 11), ("test", 12)):
        save_image(tmp_path / "split" / split / f"{value}.png", np.full((2, 2), value, np.uint8))
    train = load_dataset("image-folder", data_dir=tmp_path / "split", validation_size=0)
    test = load_dataset("image-folder", "test", data_dir=tmp_path / "split")
    assert train.images.flatten().unique().tolist() == [10, 11]
    assert test.images.flatten().unique().tolist() == [12]


def test_image_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="needs data_dir"):
        load_dataset("image-folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        load_dataset("image-folder", data_dir=tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="not a readable image") as error:
        load_dataset("image-folder", data_dir=tmp_path / "bad", validation_size=0)
    assert str(tmp_path / "bad" / "x.png") in str(error.value)


# Arrays (.npz / .npy)


@pytest.mark.parametrize(
    "key, shape, to_nchw",
    [
        ("images", (5, 6, 7, 3), lambda a: a.transpose(0, 3, 1, 2)),
        ("x", (5, 3, 6, 7), lambda a: a),
        ("data", (5, 6, 7), lambda a: a[:, None]),
        ("images", (5, 6, 7, 1), lambda a: a.transpose(0, 3, 1, 2)),
    ],
)
def test_npz_layouts_and_keys(tmp_path, key, shape, to_nchw):
    images = np.random.default_rng(8).integers(0, 256, shape, dtype=np.uint8)
    labels = np.array([3, 0, 1, 1, 2])
    label_key = "y" if key == "x" else "labels"
    np.savez(tmp_path / "d.npz", **{key: images, label_key: labels})
    ds = load_dataset("npz", data_dir=tmp_path / "d.npz", validation_size=0)
    assert torch.equal(ds.images, torch.from_numpy(np.ascontiguousarray(to_nchw(images))))
    assert ds.labels.tolist() == labels.tolist() and ds.num_classes == 4
    assert ds.images.is_contiguous()


def test_npy_and_float_values_holding_integers(tmp_path):
    images = np.random.default_rng(9).integers(0, 256, (4, 3, 5, 5)).astype(np.float32)
    np.save(tmp_path / "d.npy", images)
    ds = load_dataset("npz", data_dir=tmp_path / "d.npy", validation_size=0)
    assert ds.labels is None and ds.images.dtype == torch.uint8
    assert torch.equal(ds.images, torch.from_numpy(images.astype(np.uint8)))


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.full((2, 4, 4), 300, np.int16), r"\[0, 255\] \(8-bit\); found values in \[300, 300\]"),
        (np.full((2, 4, 4), -1, np.int32), r"found values in \[-1, -1\]"),
        (np.full((2, 4, 4), 0.5), "non-integer"),
        (np.array([[["a"]]]), "must be integers, found dtype <U1"),
    ],
)
def test_npz_bad_values_name_file_and_range(tmp_path, array, expected):
    np.savez(tmp_path / "d.npz", images=array)
    with pytest.raises(DatasetError, match=expected) as error:
        load_dataset("npz", data_dir=tmp_path / "d.npz", validation_size=0)
    assert str(tmp_path / "d.npz") in str(error.value)


def test_npz_ambiguous_layout_needs_explicit_layout(tmp_path):
    images = np.random.default_rng(10).integers(0, 256, (4, 3, 5, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images)
    with pytest.raises(DatasetError, match="layout='NCHW' or layout='NHWC'"):
        load_dataset("npz", data_dir=tmp_path / "d.npz", validation_size=0)
    nhwc = load_dataset("npz", data_dir=tmp_path / "d.npz", validation_size=0, layout="NHWC")
    assert torch.equal(nhwc.images, torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
    nchw = load_dataset("npz", data_dir=tmp_path / "d.npz", validation_size=0, layout="NCHW")
    assert torch.equal(nchw.images, torch.from_numpy(images))


def test_npz_folder_splits_and_single_file_has_no_test(tmp_path):
    np.savez(tmp_path / "train.npz", images=np.zeros((3, 2, 2), np.uint8), y=[[2], [0], [1]])
    np.savez(tmp_path / "test.npz", images=np.ones((2, 2, 2), np.uint8))
    train = load_dataset("npz", data_dir=tmp_path, validation_size=0)
    assert train.labels.tolist() == [2, 0, 1] and train.num_classes == 3
    test = load_dataset("npz", "test", data_dir=tmp_path)
    assert len(test) == 2 and test.images.min() == 1
    with pytest.raises(DatasetError, match="only a train split"):
        load_dataset("npz", "test", data_dir=tmp_path / "train.npz")


def test_npz_corrupt_file_and_pickled_objects(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(DatasetError, match=re.escape("not a readable .npz")) as error:
        load_dataset("npz", data_dir=tmp_path / "bad.npz", validation_size=0)
    assert str(tmp_path / "bad.npz") in str(error.value)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match=re.escape("objects.npy")):
        load_dataset("npz", data_dir=tmp_path / "objects.npy", validation_size=0)


def test_npz_source_bits(tmp_path):
    images = np.arange(32, dtype=np.uint8).reshape(2, 4, 4)
    np.savez(tmp_path / "d.npz", images=images)
    five = load_dataset(
        "npz", data_dir=tmp_path / "d.npz", validation_size=0, source_bits=5, num_bits=5
    )
    assert torch.equal(five.images[:, 0], torch.from_numpy(images))
    three = load_dataset(
        "npz", data_dir=tmp_path / "d.npz", validation_size=0, source_bits=5, num_bits=3
    )
    assert torch.equal(three.images[:, 0], torch.from_numpy(images >> 2))
    with pytest.raises(DatasetError, match="num_bits=6 exceeds the 5-bit pixels"):
        load_dataset(
            "npz", data_dir=tmp_path / "d.npz", validation_size=0, source_bits=5, num_bits=6
        )
    with pytest.raises(DatasetError, match=r"\[0, 15\] \(4-bit\)"):
        load_dataset(
            "npz", data_dir=tmp_path / "d.npz", validation_size=0, source_bits=4, num_bits=4
        )


# Splits, bit depth, subsets


@pytest.mark.parametrize("num_bits", [1, 3, 5, 7, 8])
def test_bit_reduction_keeps_the_top_bits(tmp_path, num_bits):
    images = np.arange(256, dtype=np.uint8).reshape(4, 8, 8)
    np.savez(tmp_path / "d.npz", images=images)
    ds = load_dataset("npz", data_dir=tmp_path / "d.npz", validation_size=0, num_bits=num_bits)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images >> (8 - num_bits)))
    assert ds.images.max() == 2**num_bits - 1 and ds.num_bits == num_bits


def carve(tmp_path, split, seed=0, validation_size=10, subset=None) -> list[int]:
    ds = load_dataset(
        "mnist",
        split,
        data_dir=tmp_path,
        validation_size=validation_size,
        seed=seed,
        subset=subset,
    )
    return ds.images[:, 0, 0, 0].tolist()  # each image's first pixel is its index in the file


def test_validation_carve_is_disjoint_seeded_and_ordered(tmp_path):
    idx_dataset(tmp_path, n_train=50)
    train, validation = carve(tmp_path, "train"), carve(tmp_path, "validation")
    assert len(train) == 40 and len(validation) == 10
    assert set(train).isdisjoint(validation) and sorted(train + validation) == list(range(50))
    assert train == sorted(train) and validation == sorted(validation)
    assert carve(tmp_path, "validation") == validation
    assert carve(tmp_path, "validation", seed=1) != validation
    assert carve(tmp_path, "train", validation_size=0) == list(range(50))
    assert carve(tmp_path, "test") == list(range(5))


def test_subset_keeps_the_first_images_after_carving(tmp_path):
    idx_dataset(tmp_path, n_train=50)
    train = carve(tmp_path, "train")
    assert carve(tmp_path, "train", subset=7) == train[:7]
    assert carve(tmp_path, "test", subset=3) == [0, 1, 2]
    assert carve(tmp_path, "test", subset=100) == list(range(5))


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(split="validation", validation_size=0), "needs validation_size > 0"),
        (dict(validation_size=12), "validation_size=12 leaves no training images"),
        (dict(split="valid"), "split must be one of train, validation, test, got 'valid'"),
        (dict(split="extra"), "split must be one of"),
        (dict(num_bits=9), r"num_bits must be an integer in 1..8, got 9"),
        (dict(num_bits=0), "num_bits must be an integer in 1..8"),
        (dict(subset=0), "subset must be an integer >= 1"),
        (dict(validation_size=-1), "validation_size must be an integer >= 0"),
        (dict(image_size=8), "image_size applies only to image-folder, not to mnist"),
        (dict(layout="NHWC"), "layout applies only to npz"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, expected):
    idx_dataset(tmp_path)
    with pytest.raises(DatasetError, match=expected):
        load_dataset("mnist", data_dir=tmp_path, **kwargs)


# Where files are looked for


def test_search_order(tmp_path, monkeypatch):
    env = tmp_path / "env"
    places = {
        "data_dir": tmp_path / "given",
        "env/<name>": env / "mnist",
        "env": env,
        "system": tmp_path / "system" / "mnist",
        "cache": tmp_path / "cache" / "pixelcnnpp" / "mnist",
    }
    for n, folder in enumerate(places.values(), start=1):
        idx_dataset(folder, n_test=n)
    monkeypatch.setenv("PIXELCNNPP_DATA", str(env))
    assert default_data_dirs("mnist") == list(places.values())[1:]

    def found(data_dir=None) -> tuple[int, Path]:
        ds = load_dataset("mnist", "test", data_dir=data_dir)
        return len(ds), ds.source.parent

    assert found(places["data_dir"]) == (1, places["data_dir"])
    for file in places["data_dir"].glob("t10k-*"):
        file.unlink()
    with pytest.raises(DatasetError, match="no test split found"):
        found(places["data_dir"])  # a given data_dir is the only place looked in
    for n, folder in enumerate(list(places.values())[1:], start=2):
        assert found() == (n, folder)
        for file in folder.glob("t10k-*"):
            file.unlink()
    with pytest.raises(DatasetError, match="no test split found"):
        found()


@pytest.mark.parametrize("given", ["empty folder", "garbage file", "other files"])
def test_a_given_data_dir_is_the_only_place_looked_in(tmp_path, given):
    """Regression (issue 12.2): with the dataset in the system folder, a data_dir without it
    used to load the system copy silently."""
    idx_dataset(tmp_path / "system" / "fashion-mnist")
    data_dir = tmp_path / "given"
    if given == "garbage file":
        data_dir.write_bytes(os.urandom(100))
    else:
        data_dir.mkdir()
    if given == "other files":
        (data_dir / "notes.txt").write_text("not the data")
    with pytest.raises(DatasetError) as error:
        load_dataset("fashion-mnist", "test", data_dir=data_dir)
    message = str(error.value)
    assert f"\n  {data_dir} (" in message and "the only place looked in" in message
    assert "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz" in message
    assert str(tmp_path / "system") not in message
    there = {"empty folder": "empty", "garbage file": "a file, not a folder"}
    assert there.get(given, "it holds notes.txt") in message
    status = dataset_status("fashion-mnist", data_dir=data_dir)
    assert status["found"] is False and status["searched"] == [str(data_dir)]
    assert len(load_dataset("fashion-mnist", "test")) == 5  # the system copy, when not given


def test_missing_files_say_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELCNNPP_DATA", str(tmp_path / "env"))
    (tmp_path / "given").mkdir()
    defaults = (
        tmp_path / "env" / "fashion-mnist",
        tmp_path / "env",
        tmp_path / "system" / "fashion-mnist",
        tmp_path / "cache" / "pixelcnnpp" / "fashion-mnist",
    )
    with pytest.raises(DatasetError) as error:
        load_dataset("fashion-mnist", data_dir=tmp_path / "given")
    message = str(error.value)
    assert f"\n  {tmp_path / 'given'}" in message
    for folder in defaults:
        assert f"\n  {folder}" not in message
    assert "train-images-idx3-ubyte.gz" in message
    assert "apt-get install dataset-fashion-mnist" in message and "download=True" in message
    with pytest.raises(DatasetError) as error:
        load_dataset("fashion-mnist")
    for folder in defaults:
        assert f"\n  {folder}" in str(error.value)

    with pytest.raises(
        DatasetError, match=re.escape("https://www.cs.toronto.edu/~kriz/cifar-10-python")
    ):
        load_dataset("cifar10")
    with pytest.raises(DatasetError, match=re.escape("http://ufldl.stanford.edu/housenumbers/")):
        load_dataset("svhn", "test")
    with pytest.raises(DatasetError, match=re.escape("image-net.org")) as error:
        load_dataset("imagenet64")
    assert "A download saves" not in str(error.value)


def test_dataset_status(tmp_path):
    status = dataset_status("mnist", data_dir=tmp_path)
    assert status["name"] == "mnist" and status["found"] is False and status["path"] is None
    assert status["searched"] == [str(tmp_path)]  # a given data_dir is the only place
    assert dataset_status("mnist")["searched"] == list(map(str, default_data_dirs("mnist")))
    assert "ossci-datasets" in status["how_to_get"]
    idx_dataset(tmp_path)
    status = dataset_status("mnist", data_dir=tmp_path)
    assert status["found"] is True and status["path"] == str(tmp_path)
    assert dataset_status("image-folder")["searched"] == []


# Registry


def test_registry_lists_and_rejects_unknown_names():
    assert list_datasets() == sorted(list_datasets())
    assert set(BUILT_IN) <= set(list_datasets())
    with pytest.raises(DatasetError) as error:
        get_dataset_spec("cifar-11")
    assert "unknown dataset 'cifar-11'" in str(error.value)
    for name in BUILT_IN:
        assert name in str(error.value)
    assert issubclass(DatasetError, ValueError)


@pytest.mark.parametrize("name", list_datasets())
def test_every_registered_dataset_is_described(name):
    spec = get_dataset_spec(name)
    assert spec.name == name and spec.description and spec.how_to_get
    assert "train" in spec.splits and "test" in spec.splits
    if spec.downloads is not None:
        needed = {file for files in spec.files.values() for file in files}
        assert needed <= set(spec.downloads)
        for remote in spec.downloads.values():
            assert remote.url.startswith(("http://", "https://"))
            assert len(remote.sha256) == 64 and int(remote.sha256, 16) >= 0
            assert remote.size > 0


def test_register_duplicate_and_override(tmp_path, registries):
    base = get_dataset_spec("npz")

    @register_dataset("my-arrays")
    def my_arrays() -> DatasetSpec:
        return dataclasses.replace(base, name="my-arrays", description="mine")

    assert "my-arrays" in list_datasets()
    with pytest.raises(ValueError, match="already registered; pass override=True"):
        register_dataset("my-arrays")(my_arrays)
    register_dataset("my-arrays", override=True)(
        lambda: dataclasses.replace(base, name="my-arrays", description="replaced")
    )
    assert get_dataset_spec("my-arrays").description == "replaced"
    with pytest.raises(ValueError, match="named 'npz'"):
        register_dataset("other")(lambda: base)
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 3, 3), np.uint8))
    assert len(load_dataset("my-arrays", data_dir=tmp_path / "d.npz", validation_size=0)) == 2


# Downloads (file:// URLs: there is no network in the tests)


def served(tmp_path: Path, data: bytes, name="payload.bin") -> tuple[str, str]:
    source = tmp_path / "server" / name
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(data)
    return source.as_uri(), hashlib.sha256(data).hexdigest()


def test_download_verified_file_lands_in_place(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    url, digest = served(tmp_path, data)
    calls = []
    path = download_file(
        url, tmp_path / "out" / "f.bin", digest, len(data), progress=lambda *a: calls.append(a)
    )
    assert path == tmp_path / "out" / "f.bin" and path.read_bytes() == data
    assert calls[0] == (0, len(data)) and calls[-1] == (len(data), len(data))
    assert os.listdir(tmp_path / "out") == ["f.bin"]


@pytest.mark.parametrize("wrong", ["digest", "size"])
def test_download_mismatch_leaves_nothing(tmp_path, wrong):
    url, digest = served(tmp_path, b"official bytes")
    bad_digest = hashlib.sha256(b"other").hexdigest()
    kwargs = dict(sha256=bad_digest) if wrong == "digest" else dict(sha256=digest, expected_size=99)
    with pytest.raises(DatasetError) as error:
        download_file(url, tmp_path / "out" / "f.bin", **kwargs)
    message = str(error.value)
    assert url in message
    if wrong == "digest":
        assert bad_digest in message and digest in message
    else:
        assert "expected 99" in message
    assert os.listdir(tmp_path / "out") == []


def test_download_retries_network_errors(tmp_path, monkeypatch):
    url, digest = served(tmp_path, b"bytes")
    real_urlopen, calls = urllib.request.urlopen, []

    def flaky(request, timeout):
        calls.append(request.full_url)
        if len(calls) == 1:
            raise urllib.error.URLError("connection reset")
        return real_urlopen(request, timeout=timeout)

    monkeypatch.setattr(urllib.request, "urlopen", flaky)
    assert download_file(url, tmp_path / "f", digest).read_bytes() == b"bytes"
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(DatasetError, match="failed after 2 attempt"):
        download_file((tmp_path / "absent").as_uri(), tmp_path / "g", digest)
    assert not (tmp_path / "g").exists()
    with pytest.raises(DatasetError, match="64 hexadecimal digits"):
        download_file(url, tmp_path / "h", "abc")


def fashion_mnist_served(tmp_path, monkeypatch) -> dict[str, tuple]:
    """Point the fashion-mnist spec at file:// copies of small IDX files with their digests."""
    arrays = idx_dataset(tmp_path / "server")
    downloads = {}
    for file in (tmp_path / "server").iterdir():
        data = file.read_bytes()
        downloads[file.name] = RemoteFile(
            file.as_uri(), hashlib.sha256(data).hexdigest(), len(data)
        )
    spec = dataclasses.replace(get_dataset_spec("fashion-mnist"), downloads=downloads)
    DATASETS.register("fashion-mnist", spec, override=True)
    return arrays


def test_load_dataset_downloads_when_missing(tmp_path, monkeypatch, registries):
    arrays = fashion_mnist_served(tmp_path, monkeypatch)
    ds = load_dataset("fashion-mnist", "test", data_dir=tmp_path / "dl", download=True)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(arrays["test"][0]))
    assert sorted(os.listdir(tmp_path / "dl")) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    monkeypatch.setenv("PIXELCNNPP_DATA", str(tmp_path / "env"))
    seen = []
    target = download_dataset("fashion-mnist", progress=lambda *a: seen.append(a[0]))
    assert target == tmp_path / "env" / "fashion-mnist"
    assert len(os.listdir(target)) == 4 and set(seen) == set(os.listdir(target))
    assert len(load_dataset("fashion-mnist", validation_size=0)) == 12


def test_download_refuses_a_file_without_digest(tmp_path, registries):
    spec = get_dataset_spec("svhn")
    downloads = dict(spec.downloads)
    downloads["test_32x32.mat"] = RemoteFile("file:///nowhere/test_32x32.mat", None)
    DATASETS.register("svhn", dataclasses.replace(spec, downloads=downloads), override=True)
    with pytest.raises(DatasetError, match=re.escape("no published SHA-256 for test_32x32.mat")):
        load_dataset("svhn", "test", data_dir=tmp_path, download=True)
    assert list(tmp_path.iterdir()) == []


# PixelDataset


def test_pixel_dataset_contract():
    images = torch.randint(0, 32, (6, 4, 4, 2), dtype=torch.uint8)
    images[0, 0, 0, 0] = 31
    images = images.permute(0, 3, 1, 2)
    ds = PixelDataset(images, torch.arange(6), num_bits=5, num_classes=6)
    assert ds.images.is_contiguous() and torch.equal(ds.images, images)
    batch, labels = ds.batch(torch.tensor([4, 1]))
    assert torch.equal(batch, images[[4, 1]]) and labels.tolist() == [4, 1]
    assert PixelDataset(images, num_bits=5).batch(torch.tensor([0]))[1] is None
    with pytest.raises(DatasetError, match=r"values in \[0, 15\] for num_bits=4"):
        PixelDataset(images, num_bits=4)
    with pytest.raises(DatasetError, match="uint8 tensor"):
        PixelDataset(images.float())
    with pytest.raises(DatasetError, match=r"long tensor \[6\]"):
        PixelDataset(images, torch.arange(5), num_bits=5)


# Which files a load read


def test_files_read_with_their_size_and_checksum(tmp_path, monkeypatch, registries):
    fashion_mnist_served(tmp_path, monkeypatch)  # published digests of the served files
    served = tmp_path / "server"
    train = load_dataset("fashion-mnist", data_dir=served, validation_size=4)
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert train.files == (
        DataFile(served / names[0], (served / names[0]).stat().st_size, "matched"),
        DataFile(served / names[1], (served / names[1]).stat().st_size, "matched"),
    )
    validation = load_dataset("fashion-mnist", "validation", data_dir=served, validation_size=4)
    assert validation.files == train.files  # carved from the same files
    assert re.fullmatch(
        rf"fashion-mnist train: {re.escape(str(served))}: {names[0]} \(\d+\.\d kB\), "
        rf"{names[1]} \(\d+ B\); SHA-256 matches the published digests",
        train.describe_files(),
    ), train.describe_files()
    # Same name, other bytes (recompressed): read, and said to differ from the published one.
    labels = served / names[1]
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes()), compresslevel=1))
    changed = load_dataset("fashion-mnist", data_dir=served, validation_size=4)
    assert [f.checksum for f in changed.files] == ["matched", "mismatched"]
    assert changed.files[1].describe() == (
        f"{labels} ({labels.stat().st_size} B, SHA-256 differs from the known one)"
    )
    line = changed.describe_files()
    assert line.endswith(f"SHA-256 DIFFERS from the known digest for {names[1]}; "
                         f"matches for {names[0]}")  # fmt: skip
    # With the digest of the decompressed contents known, the recompressed copy is recognised.
    contents = hashlib.sha256(gzip.decompress(labels.read_bytes())).hexdigest()
    spec = get_dataset_spec("fashion-mnist")
    known = dataclasses.replace(spec, checksums={names[1].removesuffix(".gz"): contents})
    DATASETS.register("fashion-mnist", known, override=True)
    recognised = load_dataset("fashion-mnist", data_dir=served, validation_size=4)
    assert [f.checksum for f in recognised.files] == ["matched", "contents matched"]
    assert recognised.describe_files().endswith(
        f"matches for {names[0]}; decompressed contents match for {names[1]}"
    )
    labels.write_bytes(gzip.compress(b"other contents"))
    assert record_files([labels], known.known_checksums())[0].checksum == "mismatched"


def test_files_read_by_every_kind_of_format(tmp_path):
    write_cifar(tmp_path / "tar", "cifar10", as_tar=True)
    (archive,) = load_dataset("cifar10", "test", data_dir=tmp_path / "tar").files
    assert archive.path == tmp_path / "tar" / "cifar-10-python.tar.gz"
    assert archive.checksum == "mismatched"  # not the published archive
    write_cifar(tmp_path / "unpacked", "cifar10", as_tar=False)
    batches = load_dataset("cifar10", data_dir=tmp_path / "unpacked", validation_size=0).files
    folder = tmp_path / "unpacked" / "cifar-10-batches-py"
    assert [f.path for f in batches] == [folder / f"data_batch_{i}" for i in range(1, 6)]
    assert {f.checksum for f in batches} == {"unknown"}

    for i in range(6):
        save_image(tmp_path / "pics" / f"c{i % 2}" / f"{i}.png", np.full((2, 3), i, np.uint8))
    pictures = load_dataset("image-folder", data_dir=tmp_path / "pics", validation_size=0)
    assert [f.path.name for f in pictures.files] == ["0.png", "2.png", "4.png"] + [
        "1.png", "3.png", "5.png"
    ]  # fmt: skip
    total = sum(f.size for f in pictures.files)
    assert pictures.describe_files() == (
        f"image-folder train: {tmp_path / 'pics'}: 6 files ({total} B); no known SHA-256"
    )

    np.savez(tmp_path / "d.npz", images=np.zeros((2, 3, 3), np.uint8))
    (array,) = load_dataset("npz", data_dir=tmp_path / "d.npz", validation_size=0).files
    assert (array.path, array.checksum) == (tmp_path / "d.npz", "unknown")
    write_imagenet(tmp_path / "in", 32, per_batch=1)
    batches = load_dataset("imagenet32", "test", data_dir=tmp_path / "in").files
    assert [f.path for f in batches] == [tmp_path / "in" / "val_data.npz"]
    assert PixelDataset(torch.zeros(1, 1, 2, 2, dtype=torch.uint8)).files == ()


def test_describe_files_sizes_and_mixed_checksums():
    folder = Path("/data/x")
    files = [
        DataFile(folder / "a.bin", 999, "matched"),
        DataFile(folder / "sub" / "b.bin", 1_500, "unknown"),
        DataFile(folder / "c.bin", 2_345_678_901, "matched"),
    ]
    assert describe_files(files) == (
        "/data/x: a.bin (999 B), sub/b.bin (1.5 kB), c.bin (2.3 GB); "
        "matches for a.bin, c.bin; none known for b.bin"
    )
    assert describe_files([]) == "no files"


# Formats: the registry, and a format added without touching load_dataset


@pytest.mark.parametrize("name", list_formats())
def test_every_registered_format_keeps_the_contract(name, tmp_path):
    data_format = get_format(name)
    assert isinstance(data_format, DataFormat)
    read = inspect.signature(data_format.read).parameters
    for option in format_options(data_format):
        assert read[option].default is not inspect.Parameter.empty, f"{name}: {option}"
    empty = tmp_path / "empty"
    empty.mkdir()
    for split in ("train", "test"):  # nothing there: None, the folder itself, or a clear error
        try:
            assert data_format.locate(empty, split) in (None, empty)
        except DatasetError as error:
            assert str(empty) in str(error)


@pytest.mark.parametrize("name", list_datasets())
def test_every_dataset_names_a_registered_format(name):
    spec = get_dataset_spec(name)
    assert isinstance(spec.reader, str) and spec.reader in list_formats()
    assert spec.format is get_format(spec.reader)


def test_a_new_format_and_its_option_need_no_change_to_load_dataset(tmp_path, registries):
    @register_format("text-grid")
    class TextGrid:
        """Digits 0-9 in a text file, one image per blank-line-separated block."""

        def locate(self, folder, split):
            path = folder / f"{split}.txt"
            return path if path.is_file() else None

        def read(self, path, split, scale=1):
            blocks = path.read_text().strip().split("\n\n")
            images = np.array([[[int(c) for c in row] for row in b.split()] for b in blocks])
            return ArraySplit(images=(images[:, None] * scale).astype(np.uint8), labels=None,
                              source=path)  # fmt: skip

    register_dataset("digits-text")(
        lambda: DatasetSpec(
            name="digits-text", description="d", image_shape=None, num_classes=None,
            files={"train": ("train.txt",), "test": ("test.txt",)}, downloads=None,
            how_to_get="write them", reader="text-grid",
        )
    )  # fmt: skip
    (tmp_path / "train.txt").write_text("12\n34\n\n56\n78\n")
    ds = load_dataset("digits-text", data_dir=tmp_path, validation_size=0, scale=10)
    assert ds.images[:, 0].tolist() == [[[10, 20], [30, 40]], [[50, 60], [70, 80]]]
    assert [f.path for f in ds.files] == [tmp_path / "train.txt"]
    assert get_dataset_spec("digits-text").options == ("scale",)
    with pytest.raises(DatasetError, match="scale applies only to digits-text, not to mnist"):
        load_dataset("mnist", data_dir=tmp_path, scale=2)
    with pytest.raises(DatasetError, match="digits-text: unknown option 'zoom'; it takes 'scale'"):
        load_dataset("digits-text", data_dir=tmp_path, zoom=2)
    with pytest.raises(ValueError, match="already registered"):
        register_format("text-grid")(TextGrid)
    with pytest.raises(ValueError, match="must have locate"):
        register_format("not-a-format")(lambda: object())
    with pytest.raises(DatasetError, match="unknown data format 'nope'; known data formats"):
        _ = dataclasses.replace(get_dataset_spec("digits-text"), reader="nope").format


# The real Fashion-MNIST, as `apt-get install dataset-fashion-mnist` installs it


def test_real_fashion_mnist(monkeypatch):
    if not REAL_FASHION_MNIST.is_dir():
        pytest.skip(f"{REAL_FASHION_MNIST} absent: apt-get install dataset-fashion-mnist")
    monkeypatch.setattr(locations, "SYSTEM_DATA_DIRS", [REAL_FASHION_MNIST.parent])
    assert dataset_status("fashion-mnist")["found"]
    for split, n in (("train", 60000), ("test", 10000)):
        ds = load_dataset("fashion-mnist", split, validation_size=0)
        assert ds.images.shape == (n, 1, 28, 28) and ds.images.dtype == torch.uint8
        assert ds.source.parent == REAL_FASHION_MNIST
        assert torch.bincount(ds.labels).tolist() == [n // 10] * 10  # 10 balanced classes
        assert ds.images.max() == 255 and ds.images.min() == 0
        prefix = "train" if split == "train" else "t10k"
        assert [(f.path, f.checksum) for f in ds.files] == [
            (REAL_FASHION_MNIST / f"{prefix}-images-idx3-ubyte.gz", "contents matched"),
            (REAL_FASHION_MNIST / f"{prefix}-labels-idx1-ubyte.gz", "contents matched"),
        ]  # the Debian package recompressed the published files: only the contents match
        assert [f.size for f in ds.files] == [f.path.stat().st_size for f in ds.files]
        assert ds.describe_files().endswith("decompressed contents match the known SHA-256 digests")


def test_a_data_dir_that_does_not_exist_is_an_error_not_a_fallback(tmp_path):
    missing = tmp_path / "typo"
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("fashion-mnist", "test", data_dir=missing)
