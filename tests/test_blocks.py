"""The block registry and the block contract, tested for every registered block.

The contract tests are parametrized over ``list_blocks()``: a block registered in the package
(or installed through the ``pixelcnnpp.blocks`` entry point) is tested for shape, backward,
NaN, causality and its ``incremental_context`` with no new test. Blocks that tests register
are removed again by the ``register`` fixture.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from pixelcnnpp.autoregressive import (
    CausalityError,
    PixelCNNConfig,
    PixelCNNPP,
    ShiftedConv2d,
    build_block,
    check_causality,
    get_block,
    list_blocks,
    register_block,
)

DTYPE = torch.float64
F_ = 4  # channels of the stream in the contract tests
STREAM_CASES = [("u", 0), ("u", F_), ("ul", F_), ("ul", 2 * F_)]
COND_CASES = [None, 3]


@pytest.fixture
def register(registries):
    """``register_block`` that undoes itself: the registry is restored when the test ends."""
    return register_block


class ContractBlock(nn.Module):
    """Accepts the contract's keywords; subclasses define ``forward``."""

    def __init__(
        self,
        channels,
        stream,
        skip_channels=0,
        dropout=0.0,
        cond_dim=None,
        nonlinearity="concat_elu",
        weight_norm=True,
    ):
        super().__init__()
        self.stream, self.skip_channels, self.cond_dim = stream, skip_channels, cond_dim
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.skip_conv = nn.Conv2d(skip_channels, channels, 3, padding=1) if skip_channels else None


class LeakyConvBlock(ContractBlock):
    """A plain 3x3 convolution: output (i, j) sees the row below and the pixel to the right."""

    def forward(self, x, skip=None, cond=None):
        return x + self.conv(x)


class LeakySkipBlock(ContractBlock):
    """Causal on ``x`` (a 1x1 use of it) but a 3x3 convolution of ``skip``."""

    def forward(self, x, skip=None, cond=None):
        return x if skip is None else x + self.skip_conv(skip)


class DownOnBothStreamsBlock(ContractBlock):
    """A 2x3 down-shifted conv on both streams: causal on ``u``, leaks on ``ul`` (output
    ``(i, j)`` sees ``(i, j + 1)``), the classic mistake."""

    def __init__(self, channels, stream, **kwargs):
        super().__init__(channels, stream, **kwargs)
        self.conv = ShiftedConv2d(channels, channels, (2, 3), "down")

    def forward(self, x, skip=None, cond=None):
        return x + self.conv(x)


class WrongShapeBlock(ContractBlock):
    def forward(self, x, skip=None, cond=None):
        return torch.cat([x, x], dim=1)


def no_contract_keywords(channels, stream):
    return nn.Identity()


def not_a_module(**kwargs):
    return lambda x, skip=None, cond=None: x


# -- the registry -------------------------------------------------------------------------------


def test_gated_resnet_is_registered():
    assert "gated_resnet" in list_blocks()


def test_register_block_decorates_a_class(register):
    @register("test_class_block")
    class Block(LeakyConvBlock):
        pass

    assert isinstance(Block, type)  # the decorator returns the class unchanged
    assert get_block("test_class_block") is Block
    assert "test_class_block" in list_blocks()
    assert isinstance(build_block("test_class_block", 4, "u"), Block)


def test_register_block_takes_a_function_directly_and_as_decorator(register):
    def direct(**kwargs):
        return LeakyConvBlock(**kwargs)

    assert register("test_fn_direct", direct) is direct

    @register("test_fn_decorated")
    def decorated(**kwargs):
        return LeakyConvBlock(**kwargs)

    assert decorated.__name__ == "decorated"
    for name, factory in [("test_fn_direct", direct), ("test_fn_decorated", decorated)]:
        assert get_block(name) is factory
        assert isinstance(build_block(name, 4, "ul", 4), LeakyConvBlock)


def test_duplicate_name_raises_unless_override(register):
    register("test_dup", LeakyConvBlock)
    with pytest.raises(ValueError, match=r"'test_dup' is already registered.*override=True"):
        register("test_dup", WrongShapeBlock)
    assert get_block("test_dup") is LeakyConvBlock
    register("test_dup", WrongShapeBlock, override=True)
    assert get_block("test_dup") is WrongShapeBlock


def test_registering_the_same_factory_twice_is_allowed(register):
    """Re-running a module's decorators (a notebook cell, a reload) is not a conflict."""
    register("test_same", LeakyConvBlock)
    register("test_same", LeakyConvBlock)
    assert get_block("test_same") is LeakyConvBlock


