"""What is particular to the ``gated_pixelcnn`` block (the contract it shares with every block
is tested in test_blocks.py, test_model.py, test_model_normalization.py, test_sampling.py and
test_compile.py, parametrized over ``list_blocks()``).

- Its output is the paper's layer: a float64 reference of van den Oord et al. (2016), eqs. (2)
  and (4) and Figure 2, written with plain ``F.conv2d`` on explicitly padded inputs.
- The vertical-to-horizontal link is there: the ``ul`` output at ``(i, j)`` moves with the ``u``
  stream (``skip``) at ``(i, j)``, and the rows above reach the horizontal stack only through it.
- A model built from it has no blind spot: every sub-pixel's log-probability moves with every
  pixel before it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pixelcnnpp.autoregressive import GatedPixelCNN, PixelCNNConfig, PixelCNNPP, build_block

DTYPE = torch.float64
CHANNELS = 3


def randomized(module, seed=0, scale=0.5):
    """Parameters redrawn from N(0, scale): the gains and biases of the default init are too
    uniform to tell a wrong formula from the right one."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=DTYPE) * scale)
    return module


def block(stream, skip_channels, cond_dim, dropout=0.0):
    torch.manual_seed(0)
    b = build_block("gated_pixelcnn", CHANNELS, stream, skip_channels, dropout, cond_dim)
    return randomized(b.to(DTYPE)).eval()


def inputs(skip_channels, cond_dim, size=(4, 5), seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, CHANNELS, *size, generator=gen, dtype=DTYPE)
    s = torch.randn(2, skip_channels, *size, generator=gen, dtype=DTYPE) if skip_channels else None
    c = torch.randn(2, cond_dim, generator=gen, dtype=DTYPE) if cond_dim else None
    return x, s, c


def one_by_one(layer, x):
    """A 1x1 layer of the block as a matrix product over channels: ``W x + b``."""
    w, b = layer.conv.weight[:, :, 0, 0], layer.conv.bias
    return torch.einsum("oi,bihw->bohw", w, x) + b[:, None, None]


def paper_layer(blk: GatedPixelCNN, x, skip, cond, stream):
    """The Gated PixelCNN layer from its equations, with the block's weights.

    Vertical stack (``u``): ``v = tanh(W_f * x + V_f c) . sigmoid(W_g * x + V_g c)`` with
    ``W * x`` the ``(n//2 + 1) x n = 2x3`` convolution over row ``i - 1`` and row ``i`` (the
    stream is already shifted) and ``W_link skip`` added inside the gates. Horizontal stack
    (``ul``): ``h = x + W_o (tanh(.) . sigmoid(.))`` with the ``1 x (n//2 + 1) = 1x2``
    convolution over columns ``j - 1, j`` of row ``i`` and the link ``W_link skip``.
    """
    conv = blk.conv.conv
    # u: a column either side and the row above; ul: a column on the left
    padded = F.pad(x, (1, 1, 1, 0) if stream == "u" else (1, 0, 0, 0))
    pre = F.conv2d(padded, conv.weight, conv.bias)
    if skip is not None:
        pre = pre + one_by_one(blk.link, skip)
    if cond is not None:
        pre = pre + (cond @ blk.cond.weight.T)[:, :, None, None]
    f, g = pre[:, :CHANNELS], pre[:, CHANNELS:]
    gated = torch.tanh(f) * torch.sigmoid(g)
    return gated if stream == "u" else x + one_by_one(blk.out, gated)


CASES = [("u", 0, None), ("u", CHANNELS, 2), ("ul", CHANNELS, None), ("ul", 2 * CHANNELS, 2)]


@pytest.mark.parametrize(("stream", "skip", "cond_dim"), CASES)
def test_output_is_the_papers_gated_layer(stream, skip, cond_dim):
    blk = block(stream, skip, cond_dim)
    x, s, c = inputs(skip, cond_dim)
    with torch.no_grad():
        got, expected = blk(x, s, c), paper_layer(blk, x, s, c, stream)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert expected.abs().mean() > 0.1  # not a comparison of near-zeros


