"""``pixelcnn evaluate``: bits/dim of a checkpoint on a dataset split, with its 95% CI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer

from pixelcnnpp.training import (
    PixelDataset,
    load_checkpoint,
    load_dataset,
    model_from_checkpoint,
    pixel_bits,
    plot_pixel_bits,
    resolve_checkpoint,
    resolve_device,
)
from pixelcnnpp.training import evaluate as evaluate_split

from .options import Device, Plugins
from .output import (
    Session,
    bits,
    check_image_path,
    check_npy_path,
    check_writable,
    duration,
    interval,
    key_value_table,
)
from .plugins import load_plugins

Checkpoint = Annotated[
    Path,
    typer.Argument(
        help="A checkpoint file, or a run folder (its latest checkpoint).", show_default=False
    ),
]
NoEma = Annotated[
    bool, typer.Option("--no-ema", help="Use the raw weights instead of the EMA (Polyak) ones.")
]


def evaluate(
    ctx: typer.Context,
    checkpoint: Checkpoint,
    dataset: Annotated[
        str | None,
        typer.Option(help="Dataset to score (default: the one the checkpoint was trained on)."),
    ] = None,
    split: Annotated[
        str, typer.Option(help="train, validation or test (svhn also extra).")
    ] = "test",
    data_dir: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            help="Where to look for the data first (default: the checkpoint's, for its dataset).",
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Images per batch (default: the run's).")
    ] = None,
    max_images: Annotated[
        int | None, typer.Option(min=1, help="Score only the first N images of the split.")
    ] = None,
    device: Device = None,
    no_ema: NoEma = False,
    save_per_image: Annotated[
        Path | None,
        typer.Option(metavar="PATH.npy", help="Save the per-image bits/dim (float64 .npy)."),
    ] = None,
    heatmap: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH.png",
            help="Draw the mean bits/dim at each pixel position over the split (and the "
            "per-pixel bits of --images N images beside them); the arrays go to PATH.npz.",
        ),
    ] = None,
    images: Annotated[
        int,
        typer.Option(
            min=0, help="With --heatmap: show this many images with their per-pixel bits."
        ),
    ] = 0,
    plugins: Plugins = None,
) -> None:
    """Bits/dim of a checkpoint on a dataset split, with a 95% confidence interval.

    The data is read at the model's bit depth; a dataset whose images differ in shape from
    the model's is refused.

    Examples:

        pixelcnn evaluate runs/20250101-120000-fashion-mnist-dmol
        pixelcnn evaluate model.pt --dataset mnist --max-images 1000
        pixelcnn evaluate runs/20250101-120000-fashion-mnist-dmol --heatmap map.png --images 4
    """
    session: Session = ctx.obj
    load_plugins(plugins)
    if images and heatmap is None:
        raise ValueError("--images shows images beside a heatmap; give --heatmap PATH.png too")
    if save_per_image is not None:
        save_per_image = check_npy_path(save_per_image, "--save-per-image")
    arrays = None
    if heatmap is not None:
        heatmap = check_image_path(heatmap, "--heatmap")
        arrays = check_writable(heatmap.with_suffix(".npz"), "--heatmap")
    path = resolve_checkpoint(checkpoint)
    state = load_checkpoint(path)
    model = model_from_checkpoint(
        state, use_ema=not no_ema, device=resolve_device(device or "auto"), source=path
    )
    trained: dict[str, Any] = state.get("train_config") or {}
    data = _load_split(trained, dataset, split, data_dir, model.config.num_bits)
    session.note(f"Read {data.describe_files()}")
    batch = batch_size or trained.get("eval_batch_size", 256)
    result = evaluate_split(model, data, batch, max_images, reporter=session.reporter())
    if save_per_image is not None:
        save_per_image.parent.mkdir(parents=True, exist_ok=True)
        np.save(save_per_image, result.per_image)
    if heatmap is not None:
        _draw_heatmap(session, model, data, batch, max_images, images, heatmap, arrays)
    session.show(
        key_value_table(
            "Evaluation",
            [
                ("checkpoint", f"{path} (step {state.get('step', '?')})"),
                ("weights", "raw" if no_ema else "EMA"),
                ("dataset", f"{data.name} ({split})"),
                ("images", result.num_images),
                ("bits/dim", bits(result.bits_per_dim)),
                ("95% CI", interval(result.ci_low, result.ci_high)),
                ("time", duration(result.seconds)),
                ("per-image values", save_per_image),
                ("heatmap", heatmap),
                ("heatmap arrays", arrays),
            ],
        )
    )


def _draw_heatmap(session, model, data, batch, max_images, count, path, arrays) -> None:
    """Per-pixel bits of the split: the mean map, and ``count`` images beside their maps."""
    maps = pixel_bits(model, data, batch, max_images, reporter=session.reporter())
    count = min(count, len(maps))
    shown = data.batch(torch.arange(count))[0] if count else None
    mean_map = maps.mean(0)
    title = f"{data.name} {data.split}: {len(maps)} images, {mean_map.mean():.4f} bits/dim"
    plot_pixel_bits(mean_map, path, model.config.num_bits, shown, maps[:count], title=title)
    arrays.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        arrays,
        mean=mean_map,
        per_image=maps[:count],
        images=shown.numpy() if shown is not None else np.zeros((0,), np.uint8),
    )


def _load_split(
    trained: dict[str, Any], dataset: str | None, split: str, data_dir: Path | None, num_bits: int
) -> PixelDataset:
    """The split, found where the run found its data when it is the run's dataset, with the
    run's validation carve (size and seed) so ``validation`` means the same images."""
    name = dataset or trained.get("dataset")
    if name is None:
        raise ValueError("the checkpoint does not name its dataset; pass --dataset")
    same = name == trained.get("dataset")
    if data_dir is None and same:
        data_dir = trained.get("data_dir")
    options = (trained.get("dataset_options") or {}) if same else {}
    return load_dataset(
        name,
        split,
        data_dir=data_dir,
        num_bits=num_bits,
        validation_size=trained.get("validation_size", 5000),
        seed=trained.get("seed", 0),
        **options,
    )
