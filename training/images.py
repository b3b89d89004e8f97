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
from PIL import Image


def image_grid(
    images: torch.Tensor, num_bits: int = 8, nrow: int | None = None, padding: int = 2
) -> np.ndarray:
    """Tile integer images ``[N, C, H, W]`` (C = 1 or 3) into one ``uint8`` array ``[H', W', C]``.

    Values are rescaled from ``[0, 2**num_bits - 1]`` to ``[0, 255]``; missing tiles are black.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, C, H, W] with C = 1 or 3, got {tuple(images.shape)}")
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
    return grid[: ncol * (h + padding) - padding, : nrow * (w + padding) - padding].numpy()


def save_image_grid(
    images: torch.Tensor, path: str | os.PathLike, num_bits: int = 8, nrow: int | None = None
) -> Path:
    """Write ``images [N, C, H, W]`` as one PNG grid; returns the path."""
    grid = image_grid(images, num_bits, nrow)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
    return path


def side_by_side(grids: Sequence[np.ndarray], gap: int = 8) -> np.ndarray:
    """Grids ``[H_i, W_i, C]`` placed left to right on one black canvas."""
    c = max(g.shape[2] for g in grids)
    grids = [np.repeat(g, 3, axis=2) if g.shape[2] < c else g for g in grids]
    height = max(g.shape[0] for g in grids)
    width = sum(g.shape[1] for g in grids) + gap * (len(grids) - 1)
    canvas = np.zeros((height, width, c), dtype=np.uint8)
    x = 0
    for g in grids:
        canvas[: g.shape[0], x : x + g.shape[1]] = g
        x += g.shape[1] + gap
    return canvas


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
            ax.plot(*zip(*train, strict=True), color=color, alpha=0.8, label=f"{name} train")
        if val:
            ax.plot(*zip(*val, strict=True), "o--", color=color, label=f"{name} validation (EMA)")
    ax.set_xlabel("step")
    ax.set_ylabel("bits/dim")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