def test_builtin_name_is_protected(register):
    with pytest.raises(ValueError, match="'gated_resnet' is already registered"):
        register("gated_resnet", LeakyConvBlock)
    assert get_block("gated_resnet").__name__ == "GatedResnet"


@pytest.mark.parametrize(
    ("name", "factory", "match"),
    [
        ("", LeakyConvBlock, "non-empty string"),
        (3, LeakyConvBlock, "non-empty string"),
        ("test_not_callable", 42, "class or function"),
    ],
)
def test_register_rejects_bad_names_and_factories(register, name, factory, match):
    with pytest.raises(ValueError, match=match):
        register(name, factory)


def test_unknown_name_lists_the_known_ones(register):
    register("test_known_block", LeakyConvBlock)
    for call in (
        lambda: get_block("no_such_block"),
        lambda: build_block("no_such_block", 4, "u"),
        lambda: PixelCNNPP(PixelCNNConfig(image_shape=(1, 2, 2), block="no_such_block")),
    ):
        with pytest.raises(ValueError, match="unknown block 'no_such_block'") as info:
            call()
        assert "'gated_resnet'" in str(info.value)
        assert "'test_known_block'" in str(info.value)


def test_list_blocks_is_sorted(register):
    register("test_zz_block", LeakyConvBlock)
    register("test_aa_block", LeakyConvBlock)
    names = list_blocks()
    assert names == sorted(names)
    assert {"test_zz_block", "test_aa_block", "gated_resnet"} <= set(names)


def test_build_block_rejects_unknown_stream():
    with pytest.raises(ValueError, match="stream must be 'u' or 'ul', got 'v'"):
        build_block("gated_resnet", 4, "v")


def test_factory_without_contract_keywords_gets_a_clear_error(register):
    register("test_no_contract", no_contract_keywords)
    # channels and stream are all a block without skip input or conditioning must declare
    assert isinstance(build_block("test_no_contract", 4, "u"), nn.Identity)
    with pytest.raises(ValueError, match=r"'test_no_contract'.*block contract's keywords"):
        build_block("test_no_contract", 4, "ul", skip_channels=4)
    with pytest.raises(ValueError, match=r"'test_no_contract'.*block contract's keywords"):
        build_block("test_no_contract", 4, "u", cond_dim=3)
    with pytest.raises(ValueError, match="'test_no_contract'"):
        PixelCNNPP(PixelCNNConfig(image_shape=(1, 2, 2), num_filters=4, block="test_no_contract"))


def test_factory_returning_a_non_module_gets_a_clear_error(register):
    register("test_not_module", not_a_module)
    with pytest.raises(ValueError, match=r"'test_not_module' must build an nn.Module.*function"):
        build_block("test_not_module", 4, "u")


# -- the contract, for every registered block --------------------------------------------------


def _inputs(stream_skip, cond_dim, size=(5, 6), batch=2, seed=0):
    _, skip = stream_skip
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, F_, *size, generator=gen, dtype=DTYPE)
    s = torch.randn(batch, skip, *size, generator=gen, dtype=DTYPE) if skip else None
    c = torch.randn(batch, cond_dim, generator=gen, dtype=DTYPE) if cond_dim else None
    return x, s, c


def _build(name, stream, skip, cond_dim, dropout=0.5):
    torch.manual_seed(0)
    return build_block(name, F_, stream, skip, dropout, cond_dim).to(DTYPE)


contract = pytest.mark.parametrize("name", list_blocks())
streams = pytest.mark.parametrize(
    ("stream", "skip"), STREAM_CASES, ids=[f"{s}-skip{k}" for s, k in STREAM_CASES]
)
conds = pytest.mark.parametrize("cond_dim", COND_CASES, ids=["nocond", "cond3"])


@contract
@streams
@conds
def test_block_forward_backward(name, stream, skip, cond_dim):
    block = _build(name, stream, skip, cond_dim).train()
    x, s, c = _inputs((stream, skip), cond_dim)
    x.requires_grad_(True)
    y = block(x, s, c)
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    assert torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in block.named_parameters():
        # An unused parameter breaks DistributedDataParallel (without find_unused_parameters).
        assert p.grad is not None, f"parameter {pname} of block {name!r} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"parameter {pname} has a non-finite gradient"


