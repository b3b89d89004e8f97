"""Sampling from a PixelCNN++ one pixel at a time: naive, and cached (fast generation).

Naive sampling reruns the whole network for every pixel. Cached sampling (after Ramachandran
et al. 2017, "Fast Generation for Convolutional Autoregressive Models") keeps, for every
activation of the network, only its last few rows, and computes each activation at a position
exactly once, when the position becomes computable:

- the ``u`` stream (rows above) of row ``i`` at the start of row ``i``, whole rows at once;
- the ``ul`` stream (pixels before) of ``(i, j)`` at pixel ``(i, j)``;
- a level of resolution ``2**-s`` only when ``i`` (and ``j``) are multiples of ``2**s``, when a
  new low-resolution row (position) has all its inputs.

Each computation runs the layer's own ``forward`` on a small window of its inputs (the rows
and columns it declares it needs) and keeps the one output position, so any block that sets
``incremental_context`` works unchanged. Both methods draw every pixel from the head with the
same generator calls in the same order, so they return the same images.

Axis key: ``B`` batch, ``F`` channels, ``K`` rows kept, ``H_s, W_s`` size at level ``s``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from pixelcnnpp.likelihoods import scale_pixels

from .layers import down_shift, right_shift

METHODS = ("cached", "naive")


def sample(
    model,
    n,
    labels=None,
    cond=None,
    temperature=1.0,
    method="cached",
    generator=None,
    progress=None,
):
    """Draw ``n`` images ``[n, C, H, W]`` from ``model``; see ``PixelCNNPP.sample``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    temperature = float(temperature)
    if not temperature > 0.0 or temperature == float("inf"):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    hvec = model.check_inputs(None, labels, cond, batch=n)
    if method == "cached":
        missing = unsupported_blocks(model)
        if missing:
            warnings.warn(
                f"cached sampling needs blocks that declare incremental_context; {', '.join(missing)} "
                "does not, so sampling falls back to method='naive'",
                stacklevel=3,
            )
            method = "naive"
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), parametrize.cached():
            run = _sample_cached if method == "cached" else _sample_naive
            return run(model, n, hvec, temperature, generator, progress)
    finally:
        model.train(was_training)


def unsupported_blocks(model) -> list[str]:
    """Names (types) of the model's blocks that cannot be evaluated incrementally."""
    names = set()
    for stages in (model.up, model.down):
        for stage in stages:
            for block in (*stage["u"], *stage["ul"]):
                if getattr(block, "incremental_context", None) is None:
                    names.add(type(block).__name__)
    return sorted(names)


def _sample_naive(model, n, hvec, temperature, generator, progress):
    c, h, w = model.config.image_shape
    x = torch.zeros(n, c, h, w, dtype=torch.long, device=model.u_init.conv.bias.device)
    for i in range(h):
        for j in range(w):
            features = model.features(x, hvec)[:, :, i : i + 1, j : j + 1]
            x[:, :, i, j] = model.head.sample(features, temperature, generator)[:, :, 0, 0]
        if progress is not None:
            progress(i + 1, h)
    return x


class _Rows:
    """The last ``keep`` rows of one activation, full width: ``[B, F, K, W_s]``.

    ``row`` is the image row (at this level) held in the last slot; slots above it hold the
    rows before it (zeros above the top of the image, which windows never include).
    """

    def __init__(self, batch: int, channels: int, keep: int, width: int, like: torch.Tensor):
        self.buf = like.new_zeros(batch, channels, keep, width)
        self.keep, self.row = keep, -1

    def new_row(self) -> None:
        self.buf = torch.cat([self.buf[:, :, 1:], torch.zeros_like(self.buf[:, :, :1])], dim=2)
        self.row += 1

    def window(
        self, first_row: int, first_col: int = 0, last_col: int | None = None
    ) -> torch.Tensor:
        """Rows ``first_row .. row`` and columns ``first_col .. last_col`` (inclusive)."""
        k = self.row - first_row + 1
        assert 1 <= k <= self.keep, f"window of {k} rows from a buffer keeping {self.keep}"
        stop = None if last_col is None else last_col + 1
        return self.buf[:, :, self.keep - k :, first_col:stop]

    def set_row(self, values: torch.Tensor) -> None:
        self.buf[:, :, -1, :] = values

    def set_at(self, col: int, values: torch.Tensor) -> None:
        self.buf[:, :, -1, col] = values


