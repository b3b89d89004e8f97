"""Numbers of the discretized logistic mixture: agreement with the paper's formulas, float32
accuracy on tiny bins, gradients, mixed precision and extreme parameters.

The reference below is written from the paper (Salimans et al. 2017, eq. 2 and the RGB
coupling of section 2.2, generalised to C channels) in float64, independently of the library.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import forward_ad

from pixelcnnpp.likelihoods import DiscretizedLogisticMixture

# The documented pair order: channel c's mean gets coeff(c, p) * x_p for each earlier p.
PAIRS = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]


# -- the reference, float64 ------------------------------------------------------------------


def reference_channel_log_masses(means, log_scales, coeffs, x, num_bits):
    """log P_k(x_c | x_<c) for every channel c and component k, ``[..., C, K, H, W]``.

    Per component and channel: the logistic CDF difference over the bin of half-width
    ``1 / (2**bits - 1)`` around the scaled value, the lowest level taking the left tail and
    the highest the right tail; the mean shifted by coeff(c, p) * x_p for earlier channels.
    """
    last = 2**num_bits - 1
    half = 1.0 / last
    xs = x.double() * 2.0 / last - 1.0
    num_channels, num_mixtures = means.shape[-4], means.shape[-3]
    channels = []
    for c in range(num_channels):
        components = []
        for k in range(num_mixtures):
            mu = means[..., c, k, :, :].double()
            for j, (later, earlier) in enumerate(PAIRS[: num_channels * (num_channels - 1) // 2]):
                if later == c:
                    mu = mu + coeffs[..., j, k, :, :].double() * xs[..., earlier, :, :]
            s = log_scales[..., c, k, :, :].double().exp()
            upper = torch.sigmoid((xs[..., c, :, :] + half - mu) / s)
            lower = torch.sigmoid((xs[..., c, :, :] - half - mu) / s)
            v = x[..., c, :, :]
            mass = torch.where(v == 0, upper, torch.where(v == last, 1.0 - lower, upper - lower))
            components.append(mass.log())
        channels.append(torch.stack(components, dim=-3))
    return torch.stack(channels, dim=-4)


def reference_log_prob_pixels(logits, means, log_scales, coeffs, x, num_bits):
    """log p(x_c | x_<c) per sub-pixel ``[..., C, H, W]`` from the mixture over whole pixels."""
    log_w = torch.log_softmax(logits.double(), dim=-3).unsqueeze(-4)  # [..., 1, K, H, W]
    upto = torch.logsumexp(
        log_w + reference_channel_log_masses(means, log_scales, coeffs, x, num_bits).cumsum(-4),
        dim=-3,
    )  # log p(x_0..x_c)
    return upto - torch.cat([torch.zeros_like(upto[..., :1, :, :]), upto[..., :-1, :, :]], -3)


def reference_from_params(params, num_channels, min_log_scale=-7.0):
    """The from_params layout rebuilt by index arithmetic: K logits, C*K means (channel-major),
    C*K log-scales (floored), C(C-1)/2*K raw coefficients (through tanh)."""
    c = num_channels
    k = params.shape[-3] // (1 + 2 * c + c * (c - 1) // 2)

    def block(offset, rows):  # rows x K channels starting at offset -> [..., rows, K, H, W]
        return torch.stack(
            [
                torch.stack([params[..., offset + r * k + i, :, :] for i in range(k)], dim=-3)
                for r in range(rows)
            ],
            dim=-4,
        )

    logits = params[..., :k, :, :]
    means = block(k, c)
    log_scales = block(k + c * k, c).clamp(min=min_log_scale)
    coeffs = torch.tanh(block(k + 2 * c * k, c * (c - 1) // 2)) if c > 1 else None
    return logits, means, log_scales, coeffs


def stable_log_mass(v, mean, log_scale, num_bits):
    """Exact float64 log-mass of level v of one logistic, without cancellation for bins far in
    either tail (differences of the upper tail on the right of the mean, of the CDF on its left).
    Good to ~1e-12 relative for masses above 1e-300."""
    last = 2**num_bits - 1
    xs = v.double() * 2.0 / last - 1.0
    s = log_scale.double().exp()
    a = (xs - 1.0 / last - mean) / s
    b = (xs + 1.0 / last - mean) / s
    right = a > 0
    interior = torch.where(
        right, torch.sigmoid(-a) - torch.sigmoid(-b), torch.sigmoid(b) - torch.sigmoid(a)
    )
    mass = torch.where(
        v == 0, torch.sigmoid(b), torch.where(v == last, torch.sigmoid(-a), interior)
    )
    return mass.log()


def paper_log_mass(v, mean, log_scale):
    """The 8-bit log-mass as the paper's code computes it: CDF differences, switching to the
    density at the bin centre times the bin width when the difference is below 1e-5."""
    xs = v.double() * 2.0 / 255.0 - 1.0
    centered = xs - mean
    inv_s = torch.exp(-log_scale)
    plus_in = inv_s * (centered + 1.0 / 255.0)
    min_in = inv_s * (centered - 1.0 / 255.0)
    mid_in = inv_s * centered
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    log_pdf_mid = mid_in - log_scale - 2.0 * torch.nn.functional.softplus(mid_in)
    interior = torch.where(
        cdf_delta > 1e-5,
        torch.log(cdf_delta.clamp(min=1e-12)),
        log_pdf_mid - math.log(127.5),
    )
    return torch.where(
        v == 0,
        plus_in - torch.nn.functional.softplus(plus_in),
        torch.where(v == 255, -torch.nn.functional.softplus(min_in), interior),
    )


# -- parameters --------------------------------------------------------------------------------


def random_params(batch, c, k, h, w, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    p = c * (c - 1) // 2
    logits = torch.randn(*batch, k, h, w, generator=g, dtype=dtype)
    means = torch.rand(*batch, c, k, h, w, generator=g, dtype=dtype) * 2.4 - 1.2
    log_scales = torch.rand(*batch, c, k, h, w, generator=g, dtype=dtype) * 2.5 - 2.0
    coeffs = torch.rand(*batch, p, k, h, w, generator=g, dtype=dtype) * 2.0 - 1.0 if p else None
    return logits, means, log_scales, coeffs


def pixels_with_edges(batch, c, h, w, num_bits, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2**num_bits, (*batch, c, h, w), generator=g)
    flat = x.view(-1)
    flat[0], flat[-1] = 0, 2**num_bits - 1  # both edge bins appear
    if flat.numel() > 3:
        flat[1], flat[-2] = 2**num_bits - 1, 0
    return x


# -- agreement with the paper's formulas --------------------------------------------------------

AGREEMENT = [  # (C, K, bits, H, W)
    (1, 1, 8, 3, 4),
    (1, 4, 5, 2, 3),
    (2, 3, 8, 3, 3),
    (3, 5, 8, 4, 3),
    (3, 2, 1, 2, 2),
    (4, 3, 6, 2, 3),
]


@pytest.mark.parametrize(("c", "k", "bits", "h", "w"), AGREEMENT)
def test_log_prob_matches_reference(c, k, bits, h, w):
    logits, means, log_scales, coeffs = random_params((2,), c, k, h, w, seed=c * 100 + k)
    x = pixels_with_edges((2,), c, h, w, bits, seed=1)
    d = DiscretizedLogisticMixture(logits, means, log_scales, coeffs, num_bits=bits)
    expected = reference_log_prob_pixels(logits, means, log_scales, coeffs, x, bits)
    torch.testing.assert_close(d.log_prob_pixels(x), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(d.log_prob(x), expected.sum((-3, -2, -1)), rtol=0, atol=1e-5)
    as_float32 = [None if t is None else t.float() for t in (logits, means, log_scales, coeffs)]
    d32 = DiscretizedLogisticMixture(*as_float32, num_bits=bits)
    torch.testing.assert_close(d32.log_prob_pixels(x).double(), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize(("c", "k", "bits", "h", "w"), AGREEMENT)
def test_from_params_layout_matches_reference(c, k, bits, h, w):
    g = torch.Generator().manual_seed(7)
    num_params = DiscretizedLogisticMixture.num_params(c, k)
    params = torch.randn(2, num_params, h, w, generator=g, dtype=torch.float64)
    params[:, k : k + c * k] *= 0.5  # means within about [-1.5, 1.5]
    params[:, k + c * k : k + 2 * c * k] = params[:, k + c * k : k + 2 * c * k] * 0.7 - 0.8
    x = pixels_with_edges((2,), c, h, w, bits, seed=2)
    d = DiscretizedLogisticMixture.from_params(params, num_channels=c, num_bits=bits)
    logits, means, log_scales, coeffs = reference_from_params(params, c)
    expected = reference_log_prob_pixels(logits, means, log_scales, coeffs, x, bits)
    torch.testing.assert_close(d.log_prob_pixels(x), expected, rtol=0, atol=1e-5)
    # and the parameters themselves, with log-scales far below the floor
    params[:, k + c * k : k + 2 * c * k : 2] -= 20.0
    d = DiscretizedLogisticMixture.from_params(params, num_channels=c, num_bits=bits)
    logits, means, log_scales, coeffs = reference_from_params(params, c)
    assert (log_scales == -7.0).any(), "the test must exercise the log-scale floor"
    assert torch.equal(d.logits, logits)
    assert torch.equal(d.means, means)
    assert torch.equal(d.log_scales, log_scales)
    assert d.coeffs is None if c == 1 else torch.equal(d.coeffs, coeffs)


def test_from_params_min_log_scale_is_the_floor():
    params = torch.full((1, DiscretizedLogisticMixture.num_params(1, 2), 1, 1), -20.0)
    d = DiscretizedLogisticMixture.from_params(params, num_channels=1, min_log_scale=-3.0)
    assert torch.equal(d.log_scales, torch.full_like(d.log_scales, -3.0))


def test_coupling_uses_scaled_earlier_channels():
    """A coefficient of 1 on (1, 0) moves channel 1's mean by exactly channel 0's scaled value."""
    logits = torch.zeros(1, 1, 1, dtype=torch.float64)
    means = torch.tensor([0.0, 0.0], dtype=torch.float64).reshape(2, 1, 1, 1)
    log_scales = torch.full((2, 1, 1, 1), -6.0, dtype=torch.float64)
    coupled = DiscretizedLogisticMixture(
        logits, means, log_scales, torch.ones(1, 1, 1, 1, dtype=torch.float64), 3
    )
    x = torch.tensor([[[5]], [[5]]])  # channel 1 sits where channel 0 is: mass ~1
    assert coupled.log_prob_pixels(x)[1].item() == pytest.approx(0.0, abs=1e-6)
    uncoupled = DiscretizedLogisticMixture(logits, means, log_scales, num_bits=3)
    assert uncoupled.log_prob_pixels(x)[1].item() < -10.0


# -- float32 accuracy on tiny bins ------------------------------------------------------------


def grid(num_means, num_log_scales, dtype):
    means = torch.linspace(-10.0, 10.0, num_means, dtype=torch.float32)
    log_scales = torch.linspace(-7.0, 5.0, num_log_scales, dtype=torch.float32)
    m, s = torch.meshgrid(means, log_scales, indexing="ij")
    return m.reshape(-1, 1, 1, 1, 1).to(dtype), s.reshape(-1, 1, 1, 1, 1).to(dtype)


def single_logistic(mean, log_scale, num_bits):
    logits = torch.zeros(mean.shape[:1] + (1, 1, 1), dtype=mean.dtype)
    return DiscretizedLogisticMixture(
        logits, mean, log_scale, num_bits=num_bits, validate_args=False
    )


def test_float32_within_1e3_nats_of_float64_for_every_8bit_bin():
    mean, log_scale = grid(201, 61, torch.float32)  # float32 values, so both see the same numbers
    x = torch.arange(256).reshape(256, 1, 1, 1, 1)
    lp32 = single_logistic(mean, log_scale, 8).log_prob(x)  # [256, M]
    lp64 = single_logistic(mean.double(), log_scale.double(), 8).log_prob(x)
    exact = stable_log_mass(
        x.reshape(256, 1), mean.reshape(1, -1).double(), log_scale.reshape(1, -1).double(), 8
    )
    relevant = exact >= math.log(1e-30)
    assert relevant.sum() > 100_000
    torch.testing.assert_close(lp64[relevant], exact[relevant], rtol=0, atol=1e-8)
    err = (lp32.double() - lp64)[relevant].abs()
    assert err.max() <= 1e-3, f"float32 off by {err.max():.2e} nats"
    assert torch.isfinite(lp32).all()


def test_float32_within_1e3_nats_of_float64_spot_checks_at_16_bits():
    mean, log_scale = grid(41, 25, torch.float32)
    g = torch.Generator().manual_seed(0)
    near = ((mean.reshape(1, -1) + 1) * 65535 / 2).round() + torch.arange(-300, 301).reshape(-1, 1)
    values = torch.cat(
        [torch.tensor([0, 1, 65534, 65535]), torch.randint(0, 65536, (1500,), generator=g)]
    )
    v = torch.cat([values.reshape(-1, 1).expand(-1, near.shape[1]), near.clamp(0, 65535).long()])
    x = v.reshape(*v.shape, 1, 1, 1)  # [V, M, 1, 1, 1]: a different value set per grid point
    lp32 = single_logistic(mean, log_scale, 16).log_prob(x)
    lp64 = single_logistic(mean.double(), log_scale.double(), 16).log_prob(x)
    exact = stable_log_mass(v, mean.reshape(1, -1).double(), log_scale.reshape(1, -1).double(), 16)
    relevant = exact >= math.log(1e-30)
    assert relevant.sum() > 10_000
    torch.testing.assert_close(lp64[relevant], exact[relevant], rtol=0, atol=1e-8)
    err = (lp32.double() - lp64)[relevant].abs()
    assert err.max() <= 1e-3, f"float32 off by {err.max():.2e} nats at 16 bits"


def test_density_approximation_of_the_paper_misses_by_more_than_001_nats():
    """Regression guard: the popular ports' switch to ``log_pdf_mid - log(127.5)`` below a mass
    of 1e-5 is off by more than 0.01 nats on this grid (even in float64); ours is not."""
    mean, log_scale = grid(201, 61, torch.float64)
    x = torch.arange(256).reshape(256, 1)
    m, s = mean.reshape(1, -1), log_scale.reshape(1, -1)
    exact = stable_log_mass(x, m, s, 8)
    relevant = exact >= math.log(1e-30)
    paper = paper_log_mass(x, m, s)
    assert (paper - exact)[relevant].abs().max() > 0.01
    ours = single_logistic(mean.float(), log_scale.float(), 8).log_prob(x.reshape(256, 1, 1, 1, 1))
    assert (ours.double() - exact)[relevant].abs().max() <= 1e-3


# -- mixed precision ---------------------------------------------------------------------------


@pytest.mark.parametrize("c", [1, 3])
def test_bf16_autocast_computes_in_float32(c):
    g = torch.Generator().manual_seed(3)
    params = torch.randn(
        2, DiscretizedLogisticMixture.num_params(c, 4), 5, 5, generator=g
    ).bfloat16()
    x = pixels_with_edges((2,), c, 5, 5, 8, seed=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = DiscretizedLogisticMixture.from_params(params, num_channels=c)
        lp = d.log_prob_pixels(x)
        total = d.log_prob(x)
    assert d.means.dtype == torch.float32
    assert lp.dtype == torch.float32
    assert total.dtype == torch.float32
    expected = DiscretizedLogisticMixture.from_params(params.float(), num_channels=c)
    torch.testing.assert_close(lp, expected.log_prob_pixels(x))
    torch.testing.assert_close(total, expected.log_prob(x))


# -- gradients ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("c", "bits"), [(1, 3), (1, 8), (3, 2), (3, 8)])
def test_gradcheck_log_prob(c, bits):
    logits, means, log_scales, coeffs = random_params((2,), c, 2, 2, 2, seed=11 + c)
    x = pixels_with_edges((2,), c, 2, 2, bits, seed=5)
    # values near the bins so that every branch has a non-trivial slope
    means = (x.double().unsqueeze(-3) * 2 / (2**bits - 1) - 1 + 0.3 * means).detach()
    inputs = [
        t.requires_grad_() for t in (logits, means, log_scales) + ((coeffs,) if c > 1 else ())
    ]

    def log_prob_pixels(*params):
        return DiscretizedLogisticMixture(*params, num_bits=bits).log_prob_pixels(x)

    assert torch.autograd.gradcheck(log_prob_pixels, inputs)


def test_gradcheck_from_params():
    g = torch.Generator().manual_seed(12)
    params = torch.randn(
        1, DiscretizedLogisticMixture.num_params(3, 2), 2, 2, generator=g, dtype=torch.float64
    )
    x = pixels_with_edges((1,), 3, 2, 2, 8, seed=6)
    params.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda p: DiscretizedLogisticMixture.from_params(p, num_channels=3).log_prob(x), [params]
    )


def extreme_params(c, k, dtype=torch.float64):
    """Parameters at and beyond every guard: huge and tiny scales (past the clip at -80/60 and
    the -7 floor of from_params), means far outside the pixel range, huge weights and
    coefficients; each component takes one row of the table at every position."""
    logits = torch.tensor([30.0, -30.0, 0.0, 3.0][:k], dtype=dtype).reshape(k, 1, 1)
    means = torch.tensor([1e6, -0.2, 0.3, 1e3][:k], dtype=dtype).reshape(1, k, 1, 1)
    log_scales = torch.tensor([-100.0, 70.0, -7.0, 4.0][:k], dtype=dtype).reshape(1, k, 1, 1)
    coeffs = torch.tensor([1e3, -1.0, 0.5, 0.0][:k], dtype=dtype).reshape(1, k, 1, 1)
    shape = (c, k, 2, 3)
    return (
        logits.expand(k, 2, 3).clone(),
        means.expand(shape).clone(),
        log_scales.expand(shape).clone(),
        coeffs.expand(c * (c - 1) // 2, k, 2, 3).clone() if c > 1 else None,
    )


def near_bins(x, means, bits):
    """Means moved next to the pixels' bins, so that every bin has non-trivial curvature."""
    return (x.double().unsqueeze(-3) * 2 / (2**bits - 1) - 1 + 0.3 * means).detach()


