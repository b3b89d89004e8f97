"""Sampling and completing images with a PixelCNN++ one pixel at a time: naive, and cached.

Naive sampling reruns the whole network for every pixel. Cached sampling (after Ramachandran
et al. 2017, "Fast Generation for Convolutional Autoregressive Models") keeps, for every
activation of the network, only its last few rows, and computes each activation at a position
exactly once, when the position becomes computable:

- the ``u`` stream (rows above) of row ``i`` at the start of row ``i``, whole rows at once;
- the ``ul`` stream (pixels before) of ``(i, j)`` at pixel ``(i, j)``. What of it does not
  depend on row ``i``'s own pixels (the half of every two-row convolution that reads the row
  above, the short-cut input from the ``u`` stream, the conditioning) is computed for the whole
  row at its start, so that a pixel costs a few small matrix products per layer;
- a level of resolution ``2**-s`` only when ``i`` (and ``j``) are multiples of ``2**s``.

Where pixels are known (``complete``), the ``ul`` stream of the known run of a row is computed
in one call. The built-in ``gated_resnet`` block is evaluated on the ``ul`` stream from its
weights; any other block that sets ``incremental_context`` runs its own ``forward`` on the
window it declares, so it works unchanged, and a block that reaches further than a window
(attention over every earlier position) is fed those windows through its ``incremental_state``
(``register_block``), which keeps what it needs of earlier positions (a key/value cache). Both methods draw every pixel from the head with the
same generator calls in the same order, so they return the same images.

Every buffer is allocated once and updated in place, and a pixel's step has no host
synchronization, so a row's steps do the same operations on the same memory in every row with
the same levels active. On CUDA the sampler therefore captures them once per pattern as a CUDA
graph and replays it (``replay.py``; on CPU the same recording is a tape of ATen operations,
off by default). On CPU the step runs on one thread: its operations are too small to split,
and waking threads costs more than they do.

Axis key: ``B`` batch, ``F`` channels, ``K`` rows kept, ``W`` width at a level, ``n`` columns
computed at once (1 per sampled pixel).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from einops import rearrange
from torch.nn.utils import parametrize

from pixelcnnpp.checks import check_int
from pixelcnnpp.likelihoods import scale_pixels

from .blocks import GatedResnet
from .layers import concat_elu, down_shift
from .precision import exact_float32
from .replay import RowPrograms

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
    *,
    replay=None,
):
    """Draw ``n`` images ``[n, C, H, W]`` from ``model``; see ``PixelCNNPP.sample``."""
    temperature = _check_options(method, temperature, replay)
    check_int("n", n, 1, expected="a positive integer")
    hvec = model.check_inputs(None, labels, cond, batch=n)
    c, h, w = model.config.image_shape
    x = torch.zeros(n, c, h, w, dtype=torch.long, device=model.u_init.conv.bias.device)
    return _generate(model, x, 0, hvec, temperature, method, generator, progress, replay)


def complete(
    model,
    x,
    num_known,
    labels=None,
    cond=None,
    temperature=1.0,
    method="cached",
    generator=None,
    progress=None,
    *,
    replay=None,
):
    """Keep the first ``num_known`` pixels of ``x [B, C, H, W]`` in raster order and draw the
    rest; see ``PixelCNNPP.complete``."""
    temperature = _check_options(method, temperature, replay)
    hvec = model.check_inputs(x, labels, cond)
    _, h, w = model.config.image_shape
    check_int(
        "num_known",
        num_known,
        0,
        h * w,
        expected=f"an integer in [0, {h * w}] (the pixels of a {h}x{w} image kept, "
        "in raster order)",
    )
    device = model.u_init.conv.bias.device
    x = x.to(device=device, dtype=torch.long, copy=True)
    if num_known == h * w:
        return x
    return _generate(model, x, num_known, hvec, temperature, method, generator, progress, replay)


def unsupported_blocks(model) -> list[str]:
    """Names (types) of the model's blocks that cannot be evaluated incrementally."""
    names = set()
    for stages in (model.up, model.down):
        for stage in stages:
            for block in (*stage["u"], *stage["ul"]):
                if getattr(block, "incremental_context", None) is None:
                    names.add(type(block).__name__)
    return sorted(names)


def _check_options(method, temperature, replay) -> float:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if replay is not None and not isinstance(replay, bool):
        raise ValueError(f"replay must be True, False or None (on CUDA only), got {replay!r}")
    temperature = float(temperature)
    if not temperature > 0.0 or temperature == float("inf"):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return temperature


