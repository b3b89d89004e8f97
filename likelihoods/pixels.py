"""Conventions for integer pixels: bit depths, scaling to [-1, 1], channel pairs, validation.

Pixels are integers in ``[0, 2**num_bits - 1]`` laid out ``[*, C, H, W]``. The networks
see them scaled to ``[-1, 1]``; :func:`scale_pixels` is the one place that scaling is done.
"""

from __future__ import annotations

import torch

from pixelcnnpp.checks import check_int

MAX_BITS = 16


def exists(value) -> bool:
    return value is not None


def physical(t: torch.Tensor) -> torch.Tensor:
    """``t`` without ``torch.func`` wrappers: under ``vmap`` the tensor of every batch member.

    For checks that read values on the host (which ``vmap`` refuses): checking the physical
    tensor checks all batch members at once, so bad input raises as it does eagerly. Never used
    in the computation itself.
    """
    if torch.compiler.is_compiling():  # traced code sees no functorch wrappers
        return t
    while torch._C._functorch.is_functorch_wrapped_tensor(t):
        t = torch._C._functorch.get_unwrapped(t)
    return t


def check_num_bits(num_bits: int) -> int:
    """Return ``num_bits`` if it is an integer in ``1..16``, else raise ``ValueError``."""
    return check_int("num_bits", num_bits, 1, MAX_BITS)


def num_levels(num_bits: int) -> int:
    """Number of integer values a sub-pixel can take: ``2**num_bits``."""
    return 2 ** check_num_bits(num_bits)


def num_pairs(num_channels: int) -> int:
    """Number of (later, earlier) channel pairs: ``C * (C - 1) // 2``."""
    return num_channels * (num_channels - 1) // 2


def pair_slice(channel: int) -> slice:
    """Pairs ``(channel, 0), (channel, 1), ..., (channel, channel - 1)`` in pair order.

    Pair order is ``(1, 0), (2, 0), (2, 1), (3, 0), ...``, so the pairs of one channel are
    contiguous and start at ``channel * (channel - 1) // 2``.
    """
    start = channel * (channel - 1) // 2
    return slice(start, start + channel)


def scale_pixels(x: torch.Tensor, num_bits: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Integer pixels ``[0, 2**bits - 1]`` -> floats in ``[-1, 1]``: ``x * 2 / (2**bits - 1) - 1``."""
    dtype = dtype or torch.get_default_dtype()
    return x.to(dtype) * (2.0 / (num_levels(num_bits) - 1)) - 1.0


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype likelihood arithmetic runs in: float32 for half types, else the widest given."""
    dtype = torch.promote_types(tensors[0].dtype, torch.float32)
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def validate_pixels(
    x,
    event_shape: torch.Size,
    batch_shape: torch.Size,
    num_bits: int,
    name: str = "x",
) -> None:
    """Raise ``ValueError`` unless ``x`` holds integer pixels of shape ``[..., *batch, C, H, W]``.

    Integer dtypes and floats holding whole numbers are accepted; the message names what was
    expected and what came.
    """
    hi = num_levels(num_bits) - 1
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of integer pixels, got {type(x).__name__}")
    if x.dtype == torch.bool or x.is_complex():
        raise ValueError(f"{name} must hold integer pixels in [0, {hi}], got dtype {x.dtype}")
    expected = "[..., " + ", ".join(str(s) for s in (*batch_shape, *event_shape)) + "]"
    if x.dim() < len(event_shape) or tuple(x.shape[x.dim() - len(event_shape) :]) != tuple(
        event_shape
    ):
        raise ValueError(
            f"{name} must have shape {expected} (event shape C, H, W = {tuple(event_shape)}), "
            f"got {tuple(x.shape)}"
        )
    try:
        torch.broadcast_shapes(x.shape[: x.dim() - len(event_shape)], batch_shape)
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(x.shape)} does not broadcast against the batch shape "
            f"{tuple(batch_shape)}; expected {expected}"
        ) from None
    if x.numel() == 0:
        return
    x = physical(x)  # values only from here on
    if x.is_floating_point():
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} must hold integer pixels in [0, {hi}], found NaN or inf")
        if not bool((x == x.round()).all()):
            example = x[x != x.round()].flatten()[0].item()
            hint = (
                " (it looks scaled; pass the integer pixel values, e.g. (x + 1) / 2 * "
                f"{hi} rounded)"
                if float(x.min()) >= -1.0 and float(x.max()) <= 1.0
                else ""
            )
            raise ValueError(
                f"{name} must hold integer pixels in [0, {hi}], found the non-integer value "
                f"{example:g}{hint}"
            )
    lo_seen, hi_seen = torch.aminmax(x)
    if lo_seen < 0 or hi_seen > hi:
        raise ValueError(
            f"{name} must hold pixels in [0, {hi}] for num_bits={num_bits}, "
            f"got values in [{lo_seen.item():g}, {hi_seen.item():g}]"
        )