class _Level:
    """Buffers of one resolution level: up-pass and down-pass activations of both streams.

    ``*_up[0]`` is the level's input (the first layer, or the downsampled higher level),
    ``*_up[t]`` the output of up-pass block t. ``*_down[0]`` is the input of the level's down
    pass: the upsampled lower level, or at the lowest level the up pass's last activation
    itself; ``*_down[t]`` the output of down-pass block t.
    """

    def __init__(self, n_up: int, n_down: int, lowest: bool, make: Callable[[], _Rows]):
        self.u_up = [make() for _ in range(n_up + 1)]
        self.ul_up = [make() for _ in range(n_up + 1)]
        first_u, first_ul = (self.u_up[-1], self.ul_up[-1]) if lowest else (make(), make())
        self.u_down = [first_u] + [make() for _ in range(n_down)]
        self.ul_down = [first_ul] + [make() for _ in range(n_down)]
        # Short-cut inputs of the down pass, in the order the blocks take them.
        self.u_skips = self.u_up[-2::-1] if lowest else self.u_up[::-1]
        self.ul_skips = self.ul_up[-2::-1] if lowest else self.ul_up[::-1]

    def buffers(self) -> list[_Rows]:
        unique = {id(b): b for b in (*self.u_up, *self.ul_up, *self.u_down, *self.ul_down)}
        return list(unique.values())