def _generate(model, x, num_known, hvec, temperature, method, generator, progress, replay):
    """Draw the pixels of ``x`` from ``num_known`` on, in place; returns ``x``."""
    if method == "cached":
        missing = unsupported_blocks(model)
        if missing:
            warnings.warn(
                f"cached sampling needs blocks that declare incremental_context; {', '.join(missing)} "
                "does not, so sampling falls back to method='naive'",
                stacklevel=4,
            )
            method = "naive"
    was_training = model.training
    model.eval()
    try:
        # TF32 off: one sub-pixel rounded differently changes every later pixel.
        with torch.no_grad(), parametrize.cached(), exact_float32():
            if method == "naive":
                return _generate_naive(model, x, num_known, hvec, temperature, generator, progress)
            return _generate_cached(
                model, x, num_known, hvec, temperature, generator, progress, replay
            )
    finally:
        model.train(was_training)


def _generate_naive(model, x, num_known, hvec, temperature, generator, progress):
    _, h, w = model.config.image_shape
    first_row = num_known // w
    for p in range(num_known, h * w):
        i, j = divmod(p, w)
        features = model.features(x, hvec)[:, :, i : i + 1, j : j + 1]
        x[:, :, i, j] = model.head.sample(features, temperature, generator)[:, :, 0, 0]
        if j == w - 1 and progress is not None:
            progress(i + 1 - first_row, h - first_row)
    return x


def _generate_cached(model, x, num_known, hvec, temperature, generator, progress, replay):
    _, h, w = model.config.image_shape
    first_row = num_known // w
    with _one_thread(x.device):
        network = _CachedNetwork(model, x.shape[0], hvec)
        drawn = x.new_zeros(x.shape[0], x.shape[1], w)  # [B, C, W]: the row's pixels, in one place

        def draw(j0: int) -> None:
            for j in range(j0, w):
                features = network.step(j)  # [B, F, 1, 1]
                pixel = model.head.sample(features, temperature, generator)[:, :, 0, 0]  # [B, C]
                drawn[:, :, j] = pixel
                network.set_pixels(pixel[:, :, None], j)

        if replay is None:  # on CPU a replayed row saves less than recording one costs
            replay = x.device.type == "cuda"
        programs = RowPrograms(x.device, generator) if replay else None
        for i in range(h):
            network.begin_row(i)
            known = min(w, max(0, num_known - i * w))
            if known:
                network.set_pixels(x[:, :, i, :known], 0)
                network.run(0, known)
            if programs is not None and known == 0 and network.replayable():
                programs.run(network.active, lambda: draw(0))
            else:
                draw(known)
            x[:, :, i, known:] = drawn[:, :, known:]
            if i >= first_row and progress is not None:
                progress(i + 1 - first_row, h - first_row)
    return x


@contextlib.contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# -- buffers ------------------------------------------------------------------------------------


class _Rows:
    """The last ``keep`` rows of one activation, channels last: ``[B, K, 1 + W, F]``.

    Image column ``c`` is stored at ``1 + c``; column 0 is the zero padding on the left, so
    that a column and its left neighbour are one contiguous run of ``2F`` values. ``row`` is
    the row (at this level) in the last slot; slots above hold the rows before it (zeros above
    the top of the image). The buffer is updated in place, so ``cur`` (the current row,
    ``[B, 1 + W, F]``) and ``col[c]`` (its column ``c``, ``[B, F]``) are fixed views.
    """

    def __init__(self, batch: int, channels: int, keep: int, width: int, like: torch.Tensor):
        self.buf = like.new_zeros(batch, keep, 1 + width, channels)
        self.keep, self.width, self.row = keep, width, -1
        self.cur = self.buf[:, -1]
        self.col = [self.cur[:, 1 + c] for c in range(width)]

    def new_row(self) -> None:
        self.buf[:, :-1] = self.buf[:, 1:].clone()
        self.cur.zero_()
        self.row += 1

    def window(self, first_row: int) -> torch.Tensor:
        """Rows ``first_row .. row`` (from row 0 at most) as ``[B, F, k, W]``, a view."""
        k = self.row - max(0, first_row) + 1
        assert 1 <= k <= self.keep, f"window of {k} rows from a buffer keeping {self.keep}"
        return self.buf[:, self.keep - k :, 1:].permute(0, 3, 1, 2)

    def above(self) -> torch.Tensor:
        """The row above the current one with its padding column: ``[B, 1 + W, F]``."""
        return self.buf[:, -2]

    def at(self, c0: int, c1: int) -> torch.Tensor:
        """Columns ``c0 .. c1 - 1`` of the current row: ``[B, n, F]`` (a view, writable)."""
        return self.cur[:, 1 + c0 : 1 + c1]

    def set_row(self, values: torch.Tensor) -> None:
        """The current row from ``[B, F, W]``."""
        self.cur[:, 1:] = values.transpose(1, 2)


