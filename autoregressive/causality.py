"""Proving that a model or a block is autoregressive, by perturbing later inputs.

A PixelCNN++ output at pixel ``p`` (and channel ``c``) must not move when any pixel at or after
``p`` in raster order (or a channel ``>= c`` of ``p`` itself) changes. A block on the ``u``
stream must not let output row ``i`` see input rows below ``i``; on the ``ul`` stream output
``(i, j)`` must not see inputs after ``(i, j)`` in raster order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .blocks import STREAMS, build_block, get_block


class CausalityError(ValueError):
    """An output depends on an input it must not see; the message names the positions."""


def _describe(leaks: list[tuple[str, str, float]], what: str) -> str:
    shown = "\n".join(
        f"  output {o} changes when input {i} changes (|diff| = {d:.3g})" for o, i, d in leaks[:10]
    )
    more = f"\n  ... and {len(leaks) - 10} more" if len(leaks) > 10 else ""
    return f"{what} is not causal: {len(leaks)} leaking (output, input) pairs, e.g.\n{shown}{more}"


def _changed(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> torch.Tensor:
    return ((a - b).abs() > atol + rtol * b.abs()) | (a.isnan() != b.isnan())


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


@torch.no_grad()
def check_causality(
    model_or_block: nn.Module,
    image_shape: tuple[int, int, int] | None = None,
    *,
    stream: str | None = None,
    skip_channels: int | None = None,
    cond_dim: int | None = None,
    batch_size: int = 64,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    seed: int = 0,
) -> None:
    """Raise ``CausalityError`` naming the leaking positions if any output sees the future.

    For a ``PixelCNNPP`` (anything with ``config.image_shape`` and ``features``), every pixel and
    channel of a random image is perturbed in turn and the per-sub-pixel log-probabilities and
    the network features are compared. For a block, ``image_shape = (channels, H, W)`` of its
    input, ``stream`` ("u" or "ul"), ``skip_channels`` and ``cond_dim`` (read from the block's
    attributes of those names when not given); every position of ``x`` and of ``skip`` is
    perturbed in turn. Runs in evaluation mode; the training flag is restored.
    """
    was_training = model_or_block.training
    model_or_block.eval()
    try:
        if hasattr(model_or_block, "config") and hasattr(model_or_block, "features"):
            _check_model(model_or_block, image_shape, batch_size, atol, rtol, seed)
        else:
            _check_block(
                model_or_block,
                image_shape,
                stream,
                skip_channels,
                cond_dim,
                batch_size,
                atol,
                rtol,
                seed,
            )
    finally:
        model_or_block.train(was_training)


def _check_model(model, image_shape, batch_size, atol, rtol, seed) -> None:
    cfg = model.config
    if image_shape is not None and tuple(image_shape) != tuple(cfg.image_shape):
        raise ValueError(
            f"image_shape must be the model's {tuple(cfg.image_shape)}, got {tuple(image_shape)}"
        )
    c, h, w = cfg.image_shape
    n = 2**cfg.num_bits
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, n, (1, c, h, w), generator=gen)
    labels = torch.randint(0, cfg.num_classes, (1,), generator=gen) if cfg.num_classes else None
    cond = torch.randn(1, cfg.cond_dim, generator=gen) if cfg.cond_dim else None
    cases = [(ch, i, j) for i in range(h) for j in range(w) for ch in range(c)]
    order = torch.arange(h * w, device=device).view(h, w)
    leaks = []
    for chunk in _chunks(cases, max(1, batch_size - 1)):
        x = x0.repeat(len(chunk) + 1, 1, 1, 1)
        for k, (ch, i, j) in enumerate(chunk, start=1):
            x[k, ch, i, j] = (x0[0, ch, i, j] + torch.randint(1, n, (), generator=gen)) % n
        x = x.to(device)
        lab = labels.expand(len(x)).to(device) if labels is not None else None
        cnd = cond.expand(len(x), -1).to(device) if cond is not None else None
        hvec = model.check_inputs(x, lab, cnd)
        features = model.features(x, hvec)
        lpp = model.head(features, x).log_prob_pixels(x)  # [N, C, H, W]
        feat_changed = _changed(features[1:], features[:1], atol, rtol).any(1)  # [N, H, W]
        lpp_changed = _changed(lpp[1:], lpp[:1], atol, rtol)  # [N, C, H, W]
        for k, (ch, i, j) in enumerate(chunk):
            p = i * w + j
            before = order < p  # outputs strictly before the perturbed pixel
            channel_before = torch.arange(c, device=device).view(c, 1, 1) < ch
            bad_lpp = lpp_changed[k] & (
                before.unsqueeze(0) | ((order == p).unsqueeze(0) & channel_before)
            )
            bad_feat = feat_changed[k] & (order <= p)
            diff_lpp = (lpp[k + 1] - lpp[0]).abs()
            for oc, oi, oj in bad_lpp.nonzero().tolist():
                leaks.append(
                    (
                        f"log p(pixel ({oi}, {oj}) channel {oc})",
                        f"pixel ({i}, {j}) channel {ch}",
                        diff_lpp[oc, oi, oj].item(),
                    )
                )
            diff_feat = (features[k + 1] - features[0]).abs().amax(0)
            for oi, oj in bad_feat.nonzero().tolist():
                leaks.append(
                    (
                        f"features at ({oi}, {oj})",
                        f"pixel ({i}, {j}) channel {ch}",
                        diff_feat[oi, oj].item(),
                    )
                )
    if leaks:
        raise CausalityError(_describe(leaks, type(model).__name__))


def _check_block(
    block, image_shape, stream, skip_channels, cond_dim, batch_size, atol, rtol, seed
) -> None:
    stream = stream if stream is not None else getattr(block, "stream", None)
    if stream not in STREAMS:
        raise ValueError(
            f"stream must be 'u' or 'ul' for a block (or set block.stream), got {stream!r}"
        )
    if image_shape is None or len(image_shape) != 3:
        raise ValueError(
            f"image_shape must be (channels, H, W) of the block's input, got {image_shape!r}"
        )
    skip_channels = (
        skip_channels if skip_channels is not None else getattr(block, "skip_channels", 0)
    )
    cond_dim = cond_dim if cond_dim is not None else getattr(block, "cond_dim", None)
    f, h, w = image_shape
    param = next(block.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(1, f, h, w, generator=gen, dtype=dtype)
    s0 = torch.randn(1, skip_channels, h, w, generator=gen, dtype=dtype) if skip_channels else None
    c0 = torch.randn(1, cond_dim, generator=gen, dtype=dtype) if cond_dim else None
    cases = [
        (name, i, j)
        for name in (["x", "skip"] if skip_channels else ["x"])
        for i in range(h)
        for j in range(w)
    ]
    rows = torch.arange(h, device=device).view(h, 1).expand(h, w)
    order = torch.arange(h * w, device=device).view(h, w)
    leaks = []
    for chunk in _chunks(cases, max(1, batch_size - 1)):
        x = x0.repeat(len(chunk) + 1, 1, 1, 1)
        s = s0.repeat(len(chunk) + 1, 1, 1, 1) if s0 is not None else None
        for k, (name, i, j) in enumerate(chunk, start=1):
            target = x if name == "x" else s
            target[k, :, i, j] += (
                1.0 + torch.randn(target.shape[1], generator=gen, dtype=dtype).abs()
            )
        x, s = x.to(device), (s.to(device) if s is not None else None)
        cnd = c0.expand(len(x), -1).to(device) if c0 is not None else None
        y = block(x, s, cnd)
        if y.shape != x.shape:
            raise ValueError(
                f"a block must return a tensor shaped like its input x {tuple(x.shape)}, got {tuple(y.shape)}"
            )
        changed = _changed(y[1:], y[:1], atol, rtol).any(1)  # [N, H, W]
        diff = (y[1:] - y[:1]).abs().amax(1)
        for k, (name, i, j) in enumerate(chunk):
            forbidden = rows < i if stream == "u" else order < i * w + j
            for oi, oj in (changed[k] & forbidden).nonzero().tolist():
                leaks.append((f"({oi}, {oj})", f"{name} at ({i}, {j})", diff[k, oi, oj].item()))
    if leaks:
        raise CausalityError(_describe(leaks, f"block {type(block).__name__} on stream {stream!r}"))


_VERIFIED: set[tuple[Callable, str]] = set()


def verify_block(name: str, nonlinearity: str = "concat_elu") -> None:
    """Build small instances of block ``name`` on both streams and prove them causal and
    shape-preserving, once per factory; raise ``ValueError`` naming the block otherwise."""
    factory = get_block(name)
    if (factory, nonlinearity) in _VERIFIED:
        return
    with torch.random.fork_rng(devices=[]):  # leave the caller's random stream untouched
        _verify(name, nonlinearity)
    _VERIFIED.add((factory, nonlinearity))


def _verify(name: str, nonlinearity: str) -> None:
    for stream, skip in (("u", 0), ("u", 4), ("ul", 4), ("ul", 8)):
        block = build_block(name, 4, stream, skip, 0.0, 3, nonlinearity, True)
        try:
            check_causality(block, (4, 5, 6), stream=stream, skip_channels=skip, cond_dim=3)
        except CausalityError as error:
            raise CausalityError(
                f"block {name!r} breaks the autoregressive order: {error}"
            ) from None
        except ValueError as error:
            raise ValueError(
                f"block {name!r} does not follow the block contract: {error}"
            ) from None
