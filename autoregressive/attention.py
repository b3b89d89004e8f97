"""The ``attention_resnet`` block: a gated residual block, then causal multi-head self-attention
over the positions before each one, after PixelSNAIL (Chen, Mishra, Rohaninejad, Abbeel 2018).

Queries come from the stream after the residual block; keys and values from the block's input
and its short-cut features (``skip``), at every position the stream may see: on ``ul`` the
positions strictly before ``p`` in raster order, on ``u`` the rows strictly above ``p``'s row,
so the features at ``p`` never see ``p``'s own input through attention. A position with no
such key (``(0, 0)`` on ``ul``, row 0 on ``u``) gets zeros from attention.

Axis key: ``B`` batch, ``F`` channels of the stream, ``H, W`` height and width, ``N`` positions
(``H W``, or the ``n`` positions computed at once while sampling), ``K`` keys, ``h`` heads,
``d`` key or value channels per head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from pixelcnnpp.checks import check_int

from .blocks import GatedResnet, register_block
from .layers import Dropout, NetworkInNetwork, get_nonlinearity


def attention_mask(
    stream: str, queries: torch.Tensor, keys: torch.Tensor, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which keys each query may attend to, and which queries have any.

    ``queries [N]`` and ``keys [K]`` are raster positions ``i W + j``. On ``ul`` a query sees
    the keys strictly before it, on ``u`` those in the rows strictly above. Returns
    ``(allowed [N, K], has_key [N])``; a query without keys is allowed its own position (so
    that the softmax is defined) and its output must be zeroed with ``has_key``.
    """
    q, k = queries[:, None], keys[None, :]
    allowed = k < q if stream == "ul" else k // width < q // width
    has_key = allowed.any(dim=1)
    return allowed | ((k == q) & ~has_key[:, None]), has_key


@register_block("attention_resnet")
def attention_resnet(
    channels: int,
    stream: str,
    skip_channels: int = 0,
    dropout: float = 0.5,
    cond_dim: int | None = None,
    nonlinearity: str = "concat_elu",
    weight_norm: bool = True,
    resolution: tuple[int, int] | None = None,
    num_heads: int = 2,
    key_channels: int = 16,
    max_attention_size: int = 16,
) -> nn.Module:
    """An ``AttentionResnet`` where the block's input is at most ``max_attention_size`` in
    height and width (or its resolution is unknown), a ``GatedResnet`` elsewhere.

    PixelSNAIL attends at the lower resolutions, where attention is cheap and reaches the
    farthest: at 32x32 with 3 stages, the default attends at 16x16 and 8x8. ``num_heads``,
    ``key_channels`` (per head) and ``max_attention_size`` are set through the config's
    ``block_kwargs``.
    """
    check_int("num_heads", num_heads)
    check_int("key_channels", key_channels)
    check_int("max_attention_size", max_attention_size)
    resnet = dict(
        channels=channels,
        stream=stream,
        skip_channels=skip_channels,
        dropout=dropout,
        cond_dim=cond_dim,
        nonlinearity=nonlinearity,
        weight_norm=weight_norm,
    )
    if resolution is not None and max(resolution) > max_attention_size:
        return GatedResnet(**resnet)
    return AttentionResnet(**resnet, num_heads=num_heads, key_channels=key_channels)


