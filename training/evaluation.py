"""Bits/dim over a whole split, with a confidence interval from the per-image values."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats

from pixelcnnpp.autoregressive import exact_float32
from pixelcnnpp.likelihoods import bits_per_dim

from .distributed import DistContext, all_gather_rows
from .reporting import Reporter


@dataclass
class EvalResult:
    """Bits/dim of a split: the mean over images, its 95% confidence interval, the values."""

    bits_per_dim: float
    ci_low: float
    ci_high: float
    num_images: int
    seconds: float
    split: str = "test"
    per_image: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def images_per_sec(self) -> float:
        return self.num_images / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        return {
            "split": self.split,
            "bits_per_dim": self.bits_per_dim,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "num_images": self.num_images,
            "seconds": self.seconds,
            "images_per_sec": self.images_per_sec,
        }


def confidence_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean of ``values`` (the images are independent draws)."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean
    half = (
        stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    )
    return mean - half, mean + half


def _check_fits(config, dataset) -> None:
    name = f"dataset {dataset.name!r} ({dataset.split})"
    if tuple(dataset.image_shape) != tuple(config.image_shape):
        raise ValueError(
            f"{name} has images of shape {tuple(dataset.image_shape)} (C, H, W); the model "
            f"was trained on {tuple(config.image_shape)}"
        )
    if dataset.num_bits != config.num_bits:
        raise ValueError(
            f"{name} holds {dataset.num_bits}-bit pixels; the model is {config.num_bits}-bit"
        )
    if config.num_classes is not None:
        if dataset.labels is None:
            raise ValueError(
                f"the model is class-conditional (num_classes={config.num_classes}); "
                f"{name} has no labels"
            )
        top = int(dataset.labels.max()) if len(dataset.labels) else 0
        if top >= config.num_classes:
            raise ValueError(
                f"{name} has labels up to {top}; the model knows {config.num_classes} classes"
            )


@torch.no_grad()
def evaluate(
    model,
    dataset,
    batch_size: int = 256,
    max_images: int | None = None,
    precision: str = "fp32",
    ctx: DistContext | None = None,
    reporter: Reporter | None = None,
) -> EvalResult:
    """Per-image bits/dim of ``dataset`` (a ``PixelDataset``) under ``model`` in eval mode.

    With several processes each evaluates its share and the values are gathered in order
    (a process whose share is empty, with fewer images than processes, takes part with none).
    ``"fp32"`` runs with TF32 off (``exact_float32``), so a GPU reports float32 bits/dim.
    A dataset whose images, bit depth or labels do not fit the model is a ``ValueError``.
    """
    ctx = ctx or DistContext(device=next(model.parameters()).device)
    reporter = reporter or Reporter()
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    if n == 0:
        raise ValueError(f"cannot evaluate on an empty split ({dataset!r})")
    _check_fits(model.config, dataset)
    share = torch.arange(ctx.rank, n, ctx.world_size)
    dims = math.prod(dataset.image_shape)
    was_training = model.training
    model.eval()
    values = []
    start = time.perf_counter()
    autocast = torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    exact = exact_float32() if precision == "fp32" else contextlib.nullcontext()
    try:
        with exact, reporter.task(f"evaluate {dataset.split}", total=len(share)) as advance:
            for first in range(0, len(share), batch_size):
                x, labels = dataset.batch(share[first : first + batch_size])
                x = x.to(ctx.device, non_blocking=True)
                labels = (
                    labels.to(ctx.device)
                    if labels is not None and model.config.num_classes
                    else None
                )
                with autocast:
                    nll = model.nll(x, labels)
                values.append(bits_per_dim(-nll.float(), dims))
                advance(len(x))
    finally:
        model.train(was_training)
    local = torch.cat(values).double() if values else torch.zeros(0, dtype=torch.float64)
    gathered = all_gather_rows(local.to(ctx.device), ctx).cpu()
    # rank r holds images r, r + W, ...: restore the dataset order
    order = torch.cat([torch.arange(r, n, ctx.world_size) for r in range(ctx.world_size)])
    per_image = torch.empty(n, dtype=torch.float64)
    per_image[order] = gathered
    per_image = per_image.numpy()
    low, high = confidence_interval(per_image)
    return EvalResult(
        float(per_image.mean()), low, high, n, time.perf_counter() - start, dataset.split, per_image
    )


@torch.no_grad()
def pixel_bits(
    model,
    dataset,
    batch_size: int = 256,
    max_images: int | None = None,
    precision: str = "fp32",
    reporter: Reporter | None = None,
) -> np.ndarray:
    """Bits/dim at every pixel position of every image: ``float64 [N, H, W]``.

    Each position's value is the negative log-likelihood of its ``C`` sub-pixels (each given
    everything before it), in bits, divided by ``C``; the mean over ``H, W`` of an image's
    map is its bits/dim. The view used to see where a model is surprised (e.g. for
    out-of-distribution detection).
    """
    reporter = reporter or Reporter()
    device = next(model.parameters()).device
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    if n == 0:
        raise ValueError(f"cannot evaluate on an empty split ({dataset!r})")
    _check_fits(model.config, dataset)
    channels = dataset.image_shape[0]
    was_training = model.training
    model.eval()
    maps = []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    exact = exact_float32() if precision == "fp32" else contextlib.nullcontext()
    try:
        with exact, reporter.task(f"per-pixel bits {dataset.split}", total=n) as advance:
            for first in range(0, n, batch_size):
                x, labels = dataset.batch(torch.arange(first, min(first + batch_size, n)))
                x = x.to(device)
                labels = (
                    labels.to(device) if labels is not None and model.config.num_classes else None
                )
                with autocast:
                    nats = model(x, labels).log_prob_pixels(x).float().sum(-3)
                maps.append((-nats.double() / (channels * math.log(2))).cpu())
                advance(len(x))
    finally:
        model.train(was_training)
    return torch.cat(maps).numpy()