SECOND_ORDER = [(1, 3), (1, 8), (3, 2), (3, 8), (2, 16)]  # (C, bits)


@pytest.mark.parametrize(("c", "bits"), SECOND_ORDER)
def test_gradgradcheck_log_prob(c, bits):
    logits, means, log_scales, coeffs = random_params((2,), c, 2, 2, 2, seed=21 + c)
    x = pixels_with_edges((2,), c, 2, 2, bits, seed=7)
    means = near_bins(x, means, bits)
    params = [t.requires_grad_() for t in (logits, means, log_scales, coeffs) if t is not None]

    def log_prob_pixels(*params):
        return DiscretizedLogisticMixture(*params, num_bits=bits).log_prob_pixels(x)

    assert torch.autograd.gradgradcheck(log_prob_pixels, params)


@pytest.mark.parametrize("c", [1, 3])
def test_gradgradcheck_for_extreme_parameters(c):
    params = [t.requires_grad_() for t in extreme_params(c, 4) if t is not None]
    x = torch.tensor([0, 3, 128, 254, 255, 77]).reshape(1, 2, 3).expand(c, 2, 3)

    def log_prob_pixels(*params):
        return DiscretizedLogisticMixture(*params).log_prob_pixels(x)

    assert torch.autograd.gradgradcheck(log_prob_pixels, params)