@contract
@streams
@conds
def test_block_eval_is_deterministic(name, stream, skip, cond_dim):
    block = _build(name, stream, skip, cond_dim).eval()
    x, s, c = _inputs((stream, skip), cond_dim)
    with torch.no_grad():
        assert torch.equal(block(x, s, c), block(x, s, c))


@contract
@streams
@conds
@pytest.mark.parametrize("size", [(5, 6), (1, 7), (4, 1)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_block_is_causal(name, stream, skip, cond_dim, size):
    block = _build(name, stream, skip, cond_dim)
    check_causality(block, (F_, *size), stream=stream, skip_channels=skip, cond_dim=cond_dim)


@contract
@streams
@conds
def test_block_incremental_context_window_gives_the_full_output(name, stream, skip, cond_dim):
    """Evaluated on the window its ``incremental_context`` declares around ``(i, j)``, the block
    gives its full-image output at ``(i, j)``; also when the window's positions after ``(i, j)``
    hold zeros (on ``ul``) and, on ``u``, on whole rows, as the cached sampler calls it."""
    block = _build(name, stream, skip, cond_dim).eval()
    context = getattr(block, "incremental_context", None)
    if context is None:
        pytest.skip(f"block {name!r} has no incremental_context: cached sampling falls back")
    if hasattr(block, "incremental_state"):
        pytest.skip(f"block {name!r} reaches past its window: its incremental_state is tested")
    assert len(context) == 3 and all(isinstance(k, int) and k >= 0 for k in context), context
    rows_above, cols_left, cols_right = context
    x, s, c = _inputs((stream, skip), cond_dim)
    h, w = x.shape[-2:]
    with torch.no_grad():
        full = block(x, s, c)
        for i in range(h):
            r0 = max(0, i - rows_above)
            if stream == "u":
                rows = block(x[:, :, r0 : i + 1], None if s is None else s[:, :, r0 : i + 1], c)
                torch.testing.assert_close(rows[:, :, i - r0], full[:, :, i], rtol=0, atol=1e-12)
            for j in range(w):
                c0, c1 = max(0, j - cols_left), min(w - 1, j + cols_right)
                xw = x[:, :, r0 : i + 1, c0 : c1 + 1].clone()
                sw = None if s is None else s[:, :, r0 : i + 1, c0 : c1 + 1].clone()
                out = block(xw, sw, c)[:, :, i - r0, j - c0]
                torch.testing.assert_close(out, full[:, :, i, j], rtol=0, atol=1e-12)
                if stream == "ul":
                    xw[:, :, -1, j - c0 + 1 :] = 0
                    if sw is not None:
                        sw[:, :, -1, j - c0 + 1 :] = 0
                    out = block(xw, sw, c)[:, :, i - r0, j - c0]
                    torch.testing.assert_close(out, full[:, :, i, j], rtol=0, atol=1e-12)


@contract
@streams
@conds
def test_block_incremental_state_gives_the_full_output(name, stream, skip, cond_dim):
    """A block with ``incremental_state``, fed as the cached sampler feeds it (whole rows on
    ``u``; on ``ul`` a run of known columns, then one column at a time, the window's later
    positions holding zeros), gives its full-image output at every position."""
    block = _build(name, stream, skip, cond_dim).eval()
    if not hasattr(block, "incremental_state"):
        pytest.skip(f"block {name!r} has no incremental_state: it runs its forward on windows")
    rows_above, cols_left, cols_right = block.incremental_context
    x, s, c = _inputs((stream, skip), cond_dim)
    h, w = x.shape[-2:]
    state = block.incremental_state(x.shape[0], (h, w), c)
    with torch.no_grad():
        full = block(x, s, c)
        for i in range(h):
            r0 = max(0, i - rows_above)
            runs = (
                [(0, w)] if stream == "u" else [(0, i % w), *((j, j + 1) for j in range(i % w, w))]
            )
            for c0, c1 in runs:
                if c0 == c1:
                    continue
                w0, w1 = max(0, c0 - cols_left), min(w, c1 + cols_right)
                xw = x[:, :, r0 : i + 1, w0:w1].clone()
                sw = None if s is None else s[:, :, r0 : i + 1, w0:w1].clone()
                if stream == "ul":  # not yet computed: the sampler's buffers hold zeros there
                    for t in (xw, sw) if sw is not None else (xw,):
                        t[:, :, -1, c1 - w0 :] = 0
                out = state.feed(xw, sw, i, c0, c1)
                assert out.shape == (x.shape[0], F_, c1 - c0)
                torch.testing.assert_close(out, full[:, :, i, c0:c1], rtol=0, atol=1e-12)


# -- blocks that break the contract -------------------------------------------------------------

LEAK = re.compile(r"output \((\d+), (\d+)\) changes when input (x|skip) at \((\d+), (\d+)\)")


def _expected_leaks(stream, h, w, reach):
    """(output, input) pairs of a 3x3 conv that the stream forbids; ``reach(o, i)`` says the
    conv connects them."""
    pairs = 0
    for oi in range(h):
        for oj in range(w):
            for ii in range(h):
                for ij in range(w):
                    if not reach(oi, oj, ii, ij):
                        continue
                    after = ii > oi if stream == "u" else (ii, ij) > (oi, oj)
                    pairs += after
    return pairs


def _near(oi, oj, ii, ij):
    return abs(oi - ii) <= 1 and abs(oj - ij) <= 1


@pytest.mark.parametrize(
    ("factory", "stream", "skip", "source"),
    [
        (LeakyConvBlock, "u", 0, "x"),
        (LeakyConvBlock, "ul", 4, "x"),
        (LeakySkipBlock, "u", 4, "skip"),
        (LeakySkipBlock, "ul", 8, "skip"),
        (DownOnBothStreamsBlock, "ul", 4, "x"),
    ],
)
def test_check_causality_names_every_leaking_pair(register, factory, stream, skip, source):
    register("test_leaky", factory)
    block = build_block("test_leaky", 4, stream, skip).to(DTYPE)
    h, w = 5, 6
    with pytest.raises(CausalityError) as info:
        check_causality(block, (4, h, w), stream=stream, skip_channels=skip)
    message = str(info.value)
    assert f"block {factory.__name__} on stream {stream!r} is not causal" in message
    shown = LEAK.findall(message)
    assert shown, message
    for oi, oj, name, ii, ij in shown:
        o, i = (int(oi), int(oj)), (int(ii), int(ij))
        assert name == source
        assert (i[0] > o[0]) if stream == "u" else (i > o), f"{o} may see {i}; not a leak"
    if factory is DownOnBothStreamsBlock:
        # Row i, column j + 1 is the only forbidden input a 2x3 down conv reaches.
        expected = h * (w - 1)
    else:
        expected = _expected_leaks(stream, h, w, _near)
    assert f": {expected} leaking (output, input) pairs" in message


def test_down_shifted_block_is_fine_on_u_and_caught_on_ul(register):
    register("test_down_both", DownOnBothStreamsBlock)
    check_causality(build_block("test_down_both", 4, "u"), (4, 5, 6))
    with pytest.raises(CausalityError, match=r"output \(0, 0\) changes when input x at \(0, 1\)"):
        check_causality(build_block("test_down_both", 4, "ul", 4), (4, 5, 6))


@pytest.mark.parametrize("factory", [LeakyConvBlock, LeakySkipBlock, DownOnBothStreamsBlock])
def test_model_refuses_a_leaky_block_by_name(register, factory):
    register("test_leaky_model", factory)
    config = PixelCNNConfig(image_shape=(1, 4, 4), num_filters=4, num_resnet=1, num_stages=2)
    with pytest.raises(CausalityError, match="block 'test_leaky_model' breaks the autoregressive"):
        PixelCNNPP(config, block="test_leaky_model")


def test_wrong_shape_block_gets_a_clear_error(register):
    register("test_wrong_shape", WrongShapeBlock)
    with pytest.raises(ValueError, match=r"shaped like its input x \(\d+, 4, 5, 6\), got"):
        check_causality(build_block("test_wrong_shape", 4, "u"), (4, 5, 6))
    with pytest.raises(ValueError, match="block 'test_wrong_shape' does not follow the block"):
        PixelCNNPP(PixelCNNConfig(image_shape=(1, 3, 3), num_filters=4, block="test_wrong_shape"))


def test_check_causality_needs_a_stream_and_a_shape():
    block = nn.Identity()
    with pytest.raises(ValueError, match="stream must be 'u' or 'ul'"):
        check_causality(block, (4, 3, 3))
    with pytest.raises(ValueError, match=r"image_shape must be \(channels, H, W\)"):
        check_causality(block, None, stream="u")


@pytest.mark.parametrize("training", [True, False])
def test_check_causality_restores_the_training_flag(training):
    block = build_block("gated_resnet", 4, "ul", 4, dropout=0.5).train(training)
    check_causality(block, (4, 3, 4))
    assert all(m.training is training for m in block.modules())