def _runs(row: torch.Tensor, c0: int, c1: int, size: int = 2, step: int = 1) -> torch.Tensor:
    """For columns ``c = c0 .. c1 - 1`` (of a level ``step`` times coarser), the ``size``
    stored columns from ``step c`` on side by side: ``[B, n, size F]``, a view of a row
    ``[B, P + W, F]`` stored with ``P`` padding columns on the left."""
    b, _, f = row.shape
    return row.as_strided(
        (b, c1 - c0, size * f), (row.stride(0), step * f, 1), row.storage_offset() + step * c0 * f
    )


def _matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight`` for ``x [B, n, I]`` (any strides) as one matrix product: ``[B, n, O]``."""
    return (x.reshape(-1, x.shape[-1]) @ weight).view(*x.shape[:-1], weight.shape[1])


def _affine(base: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``base + x @ weight`` for ``[B, n, *]`` inputs."""
    return base + _matmul(x, weight)


def _nonlinearity_into(f: Callable, x: torch.Tensor, out: torch.Tensor) -> None:
    """``out = f(x)`` along the last (channel) axis, for ``concat_elu`` and ``elu``."""
    _Nonlinearity(f, out)(x)


def _tap_weights(weight: torch.Tensor, row: int) -> torch.Tensor:
    """Kernel row ``row`` of a convolution ``[O, I, kh, kw]`` as a matrix ``[kw I, O]`` for
    ``_runs`` input (leftmost column first)."""
    return rearrange(weight[:, :, row], "o i k -> (k i) o")


def _gated_resnet_weights(block: GatedResnet, hvec) -> dict:
    """The tap matrices, biases and skip weights of a ``gated_resnet`` block, conditioning
    folded into the output bias."""
    w_in, w_out = block.conv_in.conv.weight, block.conv_out.conv.weight
    b_out = block.conv_out.conv.bias
    if block.cond is not None:
        b_out = b_out + block.cond(hvec)[:, None, :]  # [B, 1, 2F]
    return {
        "in": [_tap_weights(w_in, r) for r in (0, 1)],
        "out": [_tap_weights(w_out, r) for r in (0, 1)],
        "b_in": block.conv_in.conv.bias,
        "b_out": b_out,
        "skip": None if block.skip is None else block.skip.conv.weight[:, :, 0, 0],  # [F, mS]
        "b_skip": None if block.skip is None else block.skip.conv.bias,
        "mult": 2 if block.f is concat_elu else 1,
    }


class _Nonlinearity:
    """``f`` (``concat_elu`` or ``elu``) along the last axis into ``out [..., mF]``: for
    ``concat_elu``, ``x`` and ``-x`` into the two halves, then ELU in place (the views are made
    once, for fixed columns)."""

    def __init__(self, f: Callable, out: torch.Tensor):
        self.f, self.out = f, out
        k = out.shape[-1] // (2 if f is concat_elu else 1)
        self.lo, self.hi = out[..., :k], out[..., k:]

    def __call__(self, x: torch.Tensor) -> None:
        self.lo.copy_(x)
        if self.f is concat_elu:
            torch.neg(x, out=self.hi)
        F.elu_(self.out)


# -- the u stream: whole rows ---------------------------------------------------------------------


class _UInit:
    """``down_shift(u_init(x))``: rows ``i - 2, i - 1`` of the pixels."""

    def __init__(self, model, x: _Rows, out: _Rows):
        self.conv, self.x, self.out = model.u_init, x, out

    def row(self) -> None:
        self.out.set_row(down_shift(self.conv(self.x.window(self.x.row - 2)))[:, :, -1])


class _StridedU:
    """The stride-2 down-shifted convolution to the next lower resolution: its last output
    row over high-resolution rows ``2r - 2 .. 2r``."""

    def __init__(self, conv, src: _Rows, out: _Rows):
        self.conv, self.src, self.out = conv, src, out

    def row(self) -> None:
        self.out.set_row(self.conv(self.src.window(self.src.row - 2))[:, :, -1])


class _UpsampledU:
    """The stride-2 transposed convolution from the lower resolution: row ``i`` reads
    low-resolution row ``i // 2``."""

    def __init__(self, deconv, src: _Rows, out: _Rows):
        self.deconv, self.src, self.out = deconv, src, out

    def row(self) -> None:
        y = self.deconv(self.src.window(self.src.row), (2, self.out.width))
        self.out.set_row(y[:, :, self.out.row % 2])


