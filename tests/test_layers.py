"""Causal layers of ``pixelcnnpp.autoregressive.layers``: output shapes for odd and even sizes,
receptive fields proven by perturbing every input position, the shifts, concat_elu, the CPU
dropout, and weight normalization.

Receptive fields are measured, not assumed: ``dependence`` perturbs one input position at a
time and records which outputs move. The layers are linear with random weights, so a
declared dependency that is missing (or an extra one) shows up exactly.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from pixelcnnpp.autoregressive import (
    Dropout,
    NetworkInNetwork,
    ShiftedConv2d,
    ShiftedConvTranspose2d,
    concat_elu,
    down_shift,
    right_shift,
)
from pixelcnnpp.autoregressive.layers import PointwiseConv2d, dropout_mask

DTYPE = torch.float64


def dependence(fn, in_shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    """``dep[i, j, a, b]``: output position ``(i, j)`` (any channel) moves when input ``(a, b)``
    (all channels) is perturbed. ``[H_out, W_out, H_in, W_in]`` booleans."""
    c, h, w = in_shape
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(1, c, h, w, generator=gen, dtype=DTYPE)
    x = x0.repeat(h * w + 1, 1, 1, 1)
    for k in range(h * w):
        x[k + 1, :, k // w, k % w] += 1.0 + torch.rand(c, generator=gen, dtype=DTYPE)
    with torch.no_grad():
        y = fn(x)
    moved = (y[1:] - y[:1]).abs().amax(1) > 1e-12  # [H_in * W_in, H_out, W_out]
    return moved.permute(1, 2, 0).reshape(*y.shape[-2:], h, w)


def expected_conv_field(kind, kernel, stride, in_hw, out_hw) -> torch.Tensor:
    """The receptive field the ``ShiftedConv2d`` docstring promises, as ``dependence`` lays it
    out: output ``(I, J)`` stands for input ``(s I, s J)`` and sees rows ``s I - kh + 1 .. s I``
    and columns centred on ``s J`` (``down``) or ending at ``s J`` (``down_right``)."""
    (kh, kw), (h, w) = kernel, in_hw
    field = torch.zeros(*out_hw, h, w, dtype=torch.bool)
    for i in range(out_hw[0]):
        for j in range(out_hw[1]):
            ci, cj = stride * i, stride * j
            left, right = ((kw - 1) // 2, (kw - 1) // 2) if kind == "down" else (kw - 1, 0)
            rows = slice(max(0, ci - kh + 1), ci + 1)
            cols = slice(max(0, cj - left), cj + right + 1)
            field[i, j, rows, cols] = True
    return field


def raster_after(h: int, w: int, i: int, j: int) -> torch.Tensor:
    """``[h, w]`` booleans: positions strictly after ``(i, j)`` in raster order."""
    order = torch.arange(h * w).view(h, w)
    return order > i * w + j


CONV_CASES = [
    pytest.param("down", (2, 3), id="down-2x3"),
    pytest.param("down", (1, 3), id="down-1x3"),
    pytest.param("down_right", (2, 2), id="down_right-2x2"),
    pytest.param("down_right", (2, 1), id="down_right-2x1"),
]
SIZES = [(1, 1), (1, 5), (5, 3), (4, 6), (7, 7)]


# -- shapes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "kernel"), CONV_CASES)
@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((28, 28), (28, 28)),
        ((7, 7), (7, 7)),
        ((1, 1), (1, 1)),
        ((5, 3), (5, 3)),
        ((2, 8), (2, 8)),
    ],
)
def test_shifted_conv_stride1_keeps_size(kind, kernel, size, expected):
    conv = ShiftedConv2d(3, 5, kernel, kind)
    assert conv(torch.randn(2, 3, *size)).shape == (2, 5, *expected)


@pytest.mark.parametrize(("kind", "kernel"), CONV_CASES)
@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((28, 28), (14, 14)),
        ((14, 14), (7, 7)),
        ((7, 7), (4, 4)),
        ((4, 4), (2, 2)),
        ((2, 2), (1, 1)),
        ((1, 1), (1, 1)),
        ((5, 3), (3, 2)),
        ((1, 6), (1, 3)),
    ],
)
def test_shifted_conv_stride2_halves_size_rounding_up(kind, kernel, size, expected):
    conv = ShiftedConv2d(3, 5, kernel, kind, stride=2)
    assert conv(torch.randn(2, 3, *size)).shape == (2, 5, *expected)


@pytest.mark.parametrize(("kind", "kernel"), [("down", (2, 3)), ("down_right", (2, 2))])
@pytest.mark.parametrize(
    ("low", "high"),
    [((14, 14), (28, 28)), ((4, 4), (7, 7)), ((2, 2), (4, 4)), ((1, 1), (1, 1)), ((3, 2), (5, 3))],
)
def test_shifted_conv_transpose_reaches_requested_size(kind, kernel, low, high):
    deconv = ShiftedConvTranspose2d(3, 5, kernel, kind)
    assert deconv(torch.randn(2, 3, *low), high).shape == (2, 5, *high)


def test_stride2_then_transpose_round_trips_every_size_to_28():
    sizes = [(28, 28)]
    while sizes[-1] != (1, 1):
        conv = ShiftedConv2d(2, 2, (2, 3), "down", stride=2)
        sizes.append(tuple(conv(torch.zeros(1, 2, *sizes[-1])).shape[-2:]))
    assert sizes == [(28, 28), (14, 14), (7, 7), (4, 4), (2, 2), (1, 1)]
    deconv = ShiftedConvTranspose2d(2, 2, (2, 3), "down")
    for low, high in zip(sizes[:0:-1], sizes[-2::-1], strict=True):
        assert deconv(torch.zeros(1, 2, *low), high).shape[-2:] == high


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kernel_size": (2, 2), "kind": "down"}, "odd kernel width"),
        ({"kernel_size": (2, 3), "kind": "up"}, "kind must be"),
    ],
)
def test_shifted_conv_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShiftedConv2d(2, 2, **kwargs)


def test_shifted_conv_transpose_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind must be"):
        ShiftedConvTranspose2d(2, 2, (2, 3), "right")


# -- receptive fields ---------------------------------------------------------------------------


@pytest.mark.parametrize("weight_norm", [True, False], ids=["wn", "plain"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(("kind", "kernel"), CONV_CASES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_shifted_conv_receptive_field_is_exactly_the_documented_one(
    kind, kernel, stride, size, weight_norm
):
    torch.manual_seed(0)
    conv = ShiftedConv2d(2, 3, kernel, kind, stride=stride, weight_norm=weight_norm).to(DTYPE)
    dep = dependence(conv, (2, *size))
    out_hw = tuple(dep.shape[:2])
    assert torch.equal(dep, expected_conv_field(kind, kernel, stride, size, out_hw))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(("kind", "kernel"), CONV_CASES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_shifted_conv_never_sees_the_future(kind, kernel, stride, size):
    """``down``: output ``(I, J)`` never moves with input rows below ``s I``; ``down_right``:
    never with inputs after ``(s I, s J)`` in raster order."""
    torch.manual_seed(1)
    conv = ShiftedConv2d(2, 3, kernel, kind, stride=stride).to(DTYPE)
    dep = dependence(conv, (2, *size))
    h, w = size
    for i in range(dep.shape[0]):
        for j in range(dep.shape[1]):
            if kind == "down":
                forbidden = torch.arange(h).view(h, 1).expand(h, w) > stride * i
            else:
                forbidden = raster_after(h, w, stride * i, stride * j)
            assert not (dep[i, j] & forbidden).any(), (
                f"output ({i}, {j}) sees {(dep[i, j] & forbidden).nonzero().tolist()}"
            )


@pytest.mark.parametrize(("kind", "kernel"), [("down", (2, 3)), ("down_right", (2, 2))])
@pytest.mark.parametrize(
    ("low", "high"), [((4, 4), (7, 7)), ((2, 3), (4, 6)), ((3, 2), (5, 3)), ((1, 1), (1, 1))]
)
def test_shifted_conv_transpose_maps_each_output_to_its_low_resolution_source(
    kind, kernel, low, high
):
    """Output ``(i, j)`` reads low-resolution row ``i // 2`` only; ``down_right`` reads the one
    position ``(i // 2, j // 2)``, ``down`` the columns ``J`` with ``|2 J - j| <= 1``. Every
    position it reads stands for pixels before ``(i, j)``: row ``2 I <= i`` (``down``), or
    ``(2 I, 2 J)`` not after ``(i, j)`` in raster order (``down_right``)."""
    torch.manual_seed(2)
    deconv = ShiftedConvTranspose2d(2, 3, kernel, kind).to(DTYPE)
    dep = dependence(lambda x: deconv(x, high), (2, *low))
    expected = torch.zeros_like(dep)
    for i in range(high[0]):
        for j in range(high[1]):
            for jj in range(low[1]):
                reads = jj == j // 2 if kind == "down_right" else abs(2 * jj - j) <= 1
                expected[i, j, i // 2, jj] = reads
    assert torch.equal(dep, expected)
    for i, j, ii, jj in dep.nonzero().tolist():
        if kind == "down":
            assert 2 * ii <= i
        else:
            assert (2 * ii, 2 * jj) <= (i, j)


def test_strided_then_transposed_keeps_the_down_right_order():
    """Downsampling then upsampling the ``ul`` stream: output ``(i, j)`` only moves with inputs
    at or before ``(i, j)`` in raster order (the model adds its own shift on top)."""
    torch.manual_seed(3)
    down = ShiftedConv2d(2, 2, (2, 2), "down_right", stride=2).to(DTYPE)
    up = ShiftedConvTranspose2d(2, 2, (2, 2), "down_right").to(DTYPE)
    h, w = 7, 5
    dep = dependence(lambda x: up(down(x), (h, w)), (2, h, w))
    for i in range(h):
        for j in range(w):
            assert not (dep[i, j] & raster_after(h, w, i, j)).any()
    assert dep[6, 4, 6, 4], "the upsampled stream should see its own low-resolution source"


def test_strided_then_transposed_keeps_the_down_order():
    torch.manual_seed(4)
    down = ShiftedConv2d(2, 2, (2, 3), "down", stride=2).to(DTYPE)
    up = ShiftedConvTranspose2d(2, 2, (2, 3), "down").to(DTYPE)
    h, w = 7, 5
    dep = dependence(lambda x: up(down(x), (h, w)), (2, h, w))
    rows = torch.arange(h).view(1, 1, h, 1)
    out_rows = torch.arange(h).view(h, 1, 1, 1)
    assert not (dep & (rows > out_rows)).any()


# -- shifts, nonlinearity, nin ------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (1, 4), (3, 1), (4, 5)])
def test_down_shift_moves_rows_down_with_zeros_on_top(size):
    x = torch.randn(2, 3, *size)
    y = down_shift(x)
    assert y.shape == x.shape
    assert torch.equal(y[:, :, 0], torch.zeros_like(x[:, :, 0]))
    assert torch.equal(y[:, :, 1:], x[:, :, :-1])


@pytest.mark.parametrize("size", [(1, 1), (1, 4), (3, 1), (4, 5)])
def test_right_shift_moves_columns_right_with_zeros_on_the_left(size):
    x = torch.randn(2, 3, *size)
    y = right_shift(x)
    assert y.shape == x.shape
    assert torch.equal(y[..., 0], torch.zeros_like(x[..., 0]))
    assert torch.equal(y[..., 1:], x[..., :-1])


def test_concat_elu_is_elu_of_x_and_minus_x():
    x = torch.randn(2, 3, 4, 5, dtype=DTYPE)
    y = concat_elu(x)
    assert y.shape == (2, 6, 4, 5)

    def elu(t):
        return torch.where(t > 0, t, torch.expm1(t))

    torch.testing.assert_close(y[:, :3], elu(x))
    torch.testing.assert_close(y[:, 3:], elu(-x))
    torch.testing.assert_close(y, F.elu(torch.cat([x, -x], dim=1)))


def _concat_elu_reference(x):
    return F.elu(torch.cat([x, -x], dim=1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "layout", ["contiguous", "channels_last", "strided", "channels_last_strided"]
)
def test_concat_elu_matches_elu_of_the_concatenation_in_values_and_gradients(dtype, layout):
    torch.manual_seed(11)
    x = torch.randn(4, 6, 5, 9, dtype=torch.float64) * 4
    x[0, 0, 0, :4] = torch.tensor([0.0, -0.0, 1e-30, -1e-30])  # the branch point and tiny values
    x[0, 1, 0, :2] = torch.tensor([-90.0, 90.0])  # expm1 saturating at -1
    x = x.to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = x[..., 1:8]
    elif layout == "channels_last_strided":  # a cropped convolution output
        x = x.contiguous(memory_format=torch.channels_last)[..., :4, 1:8]
    x.requires_grad_()
    grad = torch.randn(x.shape[0], 12, *x.shape[2:], dtype=torch.float64).to(dtype)
    y = concat_elu(x)
    (gx,) = torch.autograd.grad(y, x, grad)

    x64 = x.detach().double().requires_grad_()
    y64 = _concat_elu_reference(x64)
    (gx64,) = torch.autograd.grad(y64, x64, grad.double())
    ulp = torch.finfo(dtype).eps
    assert y.dtype == dtype and y.shape == y64.shape
    # values: correctly rounded but for one unit in the last place
    assert ((y.double() - y64).abs() <= ulp * y64.abs().clamp(min=1e-30)).all()
    # gradients: g1 elu'(x) - g2 elu'(-x), each term rounded once
    bound = 3 * ulp * (grad[:, :6].double().abs() + grad[:, 6:].double().abs())
    assert ((gx.double() - gx64).abs() <= bound).all()
    if layout.startswith("channels_last"):
        assert y.is_contiguous(memory_format=torch.channels_last)


def test_concat_elu_is_twice_differentiable():
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(concat_elu, (x,))
    assert torch.autograd.gradgradcheck(concat_elu, (x,))


@pytest.mark.parametrize("bad", [torch.tensor(1.0), torch.ones(3)])
def test_concat_elu_needs_a_channel_dimension(bad):
    with pytest.raises(ValueError, match="channel dimension"):
        concat_elu(bad)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided", "one_pixel"])
def test_pointwise_conv_is_the_1x1_convolution_in_values_and_gradients(bias, layout):
    torch.manual_seed(13)
    layer = PointwiseConv2d(6, 5, bias=bias).to(DTYPE)
    x = torch.randn(3, 6, 4, 7, dtype=DTYPE)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
        layer = layer.to(memory_format=torch.channels_last)
    elif layout == "strided":
        x = x[..., 1:5]
    elif layout == "one_pixel":
        x = x[:, :, :1, :1].contiguous()
    x.requires_grad_()
    grad = torch.randn(x.shape[0], 5, *x.shape[2:], dtype=DTYPE)
    y = layer(x)
    expected = F.conv2d(x, layer.weight, layer.bias)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    got = torch.autograd.grad(y, [x, *layer.parameters()], grad)
    want = torch.autograd.grad(expected, [x, *layer.parameters()], grad)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_pointwise_conv_under_bf16_autocast_and_its_errors():
    layer = PointwiseConv2d(4, 3)
    x = torch.randn(2, 4, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), layer(x), rtol=2e-2, atol=2e-2)
    with pytest.raises(RuntimeError, match="channels"):
        layer(torch.randn(2, 5, 3, 3))  # the convolution's own message names the mismatch


def test_network_in_network_is_position_wise():
    torch.manual_seed(5)
    nin = NetworkInNetwork(3, 4).to(DTYPE)
    dep = dependence(nin, (3, 3, 4))
    assert torch.equal(dep, torch.eye(12, dtype=torch.bool).view(3, 4, 3, 4))


# -- dropout ------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5])
def test_dropout_is_identity_in_eval_mode(p):
    x = torch.randn(4, 8, 5, 5)
    assert torch.equal(Dropout(p).eval()(x), x)


def test_dropout_with_p0_is_identity_in_training():
    x = torch.randn(4, 8, 5, 5)
    assert torch.equal(Dropout(0.0).train()(x), x)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_keeps_about_1_minus_p_and_scales_the_rest(p):
    torch.manual_seed(6)
    x = torch.rand(64, 16, 16, 16) + 0.5  # no zeros, so a zero means dropped
    y = Dropout(p).train()(x)
    kept = y != 0
    n = kept.numel()
    # Binomial(n, 1 - p): 5 standard deviations.
    tolerance = 5 * (p * (1 - p) / n) ** 0.5
    assert abs(kept.float().mean().item() - (1 - p)) < tolerance
    # the mask resolves p to 1/256 when 256 p is whole, else to 1/65536; the scale uses that p
    _, effective = dropout_mask(x, p)
    assert effective == p if (256 * p).is_integer() else abs(effective - p) <= 0.5 / 65536
    torch.testing.assert_close(y[kept], x[kept] / (1 - effective))
    assert torch.equal(Dropout(p).eval()(x), x)


@pytest.mark.parametrize("p", [0.5, 0.25, 0.75, 0.125, 3 / 16, 5 / 256, 0.3])
def test_dropout_mask_elements_are_independent_at_every_bit_position(p):
    """Several elements share one random byte: every position within a byte must be kept with
    probability 1 - p, and neighbours (same byte or not) independently of each other."""
    torch.manual_seed(12)
    x = torch.empty(256, 8, 16, 16)
    mask, effective = dropout_mask(x, p)
    assert effective == p if (256 * p).is_integer() else abs(effective - p) <= 0.5 / 65536
    values = torch.unique(mask)
    assert torch.equal(values, torch.tensor([0.0, 1.0 / (1.0 - effective)]))
    kept = (mask != 0).flatten().double()
    n = kept.numel()
    for position in range(8):  # positions within a byte for 1, 2 and 4 bits per element
        share = kept[position::8].mean().item()
        assert abs(share - (1 - p)) < 5 * (p * (1 - p) / (n / 8)) ** 0.5
    for lag in (1, 2, 3, 7, 8, 9):
        both = (kept[:-lag] * kept[lag:]).mean().item()
        assert abs(both - (1 - p) ** 2) < 5 * ((1 - p) ** 2 * (1 - (1 - p) ** 2) / n) ** 0.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_dropout_mask_follows_dtype_and_layout(dtype):
    x = torch.randn(4, 6, 5, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
    torch.manual_seed(3)
    mask, _ = dropout_mask(x, 0.5)
    assert mask.dtype == dtype and mask.shape == x.shape
    assert mask.is_contiguous(memory_format=torch.channels_last)
    torch.manual_seed(3)
    flat, _ = dropout_mask(torch.empty(x.numel(), dtype=dtype), 0.5)
    # the mask is laid out in memory order: channels vary fastest in channels_last
    assert torch.equal(mask.permute(0, 2, 3, 1).reshape(-1), flat)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_dropout_mask_needs_a_probability_strictly_between_0_and_1(p):
    with pytest.raises(ValueError, match="dropout probability"):
        dropout_mask(torch.ones(3), p)


def test_dropout_is_reproducible_under_a_seed_and_keeps_dtype():
    x = torch.randn(3, 4, 5, 5, dtype=DTYPE)
    torch.manual_seed(7)
    a = Dropout(0.5).train()(x)
    torch.manual_seed(7)
    b = Dropout(0.5).train()(x)
    assert torch.equal(a, b)
    assert a.dtype == DTYPE


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5])
def test_dropout_rejects_invalid_probability(p):
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(p)


# -- weight normalization -----------------------------------------------------------------------


def _inner(layer):
    return getattr(layer, "conv", None) or layer.deconv


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda wn: ShiftedConv2d(3, 4, (2, 3), "down", weight_norm=wn), id="conv"),
        pytest.param(
            lambda wn: ShiftedConv2d(3, 4, (2, 2), "down_right", 2, weight_norm=wn), id="strided"
        ),
        pytest.param(
            lambda wn: ShiftedConvTranspose2d(3, 4, (2, 3), weight_norm=wn), id="transposed"
        ),
        pytest.param(lambda wn: NetworkInNetwork(3, 4, weight_norm=wn), id="nin"),
    ],
)
def test_weight_norm_parametrization_present_only_when_enabled(make):
    layer = _inner(make(True))
    assert parametrize.is_parametrized(layer, "weight")
    gain, direction = (
        layer.parametrizations.weight.original0,
        layer.parametrizations.weight.original1,
    )
    # One gain per output channel (dim 0 of a conv's weight, dim 1 of a transposed conv's).
    out_dim = 1 if isinstance(layer, torch.nn.ConvTranspose2d) else 0
    assert gain.numel() == 4 and gain.shape[out_dim] == 4
    norms = (
        torch.linalg.vector_norm(direction.transpose(0, out_dim).flatten(1), dim=1)
        .view_as(gain.transpose(0, out_dim))
        .transpose(0, out_dim)
    )
    torch.testing.assert_close(layer.weight, gain * direction / norms)
    assert not parametrize.is_parametrized(_inner(make(False)), "weight")