def _level_sizes(h: int, w: int, levels: int) -> list[tuple[int, int]]:
    sizes = [(h, w)]
    for _ in range(levels - 1):
        ph, pw = sizes[-1]
        sizes.append(((ph + 1) // 2, (pw + 1) // 2))
    return sizes


def _window(fn, buffers, rows_above, cols_left, cols_right, row, col, width):
    """``fn`` applied to the window of ``buffers`` around ``(row, col)``, at ``(row, col)``:
    ``[B, F]``; with ``col=None`` the whole row: ``[B, F, W]``."""
    r0 = max(0, row - rows_above)
    if col is None:
        return fn(*(b.window(r0) for b in buffers))[:, :, row - r0, :]
    c0, c1 = max(0, col - cols_left), min(width - 1, col + cols_right)
    return fn(*(b.window(r0, c0, c1) for b in buffers))[:, :, row - r0, col - c0]


def _strided(conv, buf: _Rows, row: int, col: int | None, width: int) -> torch.Tensor:
    """A stride-2 shifted conv at low-resolution ``(row, col)``; ``buf`` is the higher level,
    whose rows (columns) ``2 row - 1, 2 row`` it reads. Windows start at even offsets."""
    r0 = max(0, 2 * row - 2)
    if col is None:
        return conv(buf.window(r0))[:, :, (2 * row - r0) // 2, :]
    c0 = max(0, 2 * col - 2)
    window = buf.window(r0, c0, min(width - 1, 2 * col))
    return conv(window)[:, :, (2 * row - r0) // 2, (2 * col - c0) // 2]


def _upsampled(deconv, buf: _Rows, row: int, col: int | None, width: int) -> torch.Tensor:
    """A stride-2 transposed conv at high-resolution ``(row, col)``: it reads the low-resolution
    row ``row // 2`` only (``buf``'s latest row), and at column ``col // 2`` on the ``ul`` stream."""
    low = buf.window(buf.row)  # [B, F, 1, W_low]
    if col is None:
        return deconv(low, (2, width))[:, :, row % 2, :]
    return deconv(low[:, :, :, col // 2 : col // 2 + 1], (2, 2))[:, :, row % 2, col % 2]


def _sample_cached(model, n, hvec, temperature, generator, progress):
    cfg = model.config
    c, h, w = cfg.image_shape
    nr, levels, f = cfg.num_resnet, cfg.num_stages, cfg.num_filters
    like = model.u_init.conv.bias.detach()
    sizes = _level_sizes(h, w, levels)
    blocks = [b for stages in (model.up, model.down) for s in stages for b in (*s["u"], *s["ul"])]
    keep = max([3] + [1 + b.incremental_context[0] for b in blocks])
    lowest = levels - 1
    lv = [
        _Level(
            nr,
            nr + (s < lowest),
            s == lowest,
            lambda width=sizes[s][1]: _Rows(n, f, keep, width, like),
        )
        for s in range(levels)
    ]
    x_rows = _Rows(n, c + 1, 3, w, like)  # scaled pixels and the channel of ones
    out = torch.zeros(n, c, h, w, dtype=torch.long, device=like.device)

    def block_at(block, x_buf, skip_bufs, row, col, width):
        def fn(x, *skips):
            return block(x, torch.cat(skips, dim=1) if skips else None, hvec)

        return _window(fn, [x_buf, *skip_bufs], *block.incremental_context, row, col, width)

    def u_init(xw):
        return down_shift(model.u_init(xw))

    def ul_init(xw):
        return down_shift(model.ul_init_above(xw)) + right_shift(model.ul_init_left(xw))

    for i in range(h):
        active = [s for s in range(levels) if i % (1 << s) == 0]
        x_rows.new_row()
        for s in active:
            for buf in lv[s].buffers():
                buf.new_row()
        # -- vertical stream: whole rows, up the levels then down --------------------------------
        for s in active:
            row, ws, level = i >> s, sizes[s][1], lv[s]
            if s == 0:
                level.u_up[0].set_row(_window(u_init, [x_rows], 2, 0, 0, row, None, ws))
            else:
                conv = model.downsample[s - 1]["u"]
                level.u_up[0].set_row(_strided(conv, lv[s - 1].u_up[-1], row, None, ws))
            for t, block in enumerate(model.up[s]["u"], start=1):
                level.u_up[t].set_row(block_at(block, level.u_up[t - 1], [], row, None, ws))
        for s in reversed(active):
            row, ws, level = i >> s, sizes[s][1], lv[s]
            if s < lowest:
                deconv = model.upsample[lowest - s - 1]["u"]
                level.u_down[0].set_row(_upsampled(deconv, lv[s + 1].u_down[-1], row, None, ws))
            for t, (block, skip) in enumerate(
                zip(model.down[lowest - s]["u"], level.u_skips, strict=True), start=1
            ):
                level.u_down[t].set_row(block_at(block, level.u_down[t - 1], [skip], row, None, ws))
        # -- horizontal stream: pixel by pixel ----------------------------------------------------
        for j in range(w):
            here = [s for s in active if j % (1 << s) == 0]
            for s in here:
                row, col, ws, level = i >> s, j >> s, sizes[s][1], lv[s]
                if s == 0:
                    level.ul_up[0].set_at(col, _window(ul_init, [x_rows], 1, 1, 1, row, col, ws))
                else:
                    conv = model.downsample[s - 1]["ul"]
                    level.ul_up[0].set_at(
                        col, _strided(conv, lv[s - 1].ul_up[-1], row, col, sizes[s - 1][1])
                    )
                for t, block in enumerate(model.up[s]["ul"], start=1):
                    value = block_at(block, level.ul_up[t - 1], [level.u_up[t]], row, col, ws)
                    level.ul_up[t].set_at(col, value)
            for s in reversed(here):
                row, col, ws, level = i >> s, j >> s, sizes[s][1], lv[s]
                if s < lowest:
                    deconv = model.upsample[lowest - s - 1]["ul"]
                    level.ul_down[0].set_at(
                        col, _upsampled(deconv, lv[s + 1].ul_down[-1], row, col, ws)
                    )
                for t, (block, skip) in enumerate(
                    zip(model.down[lowest - s]["ul"], level.ul_skips, strict=True), start=1
                ):
                    value = block_at(
                        block, level.ul_down[t - 1], [level.u_down[t], skip], row, col, ws
                    )
                    level.ul_down[t].set_at(col, value)
            features = F.elu(lv[0].ul_down[-1].buf[:, :, -1, j])[:, :, None, None]  # [B, F, 1, 1]
            pixel = model.head.sample(features, temperature, generator)[:, :, 0, 0]  # [B, C]
            out[:, :, i, j] = pixel
            x_rows.buf[:, :c, -1, j] = scale_pixels(pixel, cfg.num_bits, like.dtype)
            x_rows.buf[:, c, -1, j] = 1.0
        if progress is not None:
            progress(i + 1, h)
    return out