def _incremental_state(block, out: _Rows, size: tuple[int, int], hvec):
    """The block's ``incremental_state`` for inputs of ``size``, or ``None`` (it runs its
    ``forward`` on windows)."""
    make = getattr(block, "incremental_state", None)
    return None if make is None else make(out.buf.shape[0], size, hvec)


class _WindowU:
    """Any block with ``incremental_context`` on the ``u`` stream: its own ``forward`` on the
    rows it declares, full width, keeping the last output row; or, for a block with
    ``incremental_state``, the state fed those rows."""

    def __init__(self, block, x: _Rows, skips: list[_Rows], out: _Rows, hvec, size):
        self.block, self.inputs, self.out, self.hvec = block, [x, *skips], out, hvec
        self.state = _incremental_state(block, out, size, hvec)

    def row(self) -> None:
        r0 = self.out.row - self.block.incremental_context[0]
        x, *skips = (b.window(r0) for b in self.inputs)
        skip = torch.cat(skips, dim=1) if skips else None
        if self.state is not None:
            self.out.set_row(self.state.feed(x, skip, self.out.row, 0, self.out.width))
            return
        self.out.set_row(self.block(x, skip, self.hvec)[:, :, -1])


class _GatedResnetU:
    """``gated_resnet`` on the ``u`` stream from its weights, one output row: each 2x3
    convolution is its upper taps on the row above plus its lower taps on this row, three
    columns each (the row's own ``f(x)`` and ``f(c1)`` are kept for the next row)."""

    def __init__(self, block: GatedResnet, x: _Rows, skips: list[_Rows], out: _Rows, hvec):
        self.f, self.x, self.out, self.skip = block.f, x, out, (skips[0] if skips else None)
        self.w = _gated_resnet_weights(block, hvec)
        if self.skip is not None:
            self.w["skip"] = self.w["skip"].T  # [mF, F]
        batch, width, channels = x.buf.shape[0], out.width, x.buf.shape[-1]
        m = self.w["mult"] * channels
        # f(x) and f(c1) of this row and the one above, a zero column on either side.
        self.fx, self.fx_above, self.fc1, self.fc1_above = (
            x.buf.new_zeros(batch, 2 + width, m) for _ in range(4)
        )

    def row(self) -> None:
        w, width = self.w, self.out.width
        self.fx_above.copy_(self.fx)
        self.fc1_above.copy_(self.fc1)
        x = self.x.at(0, width)  # [B, W, F]
        _nonlinearity_into(self.f, x, self.fx[:, 1:-1])
        c1 = w["b_in"] + _matmul(_runs(self.fx_above, 0, width, 3), w["in"][0])
        c1 = _affine(c1, _runs(self.fx, 0, width, 3), w["in"][1])
        if self.skip is not None:
            fs = torch.empty_like(self.fx[:, 1:-1])
            _nonlinearity_into(self.f, self.skip.at(0, width), fs)
            c1 = c1 + w["b_skip"] + _matmul(fs, w["skip"])
        _nonlinearity_into(self.f, c1, self.fc1[:, 1:-1])
        c2 = w["b_out"] + _matmul(_runs(self.fc1_above, 0, width, 3), w["out"][0])
        c2 = _affine(c2, _runs(self.fc1, 0, width, 3), w["out"][1])
        a, b = c2.chunk(2, dim=-1)
        torch.addcmul(x, a, torch.sigmoid(b), out=self.out.at(0, width))


# -- the ul stream: a column at a time ----------------------------------------------------------


class _ULLayer:
    """A layer of the ``ul`` stream: ``begin_row()`` computes what does not depend on the row's
    pixels, ``step(c)`` one column through views fixed at construction (a sampled pixel's
    work), ``run(c0, c1)`` columns ``c0 .. c1 - 1`` at once (known pixels).

    ``replayable()``: whether this row's steps read and write the same memory, with the same
    Python decisions, as in every later row (so that a row's steps can be recorded once and
    replayed, see ``replay.py``)."""

    def begin_row(self) -> None:
        pass

    def replayable(self) -> bool:
        return True


