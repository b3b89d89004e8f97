"""Generic tests of the pixel distributions, fed by a table of cases (pyro's style).

Every case is a small distribution whose whole support can be enumerated, so normalization,
moments, modes, entropies and sampled frequencies are checked against brute force.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from torch.distributions import constraints

from pixelcnnpp.likelihoods import (
    DiscretizedLogisticMixture,
    PixelSoftmax,
    bits_per_dim,
    discrete,
)

# -- cases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A family of distributions: ``build(batch_shape, dtype, seed, size)`` makes one with
    event shape ``(num_channels, *size)``; ``tempered(dist, t)`` is the distribution that
    ``dist.sample(temperature=t)`` draws from."""

    id: str
    num_channels: int
    num_bits: int
    build: Callable[..., torch.distributions.Distribution]
    tempered: Callable[..., torch.distributions.Distribution]


def dmol(c: int, bits: int, k: int, coupled: bool = True) -> Case:
    def build(batch_shape=(), dtype=torch.float64, seed=0, size=(1, 2)):
        g = torch.Generator().manual_seed(seed)
        h, w = size
        p = c * (c - 1) // 2
        logits = torch.randn(*batch_shape, k, h, w, generator=g, dtype=dtype)
        means = torch.rand(*batch_shape, c, k, h, w, generator=g, dtype=dtype) * 2.4 - 1.2
        log_scales = torch.rand(*batch_shape, c, k, h, w, generator=g, dtype=dtype) * 2.5 - 3.0
        coeffs = None
        if coupled and p:
            coeffs = torch.rand(*batch_shape, p, k, h, w, generator=g, dtype=dtype) * 2 - 1
        return DiscretizedLogisticMixture(logits, means, log_scales, coeffs, num_bits=bits)

    def tempered(d, t):
        return DiscretizedLogisticMixture(
            d.logits / t, d.means, d.log_scales + math.log(t), d.coeffs, num_bits=d.num_bits
        )

    name = f"dmol-C{c}-b{bits}-K{k}" + ("-coupled" if coupled and c > 1 else "")
    return Case(name, c, bits, build, tempered)


def softmax(c: int, bits: int, coupled: bool) -> Case:
    def build(batch_shape=(), dtype=torch.float64, seed=0, size=(1, 2)):
        g = torch.Generator().manual_seed(seed)
        h, w = size
        levels, p = 2**bits, c * (c - 1) // 2
        logits = 1.5 * torch.randn(*batch_shape, c, levels, h, w, generator=g, dtype=dtype)
        coupling = None
        if coupled and p:
            coupling = 2 * torch.randn(*batch_shape, p, levels, h, w, generator=g, dtype=dtype)
        return PixelSoftmax(logits, coupling)

    def tempered(d, t):  # the temperature divides each channel's conditional logits
        return PixelSoftmax(d.logits / t, None if d.coupling is None else d.coupling / t)

    name = f"softmax-C{c}-b{bits}" + ("-coupled" if coupled and c > 1 else "")
    return Case(name, c, bits, build, tempered)


CASES = [
    dmol(1, 3, 3),
    dmol(2, 3, 2),
    dmol(3, 2, 2),
    dmol(2, 2, 1, coupled=False),
    softmax(1, 3, coupled=False),
    softmax(2, 2, coupled=False),
    softmax(3, 2, coupled=True),
]
# The sampling tests of the issue: C = 1 at 3 bits and C = 3 at 2 bits with coupling, jointly.
SAMPLING_CASES = [dmol(1, 3, 3), dmol(3, 2, 3), softmax(1, 3, False), softmax(3, 2, True)]


def by_id(cases):
    return pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])


def all_images(num_channels: int, height: int, width: int, num_bits: int) -> torch.Tensor:
    """Every integer image ``[V, C, H, W]`` with ``V = 2**(bits * C * H * W)``."""
    levels = torch.arange(2**num_bits)
    n = num_channels * height * width
    return torch.cartesian_prod(*[levels] * n).reshape(-1, num_channels, height, width)