def test_gradgradcheck_from_params():
    g = torch.Generator().manual_seed(13)
    params = torch.randn(
        1, DiscretizedLogisticMixture.num_params(3, 2), 2, 2, generator=g, dtype=torch.float64
    )
    x = pixels_with_edges((1,), 3, 2, 2, 8, seed=6)
    assert torch.autograd.gradgradcheck(
        lambda p: DiscretizedLogisticMixture.from_params(p, num_channels=3).log_prob(x),
        [params.requires_grad_()],
    )


def test_third_derivatives_check_too():
    """Derivatives of the slopes are plain differentiable ops, so the next order holds as well."""
    logits, means, log_scales, coeffs = random_params((), 2, 2, 1, 2, seed=4)
    x = torch.tensor([[[0, 5]], [[7, 3]]])
    means = near_bins(x, means, 3)
    params = [t.requires_grad_() for t in (logits, means, log_scales, coeffs)]

    def gradients(*params):
        lp = DiscretizedLogisticMixture(*params, num_bits=3).log_prob(x)
        return torch.autograd.grad(lp, params, create_graph=True)

    assert torch.autograd.gradgradcheck(gradients, params)


def flat_log_prob(c, k, bits, x, shapes):
    """log p(x) as a function of one flat float64 vector holding every parameter."""

    def f(flat):
        parts, start = [], 0
        for shape in shapes:
            size = math.prod(shape)
            parts.append(flat[start : start + size].reshape(shape))
            start += size
        return parts

    return f