class _ULInit(_ULLayer):
    """The first ``ul`` layer at full resolution: ``down_shift(conv_1x3(x)) +
    right_shift(conv_2x1(x))``. All but the 2x1 kernel's lower tap on the pixel to the left
    reads the row above."""

    def __init__(self, model, x: _Rows, out: _Rows):
        self.conv_above, self.x, self.out = model.ul_init_above, x, out
        conv = model.ul_init_left.conv
        self.w_above, self.w_here = conv.weight[:, :, 0, 0].T, conv.weight[:, :, 1, 0].T  # [C+1, F]
        self.bias = conv.bias
        self.pre = x.buf.new_zeros(x.buf.shape[0], out.width, out.buf.shape[-1])  # [B, W, F]
        self.pre_col = [self.pre[:, c] for c in range(out.width)]
        self.left_col = [x.cur[:, c] for c in range(out.width)]  # the pixel left of c

    def begin_row(self) -> None:
        above = self.x.above()  # [B, 1 + W, C + 1]
        if self.x.row == 0:
            self.pre.zero_()
        else:  # the 1x3 conv of the row above, shifted down onto this row
            row = above[:, 1:].transpose(1, 2).unsqueeze(2)  # [B, C + 1, 1, W]
            self.pre.copy_(self.conv_above(row)[:, :, 0].transpose(1, 2))
        left = self.bias + _matmul(above[:, :-1], self.w_above)  # [B, W, F]
        self.pre[:, 1:] += left[:, 1:]  # column 0 sees only padding

    def step(self, c: int) -> None:
        torch.addmm(self.pre_col[c], self.left_col[c], self.w_here, out=self.out.col[c])

    def run(self, c0: int, c1: int) -> None:
        left = self.x.cur[:, c0:c1]  # pixels c0 - 1 .. c1 - 2
        self.out.at(c0, c1).copy_(_affine(self.pre[:, c0:c1], left, self.w_here))


class _StridedUL(_ULLayer):
    """The stride-2 2x2 convolution from ``src`` to the next lower resolution; low-resolution
    column ``c`` reads columns ``2c - 1, 2c`` of rows ``2r - 1`` (above) and ``2r``."""

    def __init__(self, conv, src: _Rows, out: _Rows):
        self.src, self.out = src, out
        self.w_above, self.w_here = _tap_weights(conv.weight, 0), _tap_weights(conv.weight, 1)
        self.bias = conv.bias
        self.pre = src.buf.new_zeros(src.buf.shape[0], out.width, out.buf.shape[-1])
        self.pre_col = [self.pre[:, c] for c in range(out.width)]
        self.here_col = [_runs(src.cur, c, c + 1, step=2)[:, 0] for c in range(out.width)]

    def begin_row(self) -> None:
        above = _runs(self.src.above(), 0, self.out.width, step=2)
        torch.add(self.bias, _matmul(above, self.w_above), out=self.pre)

    def step(self, c: int) -> None:
        torch.addmm(self.pre_col[c], self.here_col[c], self.w_here, out=self.out.col[c])

    def run(self, c0: int, c1: int) -> None:
        here = _runs(self.src.cur, c0, c1, step=2)
        self.out.at(c0, c1).copy_(_affine(self.pre[:, c0:c1], here, self.w_here))