def response(blk, x, s, name, i, j, channels=slice(None)):
    """``|change|`` of the output, ``[B, H, W]`` (largest over channels), when input ``name``
    (``"x"`` or ``"skip"``) moves by 1 at ``(i, j)`` in ``channels``."""
    moved = {"x": x.clone(), "skip": s.clone()}
    moved[name][:, channels, i, j] += 1.0
    with torch.no_grad():
        return (blk(moved["x"], moved["skip"]) - blk(x, s)).abs().amax(1)


@pytest.mark.parametrize("skip", [CHANNELS, 2 * CHANNELS])
def test_ul_output_moves_with_the_u_stream_at_its_own_position(skip):
    """The vertical-to-horizontal link: ``skip`` (the ``u`` stream, first ``F`` channels) at
    ``(i, j)`` changes the ``ul`` output at ``(i, j)``."""
    blk = block("ul", skip, None)
    x, s, _ = inputs(skip, None)
    h, w = x.shape[-2:]
    for i in range(h):
        for j in range(w):
            diff = response(blk, x, s, "skip", i, j, slice(0, CHANNELS))
            assert (diff[:, i, j] > 1e-3).all(), f"ul at ({i}, {j}) ignores u there"


def test_rows_above_reach_the_horizontal_stack_only_through_the_link():
    """The ``ul`` stream's own convolution is 1x2 on its row: its output at ``(i, j)`` moves with
    ``x`` at ``(i, j - 1)`` and ``(i, j)`` and with nothing in the rows above."""
    blk = block("ul", CHANNELS, None)
    x, s, _ = inputs(CHANNELS, None)
    h, w = x.shape[-2:]
    for i in range(h):
        for j in range(w):
            changed = (response(blk, x, s, "x", i, j) > 1e-12).any(0)  # [H, W]
            expected = torch.zeros(h, w, dtype=torch.bool)
            expected[i, j : j + 2] = True  # itself, and the next position's left neighbour
            assert torch.equal(changed, expected), (i, j, changed.nonzero().tolist())


def test_only_the_horizontal_stack_has_dropout():
    """Dropout acts on the residual branch of ``ul``; ``u`` (no residual) has none."""
    u = block("u", CHANNELS, None, dropout=0.5).train()
    ul = block("ul", CHANNELS, None, dropout=0.5).train()
    x, s, _ = inputs(CHANNELS, None)
    with torch.no_grad():
        assert torch.equal(u(x, s), u(x, s))
        assert not torch.equal(ul(x, s), ul(x, s))
        assert torch.equal(ul.eval()(x, s), ul(x, s))


def test_a_gated_pixelcnn_model_has_no_blind_spot():
    """Every sub-pixel's log-probability moves with every pixel before it in raster order (the
    blind spot of a PixelCNN of masked convolutions would leave pixels above and to the right
    unseen). Two streams through 2 + 2 layers reach across a 5x5 image."""
    config = PixelCNNConfig(
        image_shape=(1, 5, 5),
        num_bits=3,
        likelihood="softmax",
        num_filters=4,
        num_resnet=2,
        num_stages=1,
        block="gated_pixelcnn",
    )
    torch.manual_seed(0)
    model = randomized(PixelCNNPP(config).to(DTYPE)).eval()
    _, h, w = config.image_shape
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 8, (1, 1, h, w), generator=gen)
    x = x0.repeat(h * w + 1, 1, 1, 1)
    for p in range(h * w):
        x[p + 1, 0, p // w, p % w] = (x0[0, 0, p // w, p % w] + 4) % 8
    with torch.no_grad():
        lpp = model(x).log_prob_pixels(x)[:, 0].flatten(1)  # [1 + HW, HW]
    moved = (lpp[1:] - lpp[:1]).abs() > 1e-9  # [perturbed pixel, output pixel]
    later = torch.ones(h * w, h * w, dtype=torch.bool).triu(1)
    missing = (later & ~moved).nonzero().tolist()
    assert not missing, f"(pixel, later output) pairs with no dependence: {missing[:10]}"