@pytest.mark.parametrize(("c", "bits"), [(1, 8), (3, 8), (2, 4)])
def test_hessian_matches_the_reference_and_finite_differences(c, bits):
    """The Hessian over all parameters of one pixel against autograd's Hessian of the
    independent CDF-difference reference, and against central differences of log p itself."""
    k = 2
    logits, means, log_scales, coeffs = random_params((), c, k, 1, 1, seed=30 + c)
    x = torch.tensor([3, 200, 255][:c]).reshape(c, 1, 1) % 2**bits
    params = [logits, near_bins(x, means, bits), log_scales] + ([coeffs] if c > 1 else [])
    shapes = [t.shape for t in params]
    split = flat_log_prob(c, k, bits, x, shapes)
    flat = torch.cat([t.reshape(-1) for t in params])

    def ours(v):
        return DiscretizedLogisticMixture(*split(v), num_bits=bits).log_prob(x)

    def reference(v):
        ps = split(v) + ([None] if c == 1 else [])
        return reference_log_prob_pixels(*ps, x, bits).sum()

    hessian = torch.autograd.functional.hessian(ours, flat)
    torch.testing.assert_close(
        hessian, torch.autograd.functional.hessian(reference, flat), rtol=1e-8, atol=1e-10
    )
    step, n = 1e-4, flat.numel()
    eye = torch.eye(n, dtype=flat.dtype) * step
    numeric = torch.empty(n, n, dtype=flat.dtype)
    for i in range(n):
        for j in range(n):
            numeric[i, j] = (
                ours(flat + eye[i] + eye[j])
                - ours(flat + eye[i] - eye[j])
                - ours(flat - eye[i] + eye[j])
                + ours(flat - eye[i] - eye[j])
            ) / (4 * step * step)
    torch.testing.assert_close(hessian, numeric, rtol=1e-4, atol=1e-5)
    # the means' and log-scales' diagonal entries, which a constant-slope backward gets as 0
    assert hessian.diagonal()[k:].abs().min() > 1e-3