class _UpsampledUL(_ULLayer):
    """The stride-2 2x2 transposed convolution from the lower resolution ``src``: pixel
    ``(i, j)`` reads low-resolution ``(i // 2, j // 2)`` through kernel tap ``(i % 2, j % 2)``."""

    def __init__(self, deconv, src: _Rows, out: _Rows):
        self.src, self.out, self.bias = src, out, deconv.bias
        self.taps = rearrange(deconv.weight, "i o k p -> k p i o")  # [2, 2, F_in, F]
        # The kernel row of this row's parity, copied into one place so that a step reads the
        # same memory in every row (replayable).
        self.tap = self.taps[0].clone()
        self.tap_at = self.tap.unbind(0)  # [F_in, F] for even and odd columns

    def begin_row(self) -> None:
        self.tap.copy_(self.taps[self.out.row % 2])

    def step(self, c: int) -> None:
        torch.addmm(self.bias, self.src.col[c // 2], self.tap_at[c % 2], out=self.out.col[c])

    def run(self, c0: int, c1: int) -> None:
        for c in range(c0, c1):
            self.step(c)


class _GatedResnetUL(_ULLayer):
    """``gated_resnet`` on the ``ul`` stream from its weights.

    ``c1 = conv_in(f(x)) + nin(f(skip))``, ``c2 = conv_out(f(c1)) + cond``,
    ``out = x + a sigmoid(b)``: each 2x2 convolution is its upper taps on the row above plus its
    lower taps on the pixel and its left neighbour; the upper taps, the ``u`` part of the skip
    and the conditioning are computed once per row.
    """

    def __init__(self, block: GatedResnet, x: _Rows, skips: list[_Rows], out: _Rows, hvec):
        self.f, self.x, self.out = block.f, x, out
        self.u, self.ul = skips[0], (skips[1] if len(skips) > 1 else None)
        self.w = w = _gated_resnet_weights(block, hvec)
        batch, width, channels = x.buf.shape[0], out.width, x.buf.shape[-1]
        mult = w["mult"]
        # f(cat(u, ul)) is f's output blocks of (u, ul) channels: split nin's columns by input.
        total = w["skip"].shape[1] // mult

        def columns(first: int) -> torch.Tensor:
            index = [k * total + first + c for k in range(mult) for c in range(channels)]
            return w["skip"][:, index].T  # [mF, F]

        self.w_skip_u = columns(0)
        self.w_skip_ul = columns(channels) if self.ul is not None else None
        new = x.buf.new_zeros
        m = mult * channels
        # f(x) and f(c1) of this row and the one above, a zero column on the left.
        self.fx, self.fx_above, self.fc1, self.fc1_above = (
            new(batch, 1 + width, m) for _ in range(4)
        )
        self.fu = new(batch, width, m)  # f of the u row (per row), of the ul skip (per column)
        self.pre_in, self.pre_out = new(batch, width, channels), new(batch, width, 2 * channels)
        # Fixed views for step(c).
        self.c1, self.c2, self.gate = (
            new(batch, channels),
            new(batch, 2 * channels),
            new(batch, channels),
        )
        self.fx_at = [_Nonlinearity(self.f, self.fx[:, 1 + c]) for c in range(width)]
        self.fc1_at = [_Nonlinearity(self.f, self.fc1[:, 1 + c]) for c in range(width)]
        self.fs = _Nonlinearity(self.f, self.fu[:, 0])
        self.fx_pair = [_runs(self.fx, c, c + 1)[:, 0] for c in range(width)]
        self.fc1_pair = [_runs(self.fc1, c, c + 1)[:, 0] for c in range(width)]
        self.pre_in_col = [self.pre_in[:, c] for c in range(width)]
        self.pre_out_col = [self.pre_out[:, c] for c in range(width)]

    def begin_row(self) -> None:
        w, width = self.w, self.out.width
        self.fx_above.copy_(self.fx)  # this row's columns are all overwritten before they are read
        self.fc1_above.copy_(self.fc1)
        _nonlinearity_into(self.f, self.u.at(0, width), self.fu)
        pre_in = w["b_in"] + w["b_skip"] + _matmul(self.fu, self.w_skip_u)
        torch.add(pre_in, _matmul(_runs(self.fx_above, 0, width), w["in"][0]), out=self.pre_in)
        torch.add(
            w["b_out"], _matmul(_runs(self.fc1_above, 0, width), w["out"][0]), out=self.pre_out
        )

    def step(self, c: int) -> None:
        x, w, channels = self.x.col[c], self.w, self.c1.shape[1]
        self.fx_at[c](x)
        torch.addmm(self.pre_in_col[c], self.fx_pair[c], w["in"][1], out=self.c1)
        if self.ul is not None:
            self.fs(self.ul.col[c])
            self.c1.addmm_(self.fs.out, self.w_skip_ul)
        self.fc1_at[c](self.c1)
        torch.addmm(self.pre_out_col[c], self.fc1_pair[c], w["out"][1], out=self.c2)
        torch.sigmoid(self.c2[:, channels:], out=self.gate)
        torch.addcmul(x, self.c2[:, :channels], self.gate, out=self.out.col[c])

    def run(self, c0: int, c1: int) -> None:
        x, w = self.x.at(c0, c1), self.w  # [B, n, F]
        _nonlinearity_into(self.f, x, self.fx[:, 1 + c0 : 1 + c1])
        h = _affine(self.pre_in[:, c0:c1], _runs(self.fx, c0, c1), w["in"][1])
        if self.ul is not None:
            fs = self.fu[:, : c1 - c0]
            _nonlinearity_into(self.f, self.ul.at(c0, c1), fs)
            h = _affine(h, fs, self.w_skip_ul)
        _nonlinearity_into(self.f, h, self.fc1[:, 1 + c0 : 1 + c1])
        c2 = _affine(self.pre_out[:, c0:c1], _runs(self.fc1, c0, c1), w["out"][1])
        a, b = c2.chunk(2, dim=-1)
        torch.addcmul(x, a, torch.sigmoid(b), out=self.out.at(c0, c1))


class _WindowUL(_ULLayer):
    """Any block with ``incremental_context`` on the ``ul`` stream: its own ``forward`` on the
    window of rows and columns it declares; or, for a block with ``incremental_state``, the
    state fed that window."""

    def __init__(self, block, x: _Rows, skips: list[_Rows], out: _Rows, hvec, size):
        self.block, self.inputs, self.out, self.hvec = block, [x, *skips], out, hvec
        self.state = _incremental_state(block, out, size, hvec)

    def replayable(self) -> bool:
        # Its window is fixed once it no longer reaches above the image; a state indexes its
        # cache by position.
        return self.state is None and self.out.row >= self.block.incremental_context[0]

    def step(self, c: int) -> None:
        self.run(c, c + 1)

    def run(self, c0: int, c1: int) -> None:
        rows_above, cols_left, cols_right = self.block.incremental_context
        row, width = self.out.row, self.out.width
        r0, w0 = max(0, row - rows_above), max(0, c0 - cols_left)
        w1 = min(width, c1 + cols_right)
        x, *skips = (b.window(r0)[..., w0:w1] for b in self.inputs)
        skip = torch.cat(skips, dim=1) if skips else None
        if self.state is not None:
            y = self.state.feed(x, skip, row, c0, c1)  # [B, F, n]
        else:
            y = self.block(x, skip, self.hvec)[:, :, row - r0, c0 - w0 : c1 - w0]
        self.out.at(c0, c1).copy_(y.transpose(1, 2))


def _fast(block) -> bool:
    """Whether ``block`` is the built-in ``gated_resnet`` with a built-in nonlinearity, which
    the sampler evaluates from its weights."""
    return type(block) is GatedResnet and block.f in (concat_elu, F.elu)


def _u_block(block, x: _Rows, skips: list[_Rows], out: _Rows, hvec, size):
    if _fast(block):
        return _GatedResnetU(block, x, skips, out, hvec)
    return _WindowU(block, x, skips, out, hvec, size)


def _ul_block(block, x: _Rows, skips: list[_Rows], out: _Rows, hvec, size):
    if _fast(block):
        return _GatedResnetUL(block, x, skips, out, hvec)
    return _WindowUL(block, x, skips, out, hvec, size)


# -- the network --------------------------------------------------------------------------------


class _Level:
    """Buffers and layers of one resolution level, both streams, up and down pass.

    ``*_up[0]`` is the level's input (the first layer, or the downsampled higher level),
    ``*_up[t]`` the output of up-pass block t. ``*_down[0]`` is the input of the level's down
    pass: the upsampled lower level, or at the lowest level the up pass's last activation
    itself; ``*_down[t]`` the output of down-pass block t. ``*_layers`` compute them in order.
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
        self.u_up_layers: list = []
        self.u_down_layers: list = []
        self.ul_up_layers: list = []
        self.ul_down_layers: list = []

    def buffers(self) -> list[_Rows]:
        unique = {id(b): b for b in (*self.u_up, *self.ul_up, *self.u_down, *self.ul_down)}
        return list(unique.values())


def _level_sizes(h: int, w: int, levels: int) -> list[tuple[int, int]]:
    sizes = [(h, w)]
    for _ in range(levels - 1):
        ph, pw = sizes[-1]
        sizes.append(((ph + 1) // 2, (pw + 1) // 2))
    return sizes


class _CachedNetwork:
    """The model's activations over the last few rows, advanced row by row and, within a row,
    a column at a time (a sampled pixel) or over a run of known columns."""

    def __init__(self, model, batch: int, hvec):
        cfg = model.config
        self.num_bits = cfg.num_bits
        c, h, w = cfg.image_shape
        nr, levels, f = cfg.num_resnet, cfg.num_stages, cfg.num_filters
        like = model.u_init.conv.bias.detach()
        sizes = _level_sizes(h, w, levels)
        blocks = [b for st in (model.up, model.down) for s in st for b in (*s["u"], *s["ul"])]
        keep = max([3] + [1 + b.incremental_context[0] for b in blocks])
        lowest = levels - 1
        self.lv = lv = [
            _Level(
                nr,
                nr + (s < lowest),
                s == lowest,
                lambda width=sizes[s][1]: _Rows(batch, f, keep, width, like),
            )
            for s in range(levels)
        ]
        self.x = _Rows(batch, c + 1, 3, w, like)  # scaled pixels and the channel of ones
        for s, level in enumerate(lv):
            down = model.down[lowest - s]
            if s == 0:
                level.u_up_layers = [_UInit(model, self.x, level.u_up[0])]
                level.ul_up_layers = [_ULInit(model, self.x, level.ul_up[0])]
            else:
                convs, high = model.downsample[s - 1], lv[s - 1]
                level.u_up_layers = [_StridedU(convs["u"], high.u_up[-1], level.u_up[0])]
                level.ul_up_layers = [_StridedUL(convs["ul"].conv, high.ul_up[-1], level.ul_up[0])]
            if s < lowest:
                deconvs, low = model.upsample[lowest - s - 1], lv[s + 1]
                level.u_down_layers = [_UpsampledU(deconvs["u"], low.u_down[-1], level.u_down[0])]
                level.ul_down_layers = [
                    _UpsampledUL(deconvs["ul"].deconv, low.ul_down[-1], level.ul_down[0])
                ]
            for t, (bu, bul) in enumerate(
                zip(model.up[s]["u"], model.up[s]["ul"], strict=True), start=1
            ):
                u = _u_block(bu, level.u_up[t - 1], [], level.u_up[t], hvec, sizes[s])
                level.u_up_layers.append(u)
                ul = _ul_block(
                    bul, level.ul_up[t - 1], [level.u_up[t]], level.ul_up[t], hvec, sizes[s]
                )
                level.ul_up_layers.append(ul)
            for t, (bu, bul, su, sul) in enumerate(
                zip(down["u"], down["ul"], level.u_skips, level.ul_skips, strict=True), start=1
            ):
                u = _u_block(bu, level.u_down[t - 1], [su], level.u_down[t], hvec, sizes[s])
                level.u_down_layers.append(u)
                ul = _ul_block(
                    bul,
                    level.ul_down[t - 1],
                    [level.u_down[t], sul],
                    level.ul_down[t],
                    hvec,
                    sizes[s],
                )
                level.ul_down_layers.append(ul)
        self.features = lv[0].ul_down[-1]
        self.schedules: dict[tuple[int, ...], list[list]] = {}
        self.active: tuple[int, ...] = ()

    def _schedule(self) -> list[list]:
        """Per column of a row with these levels active, the ``(step, column)`` calls that
        compute its ``ul`` stream, in order."""
        if self.active not in self.schedules:
            columns = []
            for j in range(self.x.width):
                here = [s for s in self.active if j % (1 << s) == 0]
                calls = [(layer.step, j >> s) for s in here for layer in self.lv[s].ul_up_layers]
                calls += [
                    (layer.step, j >> s)
                    for s in reversed(here)
                    for layer in self.lv[s].ul_down_layers
                ]
                columns.append(calls)
            self.schedules[self.active] = columns
        return self.schedules[self.active]

    def begin_row(self, i: int) -> None:
        """Start image row ``i``: roll the buffers of the levels it reaches, compute their
        ``u`` stream for the whole row, and what of the ``ul`` stream does not depend on the
        row's pixels."""
        self.active = tuple(s for s in range(len(self.lv)) if i % (1 << s) == 0)
        self.x.new_row()
        for s in self.active:
            for buf in self.lv[s].buffers():
                buf.new_row()
        for s in self.active:
            for layer in self.lv[s].u_up_layers:
                layer.row()
        for s in reversed(self.active):
            for layer in self.lv[s].u_down_layers:
                layer.row()
        for s in self.active:
            for layer in (*self.lv[s].ul_up_layers, *self.lv[s].ul_down_layers):
                layer.begin_row()
        self.row_schedule = self._schedule()

    def replayable(self) -> bool:
        """Whether this row's steps can be replayed in every later row with the same levels
        active (``self.active``, the key of a recording)."""
        return all(
            layer.replayable()
            for s in self.active
            for layer in (*self.lv[s].ul_up_layers, *self.lv[s].ul_down_layers)
        )

    def set_pixels(self, pixels: torch.Tensor, c0: int) -> None:
        """Pixels ``[B, C, n]`` of the current row at columns ``c0 ..``."""
        c, n = pixels.shape[1], pixels.shape[2]
        row = self.x.at(c0, c0 + n)
        row[..., :c] = scale_pixels(pixels, self.num_bits, row.dtype).transpose(1, 2)
        row[..., c] = 1.0

    def step(self, j: int) -> torch.Tensor:
        """The ``ul`` stream at column ``j`` (every pixel before it known); returns the
        head's input there, ``[B, F, 1, 1]``."""
        for step, c in self.row_schedule[j]:
            step(c)
        return F.elu(self.features.col[j])[:, :, None, None]

    def run(self, c0: int, c1: int) -> None:
        """The ``ul`` stream at columns ``c0 .. c1 - 1`` (every pixel before ``c1`` known)."""
        done = []
        for s in self.active:
            step = 1 << s
            l0, l1 = (c0 + step - 1) >> s, (c1 + step - 1) >> s
            if l0 == l1:
                break
            for layer in self.lv[s].ul_up_layers:
                layer.run(l0, l1)
            done.append((s, l0, l1))
        for s, l0, l1 in reversed(done):
            for layer in self.lv[s].ul_down_layers:
                layer.run(l0, l1)
