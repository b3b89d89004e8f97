"""Image grids (PNG) and learning-curve plots."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageDraw, ImageFont

from pixelcnnpp.checks import check_int

# A tile this many screen pixels on its longer side is comfortable to look at (28x28 -> 4x).
COMFORTABLE_TILE = 112


def default_scale(height: int, width: int) -> int:
    """The integer upscaling that makes an ``height x width`` tile at least
    ``COMFORTABLE_TILE`` pixels on its longer side (1 for large images)."""
    return max(1, math.ceil(COMFORTABLE_TILE / max(height, width)))


def _check_grid_options(nrow: int | None, scale: int | None) -> None:
    for name, value in (("nrow", nrow), ("scale", scale)):
        if value is not None:
            check_int(name, value, 1, expected="a positive integer or None")


def image_grid(
    images: torch.Tensor,
    num_bits: int = 8,
    nrow: int | None = None,
    padding: int = 2,
    scale: int = 1,
) -> np.ndarray:
    """Tile integer images ``[N, C, H, W]`` (C = 1 or 3) into one ``uint8`` array ``[H', W', C]``,
    ``nrow`` tiles per row (default: a square), every pixel repeated ``scale`` times each way.

    Values are rescaled from ``[0, 2**num_bits - 1]`` to ``[0, 255]``; missing tiles are black.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, C, H, W] with C = 1 or 3, got {tuple(images.shape)}")
    _check_grid_options(nrow, scale)
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    scaled = (
        (images.detach().cpu().double() * (255.0 / (2**num_bits - 1)))
        .round()
        .clamp(0, 255)
        .to(torch.uint8)
    )
    canvas = torch.zeros(ncol * nrow, c, h + padding, w + padding, dtype=torch.uint8)
    canvas[:n, :, :h, :w] = scaled
    grid = rearrange(canvas, "(r q) c h w -> (r h) (q w) c", r=ncol, q=nrow)
    grid = grid[: ncol * (h + padding) - padding, : nrow * (w + padding) - padding].numpy()
    return grid.repeat(scale, axis=0).repeat(scale, axis=1)


def save_image_grid(
    images: torch.Tensor,
    path: str | os.PathLike,
    num_bits: int = 8,
    nrow: int | None = None,
    scale: int | None = None,
) -> Path:
    """Write ``images [N, C, H, W]`` as one PNG grid, scaled up by ``scale`` (default:
    ``default_scale`` of the image size); returns the path."""
    _check_grid_options(nrow, scale)
    scale = scale or default_scale(*images.shape[-2:])
    grid = image_grid(images, num_bits, nrow, padding=2, scale=scale)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
    return path


def side_by_side(
    grids: Sequence[np.ndarray], gap: int = 8, labels: Sequence[str] | None = None
) -> np.ndarray:
    """Grids ``[H_i, W_i, C]`` placed left to right on one black canvas; with ``labels``, each
    grid's label written above it in white."""
    if labels is not None and len(labels) != len(grids):
        raise ValueError(f"labels must name each of the {len(grids)} grids, got {len(labels)}")
    c = max(g.shape[2] for g in grids)
    grids = [np.repeat(g, 3, axis=2) if g.shape[2] < c else g for g in grids]
    font = ImageFont.load_default(size=14) if labels is not None else None
    top = 0 if labels is None else 22
    height = max(g.shape[0] for g in grids) + top
    width = sum(g.shape[1] for g in grids) + gap * (len(grids) - 1)
    if labels is not None:  # wide enough for every label
        width = max(width, sum(font.getbbox(t)[2] + gap for t in labels))
    canvas = np.zeros((height, width, c), dtype=np.uint8)
    x, starts = 0, []
    for g in grids:
        canvas[top : top + g.shape[0], x : x + g.shape[1]] = g
        starts.append(x)
        x += g.shape[1] + gap
    if labels is None:
        return canvas
    image = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    draw = ImageDraw.Draw(image)
    for start, text in zip(starts, labels, strict=True):
        draw.text((start, 3), text, fill=255 if c == 1 else (255, 255, 255), font=font)
    out = np.asarray(image)
    return out[..., None] if out.ndim == 2 else out


def plot_learning_curves(
    runs: Mapping[str, list[dict[str, Any]]], path: str | os.PathLike, title: str = ""
) -> Path:
    """Train (and validation) bits/dim against step for one or more runs' metrics records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for i, (name, records) in enumerate(runs.items()):
        color = f"C{i}"
        train = [(r["step"], r["bits_per_dim"]) for r in records if r.get("kind") == "train"]
        val = [(r["step"], r["bits_per_dim"]) for r in records if r.get("kind") == "validation"]
        if train:
            # a line through one point draws nothing: short runs get markers as well
            marker = "o" if len(train) <= 20 else None
            ax.plot(*zip(*train, strict=True), color=color, alpha=0.8, marker=marker,
                    markersize=3, label=f"{name} train")  # fmt: skip
        if val:
            ax.plot(*zip(*val, strict=True), "o--", color=color, label=f"{name} validation (EMA)")
    ax.set_xlabel("step")
    ax.set_ylabel("bits/dim")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return _save_figure(fig, path)


def plot_pixel_bits(
    mean_map: np.ndarray,
    path: str | os.PathLike,
    num_bits: int = 8,
    images: torch.Tensor | None = None,
    maps: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """The mean bits/dim at each pixel position over a split and, for ``images``
    (``[N, C, H, W]`` integers) with their ``maps`` (``[N, H, W]``), each image beside its own
    per-pixel bits, on one colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 0 if images is None else len(images)
    fig, axes = plt.subplots(1 + rows, 2, figsize=(6, 3 * (1 + rows)), dpi=120, squeeze=False)
    high = float(np.percentile(maps, 99)) if maps is not None and rows else float(mean_map.max())
    shown = axes[0, 0].imshow(mean_map, cmap="magma")
    axes[0, 0].set_title("mean bits/dim per position")
    fig.colorbar(shown, ax=axes[0, 0], fraction=0.046)
    axes[0, 1].axis("off")
    axes[0, 1].text(0.0, 0.5, title, wrap=True)
    for i in range(rows):
        picture = images[i].float() / (2**num_bits - 1)
        picture = picture[0] if picture.shape[0] == 1 else picture.permute(1, 2, 0)
        axes[1 + i, 0].imshow(picture.numpy(), cmap="gray", vmin=0.0, vmax=1.0)
        axes[1 + i, 0].set_title(f"image {i}")
        drawn = axes[1 + i, 1].imshow(maps[i], cmap="magma", vmin=0.0, vmax=max(high, 1e-9))
        axes[1 + i, 1].set_title(f"bits/dim per pixel (mean {maps[i].mean():.3f})")
        fig.colorbar(drawn, ax=axes[1 + i, 1], fraction=0.046)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return _save_figure(fig, path)


def _save_figure(fig, path: str | os.PathLike) -> Path:
    """Lay out, write (making the folder) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
