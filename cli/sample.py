"""``pixelcnn sample``: images drawn from a checkpoint, saved as a PNG grid (and raw .npy)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import typer

from pixelcnnpp.autoregressive import SAMPLING_METHODS as METHODS
from pixelcnnpp.training import (
    load_checkpoint,
    model_from_checkpoint,
    resolve_checkpoint,
    resolve_device,
    save_image_grid,
)

from .evaluate import Checkpoint, NoEma
from .options import Device, Plugins, finite_float
from .output import Session, check_image_path, check_npy_path, duration, key_value_table
from .plugins import load_plugins

# Images per call of the sampler: the most images/s of cached sampling on CPU for the demo
# model (benchmarks/sampling.py --batches); larger --n is drawn in batches of this size, so
# memory stays bounded.
DEFAULT_BATCH = 64

BatchSize = Annotated[
    int,
    typer.Option(
        "--batch-size",
        min=1,
        help="Images drawn at once; more are drawn in batches of this size (the images "
        "depend on it for a given seed).",
    ),
]
Scale = Annotated[
    int | None,
    typer.Option(
        min=1, help="Screen pixels per image pixel in the grid (default: tiles of ~112 pixels)."
    ),
]
Nrow = Annotated[int | None, typer.Option(min=1, help="Images per grid row (default: a square).")]
Method = Annotated[
    Literal[METHODS],
    typer.Option(help="cached: fast generation; naive: the whole network per pixel."),
]
Replay = Annotated[
    bool | None,
    typer.Option(
        "--replay/--no-replay",
        help="Cached: record each row's operations once per pattern and replay them (CUDA "
        "graphs on a GPU). Default: on CUDA only. The images are the same either way.",
    ),
]
Temperature = Annotated[
    float,
    typer.Option(
        parser=finite_float(),
        help="Above 1 softens the distributions, below 1 sharpens them.",
    ),
]
Labels = Annotated[
    str | None,
    typer.Option(
        metavar="L1,L2,...",
        help="Class labels, comma-separated: one (for every image) or one per image. "
        "Required for a class-conditional model, refused otherwise.",
    ),
]
Label = Annotated[int | None, typer.Option(min=0, help="One class label for every image.")]
Seed = Annotated[int, typer.Option(min=0, help="Seed of the draws.")]
Npy = Annotated[
    Path | None,
    typer.Option(
        metavar="PATH.npy",
        help="Also save the integer pixels as .npy (.npy is added to a name without it).",
    ),
]


def sample(
    ctx: typer.Context,
    checkpoint: Checkpoint,
    n: Annotated[int, typer.Option("--n", "-n", min=1, help="Number of images.")] = 64,
    out: Annotated[Path, typer.Option(help="The image grid to write (.png).")] = Path(
        "samples.png"
    ),
    labels: Labels = None,
    label: Label = None,
    temperature: Temperature = 1.0,
    method: Method = "cached",
    replay: Replay = None,
    seed: Seed = 0,
    npy: Npy = None,
    batch_size: BatchSize = DEFAULT_BATCH,
    scale: Scale = None,
    nrow: Nrow = None,
    device: Device = None,
    no_ema: NoEma = False,
    plugins: Plugins = None,
) -> None:
    """Draw images from a checkpoint into a PNG grid, one pixel at a time.

    Examples:

        pixelcnn sample runs/20250101-120000-fashion-mnist-dmol --n 64 --out grid.png
        pixelcnn sample model.pt --labels 0,1,2,3 --n 4 --temperature 0.9 --npy samples.npy
    """
    session: Session = ctx.obj
    out = check_image_path(out, "--out")
    npy = None if npy is None else check_npy_path(npy, "--npy")
    load_plugins(plugins)
    path = resolve_checkpoint(checkpoint)
    target = resolve_device(device or "auto")
    model = model_from_checkpoint(
        load_checkpoint(path), use_ema=not no_ema, device=target, source=path
    )
    classes = parse_labels(labels, label, n, model.config.num_classes)
    generator = torch.Generator(device=target).manual_seed(seed)
    start = time.perf_counter()
    images = in_batches(
        session,
        f"sample {n}",
        n,
        batch_size,
        model.config.image_shape[1],
        lambda first, count, progress: model.sample(
            count,
            labels=None if classes is None else classes[first : first + count].to(target),
            temperature=temperature,
            method=method,
            generator=generator,
            progress=progress,
            replay=replay,
        ),
    )
    seconds = time.perf_counter() - start
    if npy is not None:  # first: the raw pixels are kept even if no grid can show them
        save_pixels(images, npy, model.config.num_bits)
    grid = save_image_grid(images, out, model.config.num_bits, nrow=nrow, scale=scale)
    session.show(
        key_value_table(
            "Samples",
            [
                ("checkpoint", path),
                ("images", f"{n} x {tuple(model.config.image_shape)}"),
                ("labels", None if classes is None else _summary(classes)),
                ("method", method),
                ("batch size", min(batch_size, n)),
                ("time", duration(seconds)),
                ("grid", grid),
                ("pixels", npy),
            ],
        )
    )


def in_batches(
    session: Session,
    title: str,
    n: int,
    batch_size: int,
    rows: int,
    draw: Callable[[int, int, Callable], torch.Tensor],
) -> torch.Tensor:
    """``draw(first, count, progress)`` over batches of at most ``batch_size`` of ``n``
    images, concatenated (on the CPU); one progress bar over every row of every batch."""
    chunks = [(first, min(batch_size, n - first)) for first in range(0, n, batch_size)]
    results = []
    with session.reporter().task(title, total=rows * len(chunks)) as advance:
        for first, count in chunks:
            results.append(draw(first, count, lambda done, total: advance(1)).cpu())
    return torch.cat(results)


def save_pixels(images: torch.Tensor, path: Path, num_bits: int) -> Path:
    """Integer pixels as ``uint8`` (``uint16`` above 8 bits) ``.npy`` at exactly ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.uint8 if num_bits <= 8 else np.uint16
    np.save(path, images.cpu().numpy().astype(dtype))
    return path


def parse_labels(
    labels: str | None, label: int | None, n: int, num_classes: int | None
) -> torch.Tensor | None:
    """``--labels``/``--label`` as a long tensor ``[n]`` (one label broadcasts); required
    exactly when the model is class-conditional."""
    if labels is not None and label is not None:
        raise ValueError("give --labels or --label, not both")
    if label is not None:
        values = [label]
    elif labels is not None:
        try:
            values = [int(v) for v in labels.split(",")]
        except ValueError:
            raise ValueError(
                f"--labels must be comma-separated integers (e.g. 0,1,2), got {labels!r}"
            ) from None
    else:
        values = None
    if num_classes is None:
        if values is not None:
            raise ValueError("the model is not class-conditional: drop --labels/--label")
        return None
    if values is None:
        raise ValueError(
            f"the model is class-conditional ({num_classes} classes): pass --label N or "
            f"--labels L1,L2,... with labels in 0..{num_classes - 1}"
        )
    if len(values) not in (1, n):
        raise ValueError(f"--labels needs 1 label or one per image ({n}), got {len(values)}")
    return torch.tensor(values * n if len(values) == 1 else values, dtype=torch.long)


def _summary(classes: torch.Tensor) -> str:
    values = classes.tolist()
    return (
        str(values[0])
        if len(set(values)) == 1
        else ",".join(map(str, values[:16])) + (",..." if len(values) > 16 else "")
    )