@pytest.mark.parametrize("c", [1, 3])
def test_float32_hessian_matches_float64(c):
    logits, means, log_scales, coeffs = random_params((), c, 3, 1, 2, seed=40 + c)
    x = torch.tensor([[0, 17], [200, 255], [3, 100]][:c]).reshape(c, 1, 2)
    params = [logits, near_bins(x, means, 8), log_scales] + ([coeffs] if c > 1 else [])
    split = flat_log_prob(c, 3, 8, x, [t.shape for t in params])
    flat = torch.cat([t.reshape(-1) for t in params])

    def hessian(v):
        f = lambda v: DiscretizedLogisticMixture(*split(v)).log_prob(x)  # noqa: E731
        return torch.autograd.functional.hessian(f, v)

    h64 = hessian(flat)
    h32 = hessian(flat.float())
    assert h32.dtype == torch.float32
    torch.testing.assert_close(h32.double(), h64, rtol=1e-3, atol=1e-3 * h64.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_second_derivatives_finite_for_extreme_parameters(dtype):
    c = 3
    params = [t.requires_grad_() for t in extreme_params(c, 4, dtype)]
    x = torch.tensor([0, 3, 128, 254, 255, 77]).reshape(1, 2, 3).expand(c, 2, 3)
    lp = DiscretizedLogisticMixture(*params).log_prob(x)
    grads = torch.autograd.grad(lp, params, create_graph=True)
    for grad in grads:
        second = torch.autograd.grad(grad.sum(), params, allow_unused=True, retain_graph=True)
        assert all(s is None or torch.isfinite(s).all() for s in second)


def test_hessian_vector_product_by_forward_mode_over_the_backward_pass():
    """Forward-mode tangents carried through a plain (``create_graph=False``) backward pass give
    the Hessian-vector product that reverse-over-reverse gives."""
    logits, means, log_scales, coeffs = random_params((), 3, 2, 1, 2, seed=8)
    x = torch.tensor([[[0, 40]], [[7, 255]], [[128, 3]]])
    params = [t.requires_grad_() for t in (logits, near_bins(x, means, 8), log_scales, coeffs)]
    vectors = [torch.randn_like(t) for t in params]

    def f(*ps):
        return DiscretizedLogisticMixture(*ps).log_prob(x)

    _, reverse = torch.autograd.functional.vhp(f, tuple(params), tuple(vectors))
    with forward_ad.dual_level():
        duals = [forward_ad.make_dual(p, v) for p, v in zip(params, vectors, strict=True)]
        grads = torch.autograd.grad(f(*duals), params)
        forward = [forward_ad.unpack_dual(g).tangent for g in grads]
    for r, fw in zip(reverse, forward, strict=True):
        torch.testing.assert_close(fw, r)


def test_log_prob_over_enumerated_batch_keeps_gradients_separate():
    """Gradients of broadcast parameters sum over the leading value dimensions."""
    logits, means, log_scales, coeffs = (
        t.requires_grad_() for t in random_params((), 2, 3, 1, 1, seed=2)
    )
    d = DiscretizedLogisticMixture(logits, means, log_scales, coeffs, num_bits=2)
    x = torch.cartesian_prod(torch.arange(4), torch.arange(4)).reshape(16, 2, 1, 1)
    total = torch.logsumexp(d.log_prob(x), 0)  # log of the total mass, = 0 for any parameters
    grads = torch.autograd.grad(total, (logits, means, log_scales, coeffs))
    for grad in grads:
        torch.testing.assert_close(grad, torch.zeros_like(grad), rtol=0, atol=1e-10)


# -- extreme parameters -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("validate_args", [True, False])
def test_log_prob_and_gradients_finite_for_extreme_finite_parameters(dtype, validate_args):
    c, k = 3, 4
    logits = torch.tensor([1e4, -1e4, 0.0, 3.0], dtype=dtype).reshape(k, 1, 1).expand(k, 2, 3)
    means = (
        torch.tensor([1e20, -1e20, 0.3, 1e3], dtype=dtype).reshape(1, k, 1, 1).expand(c, k, 2, 3)
    )
    log_scales = torch.tensor([-100.0, 100.0, -7.0, 0.0], dtype=dtype).reshape(1, k, 1, 1)
    coeffs = torch.tensor([1e6, -1.0, 0.5, 0.0], dtype=dtype).reshape(1, k, 1, 1).expand(3, k, 2, 3)
    params = [
        t.clone().requires_grad_() for t in (logits, means, log_scales.expand(c, k, 2, 3), coeffs)
    ]
    d = DiscretizedLogisticMixture(*params, validate_args=validate_args)
    x = torch.tensor([0, 3, 128, 254, 255, 77]).reshape(1, 2, 3).expand(c, 2, 3)
    lp = d.log_prob(x)
    assert torch.isfinite(lp)
    assert torch.isfinite(d.log_prob_pixels(x)).all()
    grads = torch.autograd.grad(lp, params)
    assert all(torch.isfinite(g).all() for g in grads)


def test_log_scales_far_below_any_bin_give_point_masses():
    logits = torch.zeros(1, 1, 1)
    means = torch.tensor([0.2]).reshape(1, 1, 1, 1)  # level 153 of 255 is at 0.2
    d = DiscretizedLogisticMixture(logits, means, torch.full((1, 1, 1, 1), -100.0))
    assert d.log_prob(torch.tensor([[[153]]])).item() == pytest.approx(0.0, abs=1e-6)
    assert d.log_prob(torch.tensor([[[152]]])).item() < -1e10


def test_float32_summaries_at_16_bits_match_float64():
    """The enumerated summaries sum 2**16 values; accumulated in float64 they keep float32
    accuracy (a float32 running sum drifts the mean by levels)."""
    logits, means, log_scales, _ = random_params((2,), 1, 2, 1, 3, seed=50)
    log_scales = log_scales + 1.0  # wide components: mass spread over many levels
    exact = DiscretizedLogisticMixture(logits, means, log_scales, num_bits=16).summary()
    ours = DiscretizedLogisticMixture(
        logits.float(), means.float(), log_scales.float(), num_bits=16
    ).summary()
    for name in ("mean", "variance", "entropy"):
        got, want = getattr(ours, name), getattr(exact, name)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), want, rtol=2e-5, atol=1e-5, msg=name)
