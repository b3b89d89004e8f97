"""End-to-end proof that a PixelCNN++ is a distribution: summed over every possible image,
its probability is 1.

A product of per-pixel conditionals sums to one only if each conditional sees nothing after
its pixel, so this checks the whole model (layers, blocks, head, channel coupling) at once.
The parameters are redrawn from N(0, 0.5) so that the conditionals depend strongly on the
earlier pixels; ``test_a_leaking_model_does_not_sum_to_one`` shows the check has teeth.

Parametrized over ``list_blocks()``: every registered block is held to it with no new test.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pixelcnnpp.autoregressive import PixelCNNConfig, PixelCNNPP, list_blocks
from pixelcnnpp.autoregressive import model as model_module
from pixelcnnpp.likelihoods import list_likelihoods

DTYPE = torch.float64
# every registered head, with a small setting where it has one (the rest at their defaults)
SMALL = {"dmol": {"num_mixtures": 2}}
LIKELIHOODS = [(name, SMALL.get(name, {})) for name in list_likelihoods()]
SHAPES = [
    # (C, H, W, bits): number of images
    pytest.param((1, 2, 3), 2, id="1ch-2bit-2x3"),  # 4**6 = 4096
    pytest.param((2, 2, 3), 1, id="2ch-1bit-2x3"),  # 2**12 = 4096
    pytest.param((2, 2, 2), 2, id="2ch-2bit-2x2"),  # 4**8 = 65536
]


def every_image(shape: tuple[int, int, int], num_bits: int) -> torch.Tensor:
    """All ``levels ** (C H W)`` images ``[N, C, H, W]``, sub-pixel k as digit k in base levels."""
    levels, n = 2**num_bits, shape[0] * shape[1] * shape[2]
    index = torch.arange(levels**n)
    digits = torch.stack([index // levels**k % levels for k in range(n)], dim=1)
    return digits.view(-1, *shape)


def total_log_probability(model: PixelCNNPP, labels_value: int | None, chunk: int = 16384):
    """``logsumexp`` of ``log_prob`` over every image (float64), batched."""
    x = every_image(model.config.image_shape, model.config.num_bits)
    parts = []
    with torch.no_grad():
        for xb in x.split(chunk):
            labels = None if labels_value is None else torch.full((len(xb),), labels_value)
            parts.append(model(xb, labels).log_prob(xb))
    log_probs = torch.cat(parts)
    assert log_probs.dtype == DTYPE and torch.isfinite(log_probs).all()
    return torch.logsumexp(log_probs, 0), log_probs


def build(shape, num_bits, likelihood, kwargs, num_classes=None, seed=0, block="gated_resnet"):
    config = PixelCNNConfig(
        image_shape=shape,
        num_bits=num_bits,
        likelihood=likelihood,
        likelihood_kwargs=kwargs,
        num_filters=4,
        num_resnet=1,
        num_stages=2,
        num_classes=num_classes,
        block=block,
    )
    torch.manual_seed(seed)
    model = PixelCNNPP(config).to(DTYPE).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=DTYPE) * 0.5)
    return model


@pytest.mark.parametrize("block", list_blocks())
@pytest.mark.parametrize("num_classes", [None, 3], ids=["uncond", "labels"])
@pytest.mark.parametrize(("likelihood", "kwargs"), LIKELIHOODS, ids=[n for n, _ in LIKELIHOODS])
@pytest.mark.parametrize(("shape", "num_bits"), SHAPES)
def test_model_sums_to_one_over_every_image(
    shape, num_bits, likelihood, kwargs, num_classes, block
):
    model = build(shape, num_bits, likelihood, kwargs, num_classes, block=block)
    total, log_probs = total_log_probability(model, None if num_classes is None else 2)
    assert abs(total.item()) < 1e-4, f"log of the total probability is {total.item():.3g}"
    # The model is far from uniform, so the sum is not one by accident: its log-probabilities
    # spread over 1000 times the tolerance on the total (0.14 nats is the least of the random
    # draws here, gated_pixelcnn with 2ch-1bit dmol; a uniform model has 0).
    assert log_probs.std() > 0.1


def test_labels_change_the_distribution_and_each_sums_to_one():
    model = build((1, 2, 3), 2, "softmax", {}, num_classes=3)
    totals, per_label = [], []
    for label in range(3):
        total, log_probs = total_log_probability(model, label)
        totals.append(total.item())
        per_label.append(log_probs)
    assert max(abs(t) for t in totals) < 1e-4, totals
    assert not torch.allclose(per_label[0], per_label[1], atol=1e-3)


class LeakyConvBlock(nn.Module):
    """A plain 3x3 convolution: every output sees the row below and the pixel to its right."""

    def __init__(self, channels, stream, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, skip=None, cond=None):
        return x + self.conv(x)


@pytest.mark.parametrize(("likelihood", "kwargs"), LIKELIHOODS, ids=[n for n, _ in LIKELIHOODS])
def test_a_leaking_model_does_not_sum_to_one(monkeypatch, registries, likelihood, kwargs):
    """With the build-time check switched off, a leaky block gives a total far from 1; so the
    tolerance above would catch a leak of this size."""
    from pixelcnnpp.autoregressive.blocks import BLOCKS

    BLOCKS.register("test_normalization_leaky", LeakyConvBlock)
    monkeypatch.setattr(model_module, "verify_block", lambda *args: None)
    model = build((2, 2, 3), 1, likelihood, kwargs, block="test_normalization_leaky")
    total, _ = total_log_probability(model, None)
    assert abs(total.item()) > 1e-3
