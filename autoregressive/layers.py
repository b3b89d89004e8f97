"""Causal layers of PixelCNN++: shifted convolutions, their strided and transposed forms,
network-in-network, concat_elu, and weight normalization.

Two streams keep the model autoregressive in raster order:

- the vertical stream ``u`` (down-shifted convolutions): position ``(i, j)`` sees rows above;
- the horizontal stream ``ul`` (down-right-shifted convolutions): position ``(i, j)`` sees rows
  above and the pixels to its left.

Axis key: ``B`` batch, ``F`` channels (filters), ``H, W`` height and width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as apply_weight_norm


def concat_elu(x: torch.Tensor) -> torch.Tensor:
    """``elu([x, -x])`` along channels: ``[B, F, H, W] -> [B, 2F, H, W]`` (the paper's default)."""
    return F.elu(torch.cat([x, -x], dim=1))


NONLINEARITIES = {"concat_elu": (concat_elu, 2), "elu": (F.elu, 1)}
"""Name -> (function, channel multiplier of its output)."""


def get_nonlinearity(name: str):
    """``(function, channel multiplier)`` of a nonlinearity named in the config."""
    try:
        return NONLINEARITIES[name]
    except KeyError:
        raise ValueError(
            f"unknown nonlinearity {name!r}; known: {', '.join(map(repr, NONLINEARITIES))}"
        ) from None


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


def keep_mask(x: torch.Tensor, p: float) -> tuple[torch.Tensor, float]:
    """A boolean mask shaped (and laid out) like ``x`` keeping each element with probability
    ``1 - p'``, and ``p'``: ``p`` itself when ``256 p`` is an integer (0.5, 0.25, ...), else
    ``p`` rounded to a multiple of 1/65536.

    The mask is drawn from whole random bytes (8 per 64-bit draw of torch's generator), not
    from one float per element, which makes it about 4x cheaper on CPU.
    """
    n = x.numel()
    if float(p * 256).is_integer():
        levels, threshold = 256, round(p * 256)
        words = torch.randint(
            -(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64, device=x.device
        )
        values = words.view(torch.uint8)[:n]
    else:
        levels, threshold = 65536, round(p * 65536)
        words = torch.randint(
            -(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device
        )
        values = words.view(torch.int16)[:n]
        threshold -= 32768  # int16 values are uniform on [-32768, 32767]
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        b, c, h, w = x.shape
        keep = (values.view(b, h, w, c) >= threshold).permute(0, 3, 1, 2)
    else:
        keep = (values >= threshold).view(x.shape)
    return keep, (threshold + (32768 if levels == 65536 else 0)) / levels


class Dropout(nn.Module):
    """Inverted dropout: each element is zeroed with probability ``p``, the rest scaled by
    ``1 / (1 - p)``. On CPU the mask comes from :func:`keep_mask` (several times faster than
    the ``bernoulli_`` of ``nn.Dropout``); elsewhere it is ``F.dropout``."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p!r}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        keep, p = keep_mask(x, self.p)
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class NetworkInNetwork(nn.Module):
    """A 1x1 convolution ("nin"): ``[B, F_in, H, W] -> [B, F_out, H, W]``, position-wise."""

    def __init__(
        self, in_channels: int, out_channels: int, weight_norm: bool = True, init_scale: float = 1.0
    ):
        super().__init__()
        self.conv = weight_normed(nn.Conv2d(in_channels, out_channels, 1), weight_norm, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
