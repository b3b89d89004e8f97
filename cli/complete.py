"""``pixelcnn complete``: keep the top rows of images and draw the rest from a checkpoint."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer
from PIL import Image

from pixelcnnpp.training import (
    PixelDataset,
    load_checkpoint,
    load_dataset,
    model_from_checkpoint,
    resolve_checkpoint,
    resolve_device,
    save_image_grid,
)

from .evaluate import Checkpoint, NoEma
from .options import Device, Plugins
from .output import Session, check_image_path, check_npy_path, duration, key_value_table
from .plugins import load_plugins
from .sample import (
    DEFAULT_BATCH,
    BatchSize,
    Label,
    Labels,
    Method,
    Npy,
    Replay,
    Scale,
    Seed,
    Temperature,
    in_batches,
    parse_labels,
    save_pixels,
)


def complete(
    ctx: typer.Context,
    checkpoint: Checkpoint,
    keep_rows: Annotated[
        int, typer.Option(min=0, help="Rows kept from the top of each image; the rest is drawn.")
    ],
    images: Annotated[
        list[Path] | None,
        typer.Option(
            "--images",
            metavar="FILE",
            help="Images to complete: one .npy/.npz of integer pixels [N, C, H, W] (or "
            "[N, H, W, C]; [N, H, W] for one channel), or PNG files (repeat the option).",
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help="Take the images from this split of the run's dataset instead."),
    ] = None,
    count: Annotated[
        int, typer.Option(min=1, help="With --split: how many images, from the first.")
    ] = 8,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="With --split: where the dataset is (default: where the run found it)."),
    ] = None,
    n_per_image: Annotated[int, typer.Option(min=1, help="Completions drawn for each image.")] = 4,
    out: Annotated[
        Path, typer.Option(help="The grid: each image, its kept part, its completions.")
    ] = Path("completions.png"),
    labels: Labels = None,
    label: Label = None,
    temperature: Temperature = 1.0,
    method: Method = "cached",
    replay: Replay = None,
    seed: Seed = 0,
    npy: Npy = None,
    batch_size: BatchSize = DEFAULT_BATCH,
    scale: Scale = None,
    device: Device = None,
    no_ema: NoEma = False,
    plugins: Plugins = None,
) -> None:
    """Keep the top rows of images and draw the rest from a checkpoint, pixel by pixel.

    The grid has one row per image: the original, its kept part (the rest grey), then the
    completions. --npy saves the completions as [N, n-per-image, C, H, W].

    Examples:

        pixelcnn complete runs/RUN --split test --count 8 --keep-rows 14
        pixelcnn complete model.pt --images x.npy --keep-rows 16 --out x.png
    """
    session: Session = ctx.obj
    out = check_image_path(out, "--out")
    npy = None if npy is None else check_npy_path(npy, "--npy")
    if (images is None) == (split is None):
        raise ValueError("give the images to complete: --images FILE... or --split NAME")
    load_plugins(plugins)
    path = resolve_checkpoint(checkpoint)
    state = load_checkpoint(path)
    target = resolve_device(device or "auto")
    model = model_from_checkpoint(state, use_ema=not no_ema, device=target)
    cfg = model.config
    c, h, w = cfg.image_shape
    if keep_rows > h:
        raise ValueError(f"--keep-rows must be at most the image height {h}, got {keep_rows}")
    if split is not None:
        data = _run_split(state.get("train_config") or {}, split, data_dir, cfg.num_bits)
        originals, source = data.images[:count].long(), f"{data.name} ({split})"
        if labels is None and label is None and cfg.num_classes is not None:
            labels = ",".join(map(str, data.labels[:count].tolist()))
    else:
        originals, source = read_images(images, cfg.image_shape, cfg.num_bits), _names(images)
    num = len(originals)
    classes = parse_labels(labels, label, num, cfg.num_classes)
    repeated = originals.repeat_interleave(n_per_image, dim=0)  # [N S, C, H, W]
    repeated_classes = None if classes is None else classes.repeat_interleave(n_per_image)
    generator = torch.Generator(device=target).manual_seed(seed)
    start = time.perf_counter()
    drawn = in_batches(
        session,
        f"complete {num} x {n_per_image}",
        len(repeated),
        batch_size,
        h - keep_rows,
        lambda first, n, progress: model.complete(
            repeated[first : first + n].to(target),
            keep_rows * w,
            labels=None if classes is None else repeated_classes[first : first + n].to(target),
            temperature=temperature,
            method=method,
            generator=generator,
            progress=progress,
            replay=replay,
        ),
    )
    seconds = time.perf_counter() - start
    completions = drawn.view(num, n_per_image, c, h, w)
    if npy is not None:
        save_pixels(completions, npy, cfg.num_bits)
    kept = originals.clone()
    kept[:, :, keep_rows:] = (2**cfg.num_bits - 1) // 2  # grey where the model draws
    tiles = torch.cat([originals[:, None], kept[:, None], completions], dim=1)  # [N, 2 + S, ...]
    grid = save_image_grid(
        tiles.flatten(0, 1), out, cfg.num_bits, nrow=2 + n_per_image, scale=scale
    )
    session.show(
        key_value_table(
            "Completions",
            [
                ("checkpoint", path),
                ("images", f"{num} x {tuple(cfg.image_shape)} from {source}"),
                ("kept", f"{keep_rows} of {h} rows"),
                ("completions", f"{n_per_image} per image"),
                ("method", method),
                ("time", duration(seconds)),
                ("grid", grid),
                ("pixels", npy),
            ],
        )
    )


def read_images(paths: list[Path], shape: tuple[int, int, int], num_bits: int) -> torch.Tensor:
    """Integer images ``[N, C, H, W]`` from one ``.npy``/``.npz`` file or from PNG files,
    checked against the model's image shape and bit depth."""
    c, h, w = shape
    arrays = [p for p in paths if p.suffix in (".npy", ".npz")]
    if arrays and len(paths) > 1:
        raise ValueError("--images takes one .npy/.npz file or any number of PNG files, not both")
    for p in paths:
        if not p.is_file():
            raise ValueError(f"--images {p}: no such file")
    if arrays:
        x = _read_array(paths[0])
        if x.ndim == 3 and c == 1:
            x = x[:, None]
        elif x.ndim == 4 and x.shape[1:] != (c, h, w) and x.shape[1:] == (h, w, c):
            x = x.transpose(0, 3, 1, 2)
        if x.ndim != 4 or x.shape[1:] != (c, h, w):
            raise ValueError(
                f"--images {paths[0]} must hold images [N, {c}, {h}, {w}] (or [N, {h}, {w}, {c}]"
                f"{f', [N, {h}, {w}]' if c == 1 else ''}) for this model, got {list(x.shape)}"
            )
        if not np.issubdtype(x.dtype, np.integer) and not np.array_equal(x, np.round(x)):
            raise ValueError(f"--images {paths[0]} must hold integer pixels, got {x.dtype} values")
    else:
        if num_bits != 8:
            raise ValueError(
                f"PNG files hold 8-bit pixels and the model has {num_bits} bits; "
                "give an .npy of integer pixels instead"
            )
        x = np.stack([_read_png(p, c, h, w) for p in paths])
    top = 2**num_bits - 1
    if x.size and (x.min() < 0 or x.max() > top):
        raise ValueError(
            f"--images {_names(paths)}: pixels must lie in [0, {top}] ({num_bits} bits), "
            f"got values in [{x.min()}, {x.max()}]"
        )
    return torch.from_numpy(np.ascontiguousarray(x).astype(np.int64))