class AttentionResnet(nn.Module):
    """``y = gated_resnet(x, skip, cond)``, then ``out = y + a * sigmoid(b)`` with ``a, b`` the
    halves of ``nin(dropout(f(attention(q(f(y)), k, v))))`` and ``k, v = nin(f([x, skip]))``.

    The output is gated, as in the residual block it follows: the last projection starts small
    (``init_scale=0.1``) and the gate lets each channel take as much of the attention as it
    needs, so the block starts close to its residual block. ``[B, F, H, W] -> [B, F, H, W]``.
    """

    def __init__(
        self,
        channels: int,
        stream: str,
        skip_channels: int = 0,
        dropout: float = 0.5,
        cond_dim: int | None = None,
        nonlinearity: str = "concat_elu",
        weight_norm: bool = True,
        num_heads: int = 2,
        key_channels: int = 16,
    ):
        super().__init__()
        self.stream, self.skip_channels, self.cond_dim = stream, skip_channels, cond_dim
        self.num_heads, self.key_channels = num_heads, key_channels
        self.value_channels = -(-channels // num_heads)  # per head; heads together >= F
        self.resnet = GatedResnet(
            channels, stream, skip_channels, dropout, cond_dim, nonlinearity, weight_norm
        )
        self.f, mult = get_nonlinearity(nonlinearity)
        dq, dv = num_heads * key_channels, num_heads * self.value_channels
        self.split = (dq, dv)
        self.queries = NetworkInNetwork(mult * channels, dq, weight_norm)
        self.keys_values = NetworkInNetwork(mult * (channels + skip_channels), dq + dv, weight_norm)
        self.dropout = Dropout(dropout)
        self.out = NetworkInNetwork(mult * dv, 2 * channels, weight_norm, init_scale=0.1)
        # The local part's reach (the residual block); attention reaches every earlier
        # position through the key/value cache of ``incremental_state``.
        self.incremental_context = self.resnet.incremental_context

    def project(
        self, x: torch.Tensor, skip: torch.Tensor | None, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries from ``y``, keys and values from ``x`` and ``skip`` (``[B, *, H, W]``):
        ``[B, h, N, d]`` each, positions in raster order."""
        kv = self.keys_values(self.f(x if skip is None else torch.cat([x, skip], dim=1)))
        k, v = kv.split(self.split, dim=1)
        q = self.queries(self.f(y))
        return tuple(
            rearrange(t, "b (h d) y x -> b h (y x) d", h=self.num_heads) for t in (q, k, v)
        )

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        queries: torch.Tensor,
        keys: torch.Tensor,
        width: int,
    ) -> torch.Tensor:
        """``q [B, h, N, d]`` at raster positions ``queries [N]`` over ``k, v [B, h, K, d]`` at
        ``keys [K]``, causally masked: ``[B, h, N, d]``, zeros where a query has no key."""
        allowed, has_key = attention_mask(self.stream, queries, keys, width)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return a * has_key[:, None].to(a.dtype)

    def combine(self, y: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The gated residual of attention ``a [B, h, N, d]`` onto ``y [B, F, H, W]``."""
        a = rearrange(a, "b h (y x) d -> b (h d) y x", y=y.shape[-2])
        c = self.out(self.dropout(self.f(a)))
        gain, gate = c.chunk(2, dim=1)
        return torch.addcmul(y, gain, torch.sigmoid(gate))

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        y = self.resnet(x, skip, cond)
        h, w = x.shape[-2:]
        positions = torch.arange(h * w, device=x.device)
        a = self.attend(*self.project(x, skip, y), positions, positions, w)
        return self.combine(y, a)

    def incremental_state(
        self, batch: int, size: tuple[int, int], cond: torch.Tensor | None = None
    ) -> AttentionCache:
        """The cached sampler's state for this block on inputs of ``size = (H, W)``."""
        return AttentionCache(self, batch, size, cond)


class AttentionCache:
    """``AttentionResnet`` evaluated a row (``u``) or a run of columns (``ul``) at a time, for
    the cached sampler: the keys and values of every position fed so far, ``[B, h, H W, d]``,
    allocated once; the residual block on the window its ``incremental_context`` declares.

    ``feed(x, skip, row, c0, c1)`` (see ``register_block``) writes the keys and values of the
    positions ``(row, c0 .. c1 - 1)``, then attends from them over every position up to the
    last one fed; returns the block's output there, ``[B, F, c1 - c0]``.
    """

    def __init__(
        self,
        block: AttentionResnet,
        batch: int,
        size: tuple[int, int],
        cond: torch.Tensor | None,
    ):
        like = block.out.conv.bias.detach()
        h, w = size
        self.block, self.width, self.cond = block, w, cond
        self.keys = like.new_zeros(batch, block.num_heads, h * w, block.key_channels)
        self.values = like.new_zeros(batch, block.num_heads, h * w, block.value_channels)
        self.positions = torch.arange(h * w, device=like.device)

    def feed(
        self, x: torch.Tensor, skip: torch.Tensor | None, row: int, c0: int, c1: int
    ) -> torch.Tensor:
        block = self.block
        cols_left = block.incremental_context[1]
        # The positions inside the window: its last row, from column c0 on.
        j0 = c0 - max(0, c0 - cols_left)
        here = (..., slice(x.shape[-2] - 1, x.shape[-2]), slice(j0, j0 + c1 - c0))
        y = block.resnet(x, skip, self.cond)[here]  # [B, F, 1, n]
        q, k, v = block.project(x[here], None if skip is None else skip[here], y)
        p0, p1 = row * self.width + c0, row * self.width + c1
        self.keys[:, :, p0:p1] = k
        self.values[:, :, p0:p1] = v
        keys = self.positions[:p1]
        a = block.attend(
            q, self.keys[:, :, :p1], self.values[:, :, :p1], keys[p0:], keys, self.width
        )
        return block.combine(y, a)[:, :, 0]
