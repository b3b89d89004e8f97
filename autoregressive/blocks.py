"""The block registry and the built-in ``gated_resnet`` block.

A PixelCNN++ is a stack of blocks on two streams; which block is used is a name in the
config. ``register_block`` adds a name; installed packages can add names through the
entry-point group ``pixelcnnpp.blocks``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

from pixelcnnpp.registry import Registry

from .layers import Dropout, NetworkInNetwork, ShiftedConv2d, get_nonlinearity

STREAMS = ("u", "ul")

BLOCKS = Registry("block", entry_point_group="pixelcnnpp.blocks")
CONTRACT_HINT = (
    "; the block contract's keywords are channels, stream, skip_channels, dropout, cond_dim, "
    "nonlinearity, weight_norm, resolution, and the config's block_kwargs (see register_block)"
)
CONTRACT_KEYWORDS = (
    "channels",
    "stream",
    "skip_channels",
    "dropout",
    "cond_dim",
    "nonlinearity",
    "weight_norm",
    "resolution",
)


def register_block(
    name: str,
    factory: Callable[..., nn.Module] | None = None,
    *,
    override: bool = False,
    graph_breaks: str | None = None,
):
    """Register a block factory (a class or a function) under ``name``; usable as a decorator.

    **The block contract.** The model calls the factory with keywords::

        factory(channels=F, stream="u" | "ul", skip_channels=S, dropout=p,
                cond_dim=D | None, nonlinearity="concat_elu", weight_norm=True,
                resolution=(H, W) | None, **block_kwargs)

    A factory need only declare the keywords it uses (or take ``**kwargs``): ``channels`` and
    ``stream`` always, ``skip_channels`` when the block gets a skip input, ``cond_dim`` when
    the model is conditioned; the others are passed when declared.

    - ``channels``: channels of the stream; the block maps ``[B, F, H, W]`` to the same shape.
    - ``stream``: ``"u"``, the vertical stream, whose position ``(i, j)`` summarises the rows
      above ``i``; or ``"ul"``, the horizontal stream, whose ``(i, j)`` summarises the pixels
      before ``(i, j)`` in raster order.
    - ``skip_channels``: channels of the ``skip`` input (0: the block gets ``skip=None``). On
      the ``ul`` stream it is the ``u`` stream at the same position, concatenated in the down
      pass with the up pass's ``ul``; on the ``u`` stream in the down pass the up pass's ``u``.
    - ``dropout``: dropout probability inside the block (applied only in training mode).
    - ``cond_dim``: size of the conditioning vector ``cond [B, D]`` (one-hot class labels and/or
      a user vector), or ``None``.
    - ``nonlinearity``, ``weight_norm``: the model's choices, to follow or ignore.
    - ``resolution``: ``(H, W)`` of the block's input in the model (the image size halved once
      per stage), or ``None`` when the block is built on its own (``build_block``, the
      causality checks). Passed only to a factory that names it in its signature (not through
      ``**kwargs``), so that blocks written before it existed keep working.

    The config's ``block_kwargs`` are passed too, always: a factory that does not declare one
    of them is a ``ValueError`` naming the keywords it accepts.

    The block's ``forward(x, skip=None, cond=None)`` returns a tensor shaped like ``x``.

    **What it must not look at.** On the ``u`` stream, output ``(i, j)`` may depend on inputs
    (``x`` and ``skip``) at rows ``<= i`` only; on the ``ul`` stream, on inputs at positions
    ``<= (i, j)`` in raster order only (rows above, and row ``i`` up to column ``j``). Use
    ``ShiftedConv2d(kind="down")`` on ``u`` and ``kind="down_right"`` on ``ul``, or 1x1 layers.
    ``check_causality(block)`` proves it; the model checks every block name once.

    **Cached sampling.** A block that sets the attribute ``incremental_context = (rows_above,
    cols_left, cols_right)`` declares that its output at ``(i, j)`` depends only on inputs in
    rows ``i - rows_above .. i`` and columns ``j - cols_left .. j + cols_right``, and only through
    zero-padded local operations, so it can be evaluated on a window of that size. Blocks
    without it make ``method="cached"`` fall back to naive sampling with a warning.

    A block whose output reaches further (attention over every earlier position) also has a
    method ``incremental_state(batch, size, cond) -> state``, ``size = (H, W)`` of its input.
    The sampler then calls ``state.feed(x, skip, row, c0, c1) -> [B, F, c1 - c0]`` instead of
    ``forward``: the outputs at ``(row, c0 .. c1 - 1)``, given the inputs in the window that
    ``incremental_context`` declares around them (rows ``row - rows_above .. row``, columns
    ``c0 - cols_left .. c1 - 1 + cols_right``, cut at the image borders; inputs after the
    positions on the ``ul`` stream hold zeros). Every position is fed once, in raster order:
    whole rows on ``u``, runs of columns or single columns on ``ul``; the state keeps what
    later positions need (a key/value cache).

    **torch.compile.** ``torch.compile`` of the model's training loss (``model.nll``) traces
    every block into one graph, and the tests hold every registered block to that. A block
    that cannot be traced whole (it reads a tensor's value on the host, calls untraceable
    code) declares why: ``graph_breaks="..."`` here, or the attribute ``graph_breaks`` on the
    factory (how an entry-point plugin declares it). Its model then compiles in pieces.
    """
    if graph_breaks is not None and (not isinstance(graph_breaks, str) or not graph_breaks):
        raise ValueError(
            f"graph_breaks must be None or a reason (a non-empty str), got {graph_breaks!r}"
        )

    def add(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        f = BLOCKS.register(name, f, override=override)
        if graph_breaks is not None:
            f.graph_breaks = graph_breaks
        return f

    return add if factory is None else add(factory)


def get_block(name: str) -> Callable[..., nn.Module]:
    """The factory registered under ``name`` (unknown names list the known ones)."""
    return BLOCKS.get(name)


def block_graph_breaks(name: str) -> str | None:
    """Why the block registered under ``name`` breaks a compiled graph, or ``None`` when it
    compiles whole (see ``register_block``)."""
    return getattr(get_block(name), "graph_breaks", None)


def list_blocks() -> list[str]:
    """Names of the registered blocks, sorted (entry-point plugins included)."""
    return BLOCKS.names()


def build_block(
    name: str,
    channels: int,
    stream: str,
    skip_channels: int = 0,
    dropout: float = 0.0,
    cond_dim: int | None = None,
    nonlinearity: str = "concat_elu",
    weight_norm: bool = True,
    resolution: tuple[int, int] | None = None,
    block_kwargs: dict | None = None,
) -> nn.Module:
    """Call the factory registered under ``name`` with the contract's keywords and the
    config's ``block_kwargs``."""
    if stream not in STREAMS:
        raise ValueError(f"stream must be 'u' or 'ul', got {stream!r}")
    block_kwargs = dict(block_kwargs or {})
    clash = sorted(set(block_kwargs) & set(CONTRACT_KEYWORDS))
    if clash:
        raise ValueError(
            f"block_kwargs must not set the block contract's keywords {CONTRACT_KEYWORDS}, "
            f"got {', '.join(map(repr, clash))}"
        )
    required = {"channels": channels, "stream": stream, **block_kwargs}
    if skip_channels:
        required["skip_channels"] = skip_channels
    if cond_dim:
        required["cond_dim"] = cond_dim
    optional = {
        "skip_channels": skip_channels,
        "dropout": dropout,
        "cond_dim": cond_dim,
        "nonlinearity": nonlinearity,
        "weight_norm": weight_norm,
    }
    if _declares(get_block(name), "resolution"):
        optional["resolution"] = None if resolution is None else tuple(resolution)
    block = BLOCKS.create(name, required, optional, hint=CONTRACT_HINT)
    if not isinstance(block, nn.Module):
        raise ValueError(
            f"block {name!r} must build an nn.Module, its factory returned {type(block).__name__}"
        )
    return block