def _read_array(path: Path) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as error:
        raise ValueError(f"--images {path} is not a readable .npy/.npz file: {error}") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        names = list(loaded.keys())
        if "images" in names or len(names) == 1:
            return loaded["images" if "images" in names else names[0]]
    raise ValueError(f"--images {path} holds {names}; name the array 'images'")


def _read_png(path: Path, c: int, h: int, w: int) -> np.ndarray:
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L" if c == 1 else "RGB"))
    except Exception as error:
        raise ValueError(f"--images {path} is not a readable image: {error}") from None
    if c not in (1, 3):
        raise ValueError(f"PNG files hold 1 or 3 channels; the model has {c}")
    if pixels.shape[:2] != (h, w):
        raise ValueError(
            f"--images {path} is {pixels.shape[1]}x{pixels.shape[0]} pixels; the model draws "
            f"{w}x{h} images"
        )
    return pixels[None] if c == 1 else pixels.transpose(2, 0, 1)


def _names(paths: list[Path]) -> str:
    return str(paths[0]) if len(paths) == 1 else f"{paths[0]} and {len(paths) - 1} more"


def _run_split(
    trained: dict[str, Any], split: str, data_dir: Path | None, num_bits: int
) -> PixelDataset:
    """A split of the dataset the run was trained on, read where the run read it (or from
    ``data_dir``), with the run's validation carve."""
    name = trained.get("dataset")
    if name is None:
        raise ValueError("the checkpoint does not name its dataset; use --images instead")
    return load_dataset(
        name,
        split,
        data_dir=data_dir or trained.get("data_dir"),
        num_bits=num_bits,
        validation_size=trained.get("validation_size", 5000),
        seed=trained.get("seed", 0),
        **(trained.get("dataset_options") or {}),
    )