def image_pmf(d, num_channels, size, num_bits):
    """``(images [V, 1, ..., C, H, W], log p [V, *batch])`` over the whole support (one
    singleton axis per batch axis, so the images broadcast against the batch)."""
    x = all_images(num_channels, *size, num_bits)
    x = x.reshape(x.shape[:1] + (1,) * len(d.batch_shape) + x.shape[1:])
    return x, d.log_prob(x)


# -- normalization -----------------------------------------------------------------------------


@by_id(CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sums_to_one_over_the_whole_support(case, dtype):
    d = case.build((3,), dtype=dtype, seed=1)
    _, lp = image_pmf(d, case.num_channels, (1, 2), case.num_bits)
    assert lp.dtype == dtype
    torch.testing.assert_close(
        torch.logsumexp(lp.double(), 0), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-5
    )


def extreme_mixture(c: int, k: int, bits: int, size, dtype) -> DiscretizedLogisticMixture:
    """A batch of 8 mixtures: random, and each kind of extreme parameter of the issue."""
    h, w = size
    g = torch.Generator().manual_seed(c * 10 + k)
    p = c * (c - 1) // 2
    logits = torch.randn(8, k, h, w, generator=g, dtype=dtype)
    means = torch.rand(8, c, k, h, w, generator=g, dtype=dtype) * 2 - 1
    log_scales = torch.rand(8, c, k, h, w, generator=g, dtype=dtype) * 3 - 4
    coeffs = torch.rand(8, p, k, h, w, generator=g, dtype=dtype) * 2 - 1 if p else None
    log_scales[1] = -7.0  # the floor: nearly all mass in one bin
    means[2] = torch.where(means[2] > 0, 10.0, -10.0)
    means[3] = torch.where(means[3] > 0, 1000.0, -1000.0)
    logits[4] = torch.where(logits[4] > 0, 50.0, -50.0)
    log_scales[5], means[5] = -7.0, means[5] * 1.5  # narrow and partly off the range
    log_scales[6] = 5.0  # wider than the range: nearly all mass on the edge bins
    log_scales[7], means[7], logits[7] = -7.0, 10.0 * means[7].sign(), 50.0 * logits[7].sign()
    return DiscretizedLogisticMixture(logits, means, log_scales, coeffs, num_bits=bits)


NORMALIZATION_CONFIGS = [(1, b) for b in range(1, 9)] + [(2, 3), (2, 4), (3, 3), (3, 4)]


@pytest.mark.parametrize(("c", "bits"), NORMALIZATION_CONFIGS)
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mixture_sums_to_one_for_random_and_extreme_parameters(c, bits, k, dtype):
    size = (1, 2) if 2 ** (2 * bits * c) <= 2**16 else (1, 1)
    d = extreme_mixture(c, k, bits, size, dtype)
    _, lp = image_pmf(d, c, size, bits)
    assert torch.isfinite(lp).all()
    total = torch.logsumexp(lp.double(), 0)
    torch.testing.assert_close(total, torch.zeros_like(total), rtol=0, atol=1e-5)


@pytest.mark.parametrize("c", [1, 2, 3])
@pytest.mark.parametrize("coupled", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softmax_sums_to_one(c, coupled, dtype):
    bits = 3 if c < 3 else 2
    d = softmax(c, bits, coupled).build((2,), dtype=dtype, seed=c)
    d.logits[0, ..., 0, :, :] = 40.0  # and a nearly deterministic level
    _, lp = image_pmf(d, c, (1, 2), bits)
    total = torch.logsumexp(lp.double(), 0)
    torch.testing.assert_close(total, torch.zeros_like(total), rtol=0, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(
    c=st.integers(1, 3),
    k=st.integers(1, 4),
    bits=st.integers(1, 3),
    width=st.integers(1, 2),
    spread=st.floats(0.1, 30.0),
    seed=st.integers(0, 2**16),
    use_softmax=st.booleans(),
)
def test_sums_to_one_for_random_shapes(c, k, bits, width, spread, seed, use_softmax):
    if 2 ** (bits * c * width) > 2**12:
        width = 1
    g = torch.Generator().manual_seed(seed)
    if use_softmax:
        p = c * (c - 1) // 2
        logits = spread * torch.randn(2, c, 2**bits, 1, width, generator=g)
        coupling = spread * torch.randn(2, p, 2**bits, 1, width, generator=g) if p else None
        d = PixelSoftmax(logits, coupling)
    else:
        params = spread * torch.randn(
            2, DiscretizedLogisticMixture.num_params(c, k), 1, width, generator=g
        )
        d = DiscretizedLogisticMixture.from_params(params, num_channels=c, num_bits=bits)
    _, lp = image_pmf(d, c, (1, width), bits)
    total = torch.logsumexp(lp.double(), 0)
    torch.testing.assert_close(total, torch.zeros_like(total), rtol=0, atol=1e-5)


# -- log_prob and log_prob_pixels ------------------------------------------------------------


@by_id(CASES)
def test_log_prob_is_the_sum_of_the_sub_pixel_terms(case):
    d = case.build((2,), seed=3, size=(3, 2))
    x = d.sample((4,), generator=torch.Generator().manual_seed(0))
    terms = d.log_prob_pixels(x)
    assert terms.shape == x.shape
    assert (terms <= 1e-12).all()
    torch.testing.assert_close(d.log_prob(x), terms.sum((-3, -2, -1)))


@by_id(CASES)
def test_channel_terms_are_conditionals(case):
    """Summing exp(term of channel c) over the values of channel c gives 1 for any earlier
    channels; the term of channel c does not depend on later channels."""
    d = case.build((), seed=4, size=(1, 1))
    levels = 2**case.num_bits
    x = all_images(case.num_channels, 1, 1, case.num_bits)
    terms = d.log_prob_pixels(x)  # [V, C, 1, 1]
    for c in range(case.num_channels):
        strides = [levels ** (case.num_channels - 1 - i) for i in range(case.num_channels)]
        # group the images by their channels other than c: every group lists all values of c
        key = sum(
            (x[:, i, 0, 0] * strides[i] for i in range(case.num_channels) if i != c),
            torch.zeros(x.shape[0], dtype=torch.long),
        )
        order = torch.argsort(key * levels + x[:, c, 0, 0])
        grouped = terms[order, c, 0, 0].reshape(-1, levels)
        torch.testing.assert_close(
            torch.logsumexp(grouped, -1),
            torch.zeros(grouped.shape[0], dtype=grouped.dtype),
            rtol=0,
            atol=1e-8,
        )
        if c < case.num_channels - 1:  # later channels do not move channel c's term
            later = x.clone()
            later[:, c + 1 :] = (later[:, c + 1 :] + 1) % levels
            torch.testing.assert_close(d.log_prob_pixels(later)[:, : c + 1], terms[:, : c + 1])


# -- shapes, support, expand -------------------------------------------------------------------

SAMPLE_SHAPES = [(), (2,), (2, 3)]
BATCH_SHAPES = [(), (4,), (2, 3)]


@by_id(CASES)
@pytest.mark.parametrize("sample_shape", SAMPLE_SHAPES)
@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
def test_sample_shape_dtype_and_support(case, sample_shape, batch_shape):
    d = case.build(batch_shape, seed=5, size=(3, 2))
    assert d.batch_shape == batch_shape
    assert d.event_shape == (case.num_channels, 3, 2)
    x = d.sample(sample_shape)
    assert x.shape == sample_shape + batch_shape + (case.num_channels, 3, 2)
    assert x.dtype == torch.long
    assert d.support.check(x).all()
    assert d.log_prob(x).shape == sample_shape + batch_shape


@by_id(CASES)
def test_support(case):
    d = case.build((2,), size=(1, 1))
    assert isinstance(d.support, constraints.independent)
    assert d.support.event_dim == 3
    hi = 2**case.num_bits - 1
    x = torch.zeros(2, case.num_channels, 1, 1, dtype=torch.long)
    assert d.support.check(x).all()
    assert d.support.check(x + hi).all()
    assert not d.support.check(x + hi + 1).any()
    assert not d.support.check(x - 1).any()


@by_id(CASES)
@pytest.mark.parametrize(
    ("batch_shape", "expanded"), [((), (3,)), ((), (2, 3)), ((3,), (2, 3)), ((1, 3), (4, 3))]
)
def test_expand(case, batch_shape, expanded):
    d = case.build(batch_shape, seed=6, size=(2, 2))
    e = d.expand(expanded)
    assert type(e) is type(d)
    assert e.batch_shape == expanded
    assert e.event_shape == d.event_shape
    x = e.sample(generator=torch.Generator().manual_seed(1))
    assert x.shape == expanded + d.event_shape
    torch.testing.assert_close(e.log_prob(x), d.log_prob(x))
    torch.testing.assert_close(e.log_prob_pixels(x), d.log_prob_pixels(x))
    torch.testing.assert_close(e.mean, d.mean.expand(expanded + d.event_shape))
    torch.testing.assert_close(e.entropy(), d.entropy().expand(expanded))


@by_id(CASES)
@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
def test_summary_shapes(case, batch_shape):
    d = case.build(batch_shape, seed=7, size=(2, 3))
    event = batch_shape + (case.num_channels, 2, 3)
    assert d.mean.shape == event and d.mean.is_floating_point()
    assert d.variance.shape == event and (d.variance >= -1e-9).all()
    assert d.mode.shape == event and d.mode.dtype == torch.long
    assert d.support.check(d.mode).all()
    assert d.entropy().shape == batch_shape and (d.entropy() >= 0).all()


# -- summaries against brute force -------------------------------------------------------------


# The summaries enumerate values in chunks of about _CHUNK_ELEMENTS; a tiny one runs many chunks.
@pytest.fixture
def chunk_elements(request, monkeypatch):
    if request.param is not None:
        monkeypatch.setattr(discrete, "_CHUNK_ELEMENTS", request.param)


@by_id(CASES)
@pytest.mark.parametrize(
    "chunk_elements", [None, 50], ids=["one-chunk", "many-chunks"], indirect=True
)
def test_summaries_match_enumeration(case, chunk_elements):
    """Mean, variance (marginal per sub-pixel), mode (of whole images) and entropy against the
    enumerated distribution over whole 1x2 images."""
    d = case.build((2,), seed=8, size=(1, 2))
    x, lp = image_pmf(d, case.num_channels, (1, 2), case.num_bits)  # [V, 1, C, 1, 2], [V, 2]
    p = lp.exp()
    xv = x.double()
    mean = (p[..., None, None, None] * xv).sum(0)
    second = (p[..., None, None, None] * xv**2).sum(0)
    torch.testing.assert_close(d.mean, mean)
    torch.testing.assert_close(d.variance, second - mean**2)
    torch.testing.assert_close(d.entropy(), -(p * lp).sum(0))
    mode = x[lp.argmax(0), 0]  # [2, C, 1, 2]
    assert torch.equal(d.mode, mode)


@pytest.mark.parametrize(
    "chunk_elements", [None, 50], ids=["one-chunk", "many-chunks"], indirect=True
)
def test_greedy_summaries_for_rgb_at_8_bits(chunk_elements):
    """Beyond the exact joint enumeration (3 channels at 8 bits) the mode is the greedy
    channel-by-channel argmax and the entropy the sum of those conditionals' entropies."""
    g = torch.Generator().manual_seed(9)
    k, size = 3, (2, 2)
    logits = torch.randn(k, *size, generator=g, dtype=torch.float64)
    means = torch.rand(3, k, *size, generator=g, dtype=torch.float64) * 1.6 - 0.8
    log_scales = torch.rand(3, k, *size, generator=g, dtype=torch.float64) * 2 - 4
    coeffs = torch.rand(3, k, *size, generator=g, dtype=torch.float64) * 2 - 1
    d = DiscretizedLogisticMixture(logits, means, log_scales, coeffs)
    # the greedy path computed here from the per-component masses, independently
    levels = torch.arange(256).reshape(256, 1, 1)
    log_w = torch.log_softmax(logits, 0)  # [K, H, W]
    chosen = []
    log_prefix = log_w.expand(256, k, *size)  # log w_k + sum of earlier channels' log-masses
    mode, entropy, mean, variance = [], torch.zeros(size, dtype=torch.float64), [], []
    for c in range(3):
        mu = means[c]
        for j, (later, earlier) in enumerate([(1, 0), (2, 0), (2, 1)]):
            if later == c:
                mu = mu + coeffs[j] * (chosen[earlier] * 2 / 255 - 1)
        s = log_scales[c].exp()
        xs = (levels * 2 / 255 - 1).unsqueeze(1)  # [256, 1, 1, 1]
        upper = torch.sigmoid((xs + 1 / 255 - mu) / s)
        lower = torch.sigmoid((xs - 1 / 255 - mu) / s)
        v = levels.unsqueeze(1)
        mass = torch.where(v == 0, upper, torch.where(v == 255, 1 - lower, upper - lower))
        joint = torch.logsumexp(log_prefix + mass.clamp_min(1e-300).log(), 1)  # [256, H, W]
        cond = joint - torch.logsumexp(joint, 0)
        pc = cond.exp()
        best = cond.argmax(0)  # [H, W]
        mode.append(best)
        entropy += -(pc * cond).sum(0)
        m = (pc * levels).sum(0)
        mean.append(m)
        variance.append((pc * levels**2).sum(0) - m**2)
        chosen.append(best.double())
        # condition the prefix on the chosen value of this channel
        picked = (
            mass.clamp_min(1e-300).log().gather(0, best.reshape(1, 1, *size).expand(1, k, *size))
        )
        log_prefix = (log_prefix[:1] + picked).expand(256, k, *size)
    assert d.num_levels**d.num_channels > 2**16, "the greedy path is the one under test"
    assert torch.equal(d.mode, torch.stack(mode))
    torch.testing.assert_close(d.entropy(), entropy.sum())
    torch.testing.assert_close(d.mean, torch.stack(mean))
    # E[x^2] - E[x]^2 of values up to 255: a few ulps of 255^2 apart with a different order
    torch.testing.assert_close(d.variance, torch.stack(variance), rtol=1e-6, atol=1e-6)


def test_softmax_closed_form_summaries_without_coupling():
    d = softmax(2, 3, coupled=False).build((3,), seed=10, size=(2, 2))
    p = torch.softmax(d.logits, -3)
    levels = torch.arange(8, dtype=torch.float64).reshape(8, 1, 1)
    torch.testing.assert_close(d.mean, (p * levels).sum(-3))
    assert torch.equal(d.mode, p.argmax(-3))
    torch.testing.assert_close(d.entropy(), -(p * p.log()).sum((-4, -3, -2, -1)))


# -- sampling ----------------------------------------------------------------------------------

NUM_SAMPLES = 40_000


def chisquare_pvalue(samples: torch.Tensor, log_pmf: torch.Tensor, levels: int) -> float:
    """Pearson's test of ``samples [N, C]`` (joint values of one pixel) against ``log_pmf [V]``
    over the joint values in row-major order; cells expected below 5 times are pooled."""
    c = samples.shape[-1]
    codes = (samples * torch.tensor([levels ** (c - 1 - i) for i in range(c)])).sum(-1)
    observed = torch.bincount(codes, minlength=log_pmf.numel()).double().numpy()
    expected = log_pmf.double().exp().numpy() * samples.shape[0]
    small = expected < 5
    observed = np.append(observed[~small], observed[small].sum())
    expected = np.append(expected[~small], expected[small].sum())
    if expected[-1] == 0:
        observed, expected = observed[:-1], expected[:-1]
    expected *= observed.sum() / expected.sum()
    return stats.chisquare(observed, expected).pvalue


def one_pixel_pmf(d, case):
    x = all_images(case.num_channels, 1, 1, case.num_bits)
    return d.log_prob(x)  # [V], rows in the order chisquare_pvalue codes them


@by_id(SAMPLING_CASES)
@pytest.mark.parametrize("temperature", [1.0, 0.6, 1.7])
def test_sampled_frequencies_match_the_pmf(case, temperature):
    d = case.build((), seed=11, size=(1, 1))
    g = torch.Generator().manual_seed(12)
    x = d.sample((NUM_SAMPLES,), temperature=temperature, generator=g)
    target = d if temperature == 1.0 else case.tempered(d, temperature)
    log_pmf = one_pixel_pmf(target, case)
    samples = x.reshape(NUM_SAMPLES, case.num_channels)
    assert chisquare_pvalue(samples, log_pmf, 2**case.num_bits) > 1e-3
    if temperature != 1.0:  # and the test can tell the tempered distribution from the model
        assert chisquare_pvalue(samples, one_pixel_pmf(d, case), 2**case.num_bits) < 1e-3


@by_id(SAMPLING_CASES)
def test_same_seed_same_samples(case):
    d = case.build((2,), seed=13, size=(3, 3))
    a = d.sample((5,), generator=torch.Generator().manual_seed(14))
    b = d.sample((5,), generator=torch.Generator().manual_seed(14))
    c = d.sample((5,), generator=torch.Generator().manual_seed(15))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@by_id(SAMPLING_CASES)
def test_batch_members_are_sampled_from_their_own_parameters(case):
    d = case.build((2,), seed=16, size=(1, 1))
    x = d.sample((NUM_SAMPLES // 4,), generator=torch.Generator().manual_seed(17))
    images = all_images(case.num_channels, 1, 1, case.num_bits).unsqueeze(1)  # [V, 1, C, 1, 1]
    log_pmf = d.log_prob(images)  # [V, 2]
    for i in range(2):
        samples = x[:, i].reshape(-1, case.num_channels)
        assert chisquare_pvalue(samples, log_pmf[:, i], 2**case.num_bits) > 1e-3


# -- bits per dimension -------------------------------------------------------------------------


def test_bits_per_dim_value():
    lp = torch.tensor([-3072.0 * math.log(2), -1536.0 * math.log(2)])
    torch.testing.assert_close(bits_per_dim(lp, 3 * 32 * 32), torch.tensor([1.0, 0.5]))
    assert bits_per_dim(-math.log(2) * 784 * 2.5, 784) == pytest.approx(2.5)


def test_bits_per_dim_of_a_uniform_distribution_is_the_bit_depth():
    d = PixelSoftmax(torch.zeros(2, 3, 32, 4, 5))  # 5 bits, uniform
    x = d.sample()
    torch.testing.assert_close(bits_per_dim(d.log_prob(x), 3 * 4 * 5), torch.full((2,), 5.0))


@pytest.mark.parametrize("num_dims", [0, -3, 2.5, True, None])
def test_bits_per_dim_rejects_bad_num_dims(num_dims):
    with pytest.raises(ValueError, match=r"num_dims must be a positive integer.*got"):
        bits_per_dim(torch.zeros(2), num_dims)


# -- summaries are computed once --------------------------------------------------------------


@by_id(CASES)
def test_summaries_share_one_computation(case, monkeypatch):
    d = case.build((2,), seed=3)
    calls = []
    summarize = type(d)._summarize
    monkeypatch.setattr(type(d), "_summarize", lambda self: calls.append(1) or summarize(self))
    d.mean, d.variance, d.mode, d.entropy(), d.summary()
    assert len(calls) == 1


def test_a_summary_taken_without_grad_is_not_reused_with_grad():
    logits = torch.randn(2, 1, 1, requires_grad=True)
    means, log_scales = torch.tensor([-0.5, 0.5]).reshape(1, 2, 1, 1), torch.zeros(1, 2, 1, 1)
    d = DiscretizedLogisticMixture(logits, means, log_scales, num_bits=3)
    with torch.no_grad():
        assert d.entropy().grad_fn is None
    (grad,) = torch.autograd.grad(d.entropy().sum(), logits)
    assert grad.abs().sum() > 1e-3  # the entropy depends on the weights of distinct components


def test_the_log_scale_guard_reads_nothing_back_from_a_device():
    """Off the CPU the guard always clamps instead of asking the device whether it needs to
    (a read would make the host wait for the GPU every step). A meta tensor stands in for a
    GPU: it has no values, so any read of one raises."""
    from pixelcnnpp.likelihoods.logistic import discretized_logistic_log_mass

    meta = {"device": "meta", "dtype": torch.float32}
    mean = torch.zeros(4, 3, **meta, requires_grad=True)
    log_scales = torch.zeros(4, 3, **meta, requires_grad=True)
    edges = torch.zeros(4, 3, **meta)
    out = discretized_logistic_log_mass(mean, log_scales, edges, edges, edges, 0.5)
    out.sum().backward()
    assert out.shape == (4, 3) and log_scales.grad.shape == (4, 3)
