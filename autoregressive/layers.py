"""Causal layers of PixelCNN++: shifted convolutions, their strided and transposed forms,
network-in-network, concat_elu, and weight normalization.

Two streams keep the model autoregressive in raster order:

- the vertical stream ``u`` (down-shifted convolutions): position ``(i, j)`` sees rows above;
- the horizontal stream ``ul`` (down-right-shifted convolutions): position ``(i, j)`` sees rows
  above and the pixels to its left.

Axis key: ``B`` batch, ``F`` channels (filters), ``H, W`` height and width.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as apply_weight_norm

from pixelcnnpp.registry import Registry


class _ConcatElu(torch.autograd.Function):
    """``elu([x, -x])`` in one output buffer, with one exponential per element of ``x``.

    With ``n = expm1(-|x|)``: ``elu(x) = max(x, n)`` and ``elu(-x) = max(-x, n)`` (for
    ``x > 0``, ``n < 0 < x``; for ``x <= 0``, ``n = expm1(x) >= x``). The backward is ELU's
    backward on the saved output, differentiable again (``create_graph=True`` works).
    """

    @staticmethod
    def forward(ctx, x):
        n = x.abs().neg_().expm1_()
        f = x.shape[1]
        # channels_last in, channels_last out (a cropped view included)
        layout = (
            torch.channels_last
            if x.dim() == 4 and x.shape[1] > 1 and x.stride(1) < x.stride(3)
            else torch.contiguous_format
        )
        y = torch.empty(
            (x.shape[0], 2 * f, *x.shape[2:]), dtype=x.dtype, device=x.device, memory_format=layout
        )
        torch.maximum(x, n, out=y[:, :f])
        neg = y[:, f:]
        torch.neg(x, out=neg)
        torch.maximum(neg, n, out=neg)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        g = torch.ops.aten.elu_backward(grad, 1.0, 1.0, 1.0, True, y)
        f = y.shape[1] // 2
        return g[:, :f] - g[:, f:]


def concat_elu(x: torch.Tensor) -> torch.Tensor:
    """``elu([x, -x])`` along channels: ``[B, F, H, W] -> [B, 2F, H, W]`` (the paper's default).

    Computed with one ``expm1`` per input element instead of one per output element; within
    one unit in the last place of ``F.elu(torch.cat([x, -x], 1))`` (as far as ELU's own
    vectorized and scalar paths are from each other), gradients within rounding of it.
    """
    if x.dim() < 2:
        raise ValueError(
            f"concat_elu needs a channel dimension [B, F, ...], got shape {tuple(x.shape)}"
        )
    if torch.compiler.is_compiling():
        # Compiled code fuses the concatenation and the ELU into one kernel, forward and
        # backward; the eager function's writes into channel slices would break the graph.
        return F.elu(torch.cat([x, -x], dim=1))
    return _ConcatElu.apply(x)


class Nonlinearity(NamedTuple):
    """An activation a config can name: ``function`` maps ``[B, F, H, W]`` to
    ``[B, channel_multiplier * F, H, W]``."""

    function: object
    channel_multiplier: int


def _check_nonlinearity(name: str, obj: object) -> None:
    if not isinstance(obj, Nonlinearity) or not callable(obj.function):
        raise ValueError(
            f"nonlinearity {name!r} must be a Nonlinearity(function, channel_multiplier), "
            f"got {obj!r}"
        )


NONLINEARITIES = Registry("nonlinearity", check=_check_nonlinearity)
NONLINEARITIES.register("concat_elu", Nonlinearity(concat_elu, 2))
NONLINEARITIES.register("elu", Nonlinearity(F.elu, 1))


def get_nonlinearity(name: str) -> Nonlinearity:
    """``(function, channel multiplier)`` of a nonlinearity named in the config."""
    return NONLINEARITIES.get(name)


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """Move every row one down, a zero row on top: ``[B, F, H, W] -> [B, F, H, W]``."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def right_shift(x: torch.Tensor) -> torch.Tensor:
    """Move every column one right, a zero column on the left: ``[B, F, H, W] -> same``."""
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


def weight_normed(
    module: nn.Module, enabled: bool, init_scale: float = 1.0, dim: int = 0
) -> nn.Module:
    """Weight-normalize ``module`` (``w = g * v / |v|``) when ``enabled``.

    ``init_scale`` is the target standard deviation of the module's outputs after the paper's
    data-dependent initialisation (see ``initialize_weight_norm``).
    """
    module.init_scale = init_scale
    if enabled:
        nn.init.normal_(module.weight, 0.0, 0.05)
        apply_weight_norm(module, dim=dim)
        # torch gives the gain of a transposed conv (dim=1, shape [1, F, 1, 1]) the strides
        # (1, 1, 1, 1); its gradient comes back with the standard (F, 1, 1, 1). DDP buckets
        # the parameter's layout and copies every mismatched gradient, with a warning.
        for p in module.parametrizations.weight.parameters():
            p.data = torch.empty(p.shape, dtype=p.dtype, device=p.device).copy_(p.data)
    return module


class _CroppedConv2d(nn.Conv2d):
    """A convolution zero-padded on both sides and cropped to the first ``ceil(H / stride)``
    rows and ``ceil(W / stride)`` columns: the same result as padding only the top (and left)
    side, without copying the input into a padded tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        s = self.stride[0]
        return super().forward(x)[..., : (h - 1) // s + 1, : (w - 1) // s + 1]


class ShiftedConv2d(nn.Module):
    """Convolution padded so that it never sees below (and, if ``down_right``, right of)
    the output position.

    ``down`` (kernel ``(kh, kw)``, ``kw`` odd): output ``(i, j)`` sees input rows
    ``i - kh + 1 .. i`` and columns ``j - (kw-1)/2 .. j + (kw-1)/2``.
    ``down_right``: rows ``i - kh + 1 .. i`` and columns ``j - kw + 1 .. j``.
    With ``stride=2`` the output has ``ceil(H/2) x ceil(W/2)`` positions, output ``(I, J)``
    standing for input ``(2I, 2J)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        kind: str = "down",
        stride: int = 1,
        weight_norm: bool = True,
        init_scale: float = 1.0,
    ):
        super().__init__()
        kh, kw = kernel_size
        if kind == "down":
            if kw % 2 == 0:
                raise ValueError(
                    f"a down-shifted conv needs an odd kernel width, got {kernel_size}"
                )
            padding = (kh - 1, (kw - 1) // 2)
        elif kind == "down_right":
            padding = (kh - 1, kw - 1)
        else:
            raise ValueError(f"kind must be 'down' or 'down_right', got {kind!r}")
        self.kind, self.kernel_size, self.stride = kind, (kh, kw), stride
        conv = _CroppedConv2d(in_channels, out_channels, kernel_size, stride, padding)
        self.conv = weight_normed(conv, weight_norm, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ShiftedConvTranspose2d(nn.Module):
    """Stride-2 transposed convolution that upsamples a shifted stream, cropped to the target
    size so that output ``(i, j)`` only uses the low-resolution position ``(i // 2, .)`` that
    stands for pixels before ``(i, j)``. Works for odd sizes (``4 -> 7``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        kind: str = "down",
        weight_norm: bool = True,
        init_scale: float = 1.0,
    ):
        super().__init__()
        if kind not in ("down", "down_right"):
            raise ValueError(f"kind must be 'down' or 'down_right', got {kind!r}")
        kh, kw = kernel_size
        self.kind, self.kernel_size = kind, (kh, kw)
        self.col_offset = (kw - 1) // 2 if kind == "down" else 0
        deconv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=2)
        self.deconv = weight_normed(deconv, weight_norm, init_scale, dim=1)

    def forward(self, x: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
        h, w = output_size
        y = self.deconv(x)
        return y[:, :, :h, self.col_offset : self.col_offset + w]


@functools.lru_cache(maxsize=64)
def _mask_table(
    bits: int, threshold: int, scale: float, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """``[256, 8 // bits]``: for every byte, its ``bits``-wide fields from the lowest up, each
    mapped to 0 (field ``< threshold``: dropped) or ``scale`` (kept)."""
    fields = (torch.arange(256)[:, None] >> (bits * torch.arange(8 // bits))) & ((1 << bits) - 1)
    return ((fields >= threshold) * scale).to(dtype=dtype, device=device)


def dropout_mask(x: torch.Tensor, p: float) -> tuple[torch.Tensor, float]:
    """A dropout mask shaped (and laid out) like ``x``: each element independently 0 with
    probability ``p'``, else ``1 / (1 - p')``; and ``p'``: ``p`` itself when ``256 p`` is an
    integer (0.5, 0.25, ...), else ``p`` rounded to a multiple of 1/65536.

    The mask is cut from whole random bits (64 per draw of torch's generator), not from one
    float per element: ``p = 0.5`` uses one bit per element, ``p = 0.25`` two, ``p = k/256``
    eight, every other ``p`` sixteen. Bytes of random bits become mask values through a
    256-entry table, which makes the mask several times cheaper than ``bernoulli_`` on CPU.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"dropout probability must be in (0, 1) to draw a mask, got {p!r}")
    n = x.numel()
    bits = next((b for b in (1, 2, 4, 8) if float(p * 2**b).is_integer()), 16)
    threshold = round(p * 2**bits)  # a field below the threshold drops its element
    effective = threshold / 2**bits
    scale = 1.0 / (1.0 - effective)
    draws = (n * bits + 63) // 64
    words = torch.randint(-(2**63), 2**63 - 1, (draws,), dtype=torch.int64, device=x.device)
    if bits <= 8:
        per_byte = 8 // bits
        table = _mask_table(bits, threshold, scale, x.dtype, x.device)
        index = words.view(torch.uint8)[: (n + per_byte - 1) // per_byte].int()
        mask = table.index_select(0, index).view(-1)[:n]
    else:
        fields = words.view(torch.int16)[:n]  # uniform on [-32768, 32767]
        mask = (fields >= threshold - 32768).to(x.dtype).mul_(scale)
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        b, c, h, w = x.shape
        return mask.view(b, h, w, c).permute(0, 3, 1, 2), effective
    return mask.view(x.shape), effective


class Dropout(nn.Module):
    """Inverted dropout: each element is zeroed with probability ``p``, the rest scaled by
    ``1 / (1 - p)``. In eager mode on CPU the mask comes from :func:`dropout_mask` (several
    times faster than the ``bernoulli_`` of ``nn.Dropout``); elsewhere it is ``F.dropout``."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p!r}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or torch.compiler.is_compiling():
            return F.dropout(x, self.p, training=True)  # compiled code draws its own masks
        mask, _ = dropout_mask(x, self.p)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class PointwiseConv2d(nn.Conv2d):
    """A 1x1 convolution that runs as one batched matrix product on channels-first CPU input
    (``bias + W @ x[b]`` over the ``H W`` positions of each image), faster there than
    oneDNN's 1x1 convolution forward and backward (``benchmarks/layers.py``); other
    devices and layouts (channels_last) take the convolution. Same parameters and state dict
    as ``nn.Conv2d``."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type != "cpu"
            or x.dim() != 4
            or not x.is_contiguous()
            or x.shape[1] != self.in_channels
        ):
            return super().forward(x)  # channels_last, or a shape the convolution will reject
        b, c, h, w = x.shape
        weight = self.weight.reshape(1, self.out_channels, c).expand(b, -1, -1)
        columns = x.view(b, c, h * w)
        if self.bias is None:
            y = torch.bmm(weight, columns)
        else:
            y = torch.baddbmm(self.bias.view(1, -1, 1).expand(b, -1, 1), weight, columns)
        return y.view(b, self.out_channels, h, w)


class NetworkInNetwork(nn.Module):
    """A 1x1 convolution ("nin"): ``[B, F_in, H, W] -> [B, F_out, H, W]``, position-wise."""

    def __init__(
        self, in_channels: int, out_channels: int, weight_norm: bool = True, init_scale: float = 1.0
    ):
        super().__init__()
        self.conv = weight_normed(
            PointwiseConv2d(in_channels, out_channels), weight_norm, init_scale
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