def _declares(factory: Callable[..., nn.Module], keyword: str) -> bool:
    """Whether ``factory``'s signature names ``keyword`` (``**kwargs`` does not count)."""
    try:
        parameter = inspect.signature(factory).parameters.get(keyword)
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


@register_block("gated_resnet")
class GatedResnet(nn.Module):
    """The gated residual block of PixelCNN++.

    ``c1 = conv(f(x)) [+ nin(f(skip))]; c2 = conv(dropout(f(c1))) [+ linear(cond)];
    out = x + a * sigmoid(b)`` with ``a, b`` the halves of ``c2``, ``f`` the nonlinearity and
    ``conv`` a 2x3 down-shifted (``u``) or 2x2 down-right-shifted (``ul``) convolution.
    ``[B, F, H, W] -> [B, F, H, W]``.
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
    ):
        super().__init__()
        self.stream, self.skip_channels, self.cond_dim = stream, skip_channels, cond_dim
        self.f, mult = get_nonlinearity(nonlinearity)
        kind, kernel = ("down", (2, 3)) if stream == "u" else ("down_right", (2, 2))
        self.conv_in = ShiftedConv2d(
            mult * channels, channels, kernel, kind, weight_norm=weight_norm
        )
        self.skip = (
            NetworkInNetwork(mult * skip_channels, channels, weight_norm) if skip_channels else None
        )
        self.dropout = Dropout(dropout)
        self.conv_out = ShiftedConv2d(
            mult * channels, 2 * channels, kernel, kind, weight_norm=weight_norm, init_scale=0.1
        )
        self.cond = nn.Linear(cond_dim, 2 * channels, bias=False) if cond_dim else None
        if self.cond is not None:
            nn.init.normal_(self.cond.weight, 0.0, 0.05)
        # Two stacked 2-row kernels: rows i-2..i; columns +-2 (u) or 2 to the left (ul).
        self.incremental_context = (2, 2, 2) if stream == "u" else (2, 2, 0)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        c1 = self.conv_in(self.f(x))
        if self.skip is not None:
            c1 = c1 + self.skip(self.f(skip))
        c2 = self.conv_out(self.dropout(self.f(c1)))
        if self.cond is not None:
            c2 = c2 + self.cond(cond)[:, :, None, None]
        a, b = c2.chunk(2, dim=1)
        return torch.addcmul(x, a, torch.sigmoid(b))
