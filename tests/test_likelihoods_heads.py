"""Likelihood heads and their registry: every registered head keeps the head contract."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pixelcnnpp.likelihoods import (
    DiscretizedLogisticMixture,
    DiscretizedLogisticMixtureHead,
    PixelSoftmax,
    get_likelihood,
    list_likelihoods,
    register_likelihood,
)

HEAD_KWARGS = {"dmol": {"num_mixtures": 3}, "softmax": {}}
DISTRIBUTIONS = {"dmol": DiscretizedLogisticMixture, "softmax": PixelSoftmax}


def features(batch=2, channels=6, h=3, w=5, seed=0):
    return torch.randn(batch, channels, h, w, generator=torch.Generator().manual_seed(seed))


def test_builtin_heads_are_registered():
    assert {"dmol", "softmax"} <= set(list_likelihoods())
    assert list_likelihoods() == sorted(list_likelihoods())


@pytest.mark.parametrize("name", list_likelihoods())
@pytest.mark.parametrize(("c", "bits"), [(1, 8), (2, 5), (3, 4)])
def test_head_contract(name, c, bits):
    torch.manual_seed(0)
    head = get_likelihood(
        name, num_channels=c, num_bits=bits, in_channels=6, **HEAD_KWARGS.get(name, {})
    )
    assert isinstance(head, nn.Module)
    f = features()
    d = head(f)
    if name in DISTRIBUTIONS:
        assert type(d) is DISTRIBUTIONS[name]
    assert d.batch_shape == (2,)
    assert d.event_shape == (c, 3, 5)
    x = head.sample(f, generator=torch.Generator().manual_seed(1))
    assert x.shape == (2, c, 3, 5)
    assert not x.is_floating_point()
    assert x.min() >= 0 and x.max() <= 2**bits - 1
    lp = head(f, x).log_prob(x)
    assert lp.shape == (2,) and torch.isfinite(lp).all()
    (-lp.mean()).backward()
    grads = [p.grad for p in head.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_dmol_head_output_layout():
    head = get_likelihood("dmol", num_channels=3, num_bits=8, num_mixtures=4, in_channels=5)
    f = features(channels=5)
    params = head.proj(f)
    assert params.shape == (2, DiscretizedLogisticMixture.num_params(3, 4), 3, 5)
    expected = DiscretizedLogisticMixture.from_params(params, num_channels=3)
    x = expected.sample()
    torch.testing.assert_close(head(f).log_prob(x), expected.log_prob(x))


@pytest.mark.parametrize("c", [2, 3])
def test_softmax_head_couples_each_channel_to_earlier_channels_only(c):
    torch.manual_seed(3)
    head = get_likelihood("softmax", num_channels=c, num_bits=4, in_channels=6)
    f = features()
    d = head(f)
    x = d.sample(generator=torch.Generator().manual_seed(4))
    terms = d.log_prob_pixels(x)
    for ch in range(c):
        moved = x.clone()
        moved[:, ch, 1, 2] = (moved[:, ch, 1, 2] + 5) % 16
        after = d.log_prob_pixels(moved)
        # earlier channels never move; later channels move at that pixel only
        assert torch.equal(after[:, :ch], terms[:, :ch])
        changed = (after != terms).any(0)  # [C, H, W]
        for later in range(ch + 1, c):
            assert changed[later, 1, 2], f"channel {later} ignores channel {ch}"
        changed[:, 1, 2] = False
        assert not changed.any(), "a perturbed pixel moved another pixel's terms"


@pytest.mark.parametrize("name", list_likelihoods())
@pytest.mark.parametrize("kind", ["plain", "weight_norm", "lazy"])
def test_params_at_one_position_equal_the_convolution(name, kind):
    """At 1x1 (a sampled pixel) the head's 1x1 convolution runs as a matrix product."""
    torch.manual_seed(0)
    in_channels = None if kind == "lazy" else 6
    head = get_likelihood(
        name, num_channels=3, in_channels=in_channels, weight_norm=kind == "weight_norm",
        **HEAD_KWARGS.get(name, {}),
    ).double()  # fmt: skip
    for h, w in ((1, 1), (1, 1), (2, 3)):  # the lazy head is initialized by its first call
        f = features(4, 6, h, w).double()
        torch.testing.assert_close(head.params(f), head.proj(f), rtol=1e-12, atol=1e-12)


def test_a_head_whose_projection_is_not_pointwise_keeps_it():
    head = DiscretizedLogisticMixtureHead(num_channels=1, num_mixtures=2, in_channels=6)
    head.proj = nn.Conv2d(6, head.proj.out_channels, kernel_size=3, padding=1)
    f = features(2, 6, 1, 1)
    assert torch.equal(head.params(f), head.proj(f))


def test_lazy_head_infers_in_channels():
    head = get_likelihood("dmol", num_channels=3, num_bits=8, num_mixtures=2)
    d = head(features(channels=7))
    assert d.event_shape == (3, 3, 5)
    assert head.proj.weight.shape[1] == 7


def test_weight_norm_head():
    head = get_likelihood(
        "dmol", num_channels=1, num_bits=8, num_mixtures=2, in_channels=4, weight_norm=True
    )
    assert hasattr(head.proj, "parametrizations")
    d = head(features(channels=4))
    assert d.event_shape == (1, 3, 5)


def test_bf16_autocast_head_gives_float32_distribution():
    head = get_likelihood("dmol", num_channels=3, num_bits=8, num_mixtures=2, in_channels=6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = head(features())
        lp = d.log_prob(d.sample())
    assert d.means.dtype == torch.float32
    assert lp.dtype == torch.float32


def test_register_override_and_restore():
    class Other(DiscretizedLogisticMixtureHead):
        pass

    with pytest.raises(
        ValueError, match=r"likelihood 'dmol' is already registered .*override=True"
    ):
        register_likelihood("dmol", Other)
    try:
        register_likelihood("dmol", Other, override=True)
        assert type(get_likelihood("dmol", num_channels=1)) is Other
    finally:
        register_likelihood("dmol", DiscretizedLogisticMixtureHead, override=True)
    assert type(get_likelihood("dmol", num_channels=1)) is DiscretizedLogisticMixtureHead
