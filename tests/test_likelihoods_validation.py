"""Bad input gets a ValueError that names the argument, what was expected and what came."""

from __future__ import annotations

import math

import pytest
import torch

from pixelcnnpp.likelihoods import (
    DiscretizedLogisticMixture,
    PixelSoftmax,
    get_likelihood,
    list_likelihoods,
)

C, K, H, W = 3, 2, 4, 5


def mixture_params(batch=(2,), c=C, k=K, h=H, w=W, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return {
        "logits": torch.randn(*batch, k, h, w, generator=g, dtype=dtype),
        "means": torch.randn(*batch, c, k, h, w, generator=g, dtype=dtype),
        "log_scales": torch.randn(*batch, c, k, h, w, generator=g, dtype=dtype),
        "coeffs": torch.randn(*batch, c * (c - 1) // 2, k, h, w, generator=g, dtype=dtype),
    }


def mixture(**changes):
    kwargs = mixture_params() | changes
    return DiscretizedLogisticMixture(**kwargs)


def with_value(name, index, value):
    params = mixture_params()
    params[name] = params[name].clone()
    params[name].view(-1)[index] = value
    return params


def softmax_logits(levels=8, c=C, batch=(2,)):
    return torch.randn(*batch, c, levels, H, W)


CONSTRUCTION_ERRORS = {
    # mixture parameters: shapes
    "logits-2d": (
        lambda: mixture(logits=torch.zeros(4, 5)),
        r"logits must have shape \[\*, K, H, W\], got \(4, 5\)",
    ),
    "means-K": (
        lambda: mixture(means=torch.zeros(2, C, K + 1, H, W)),
        r"means must have shape \[\*, C, K, H, W\] with K, H, W = \(2, 4, 5\) taken from logits .*got \(2, 3, 3, 4, 5\)",
    ),
    "means-H": (
        lambda: mixture(means=torch.zeros(2, C, K, H + 1, W)),
        r"means must have shape .*got \(2, 3, 2, 5, 5\)",
    ),
    "means-W": (
        lambda: mixture(means=torch.zeros(2, C, K, H, W - 1)),
        r"means must have shape .*got \(2, 3, 2, 4, 4\)",
    ),
    "means-3d": (
        lambda: mixture(means=torch.zeros(K, H, W)),
        r"means must have shape \[\*, C, K, H, W\].*got \(2, 4, 5\)",
    ),
    "log_scales-C": (
        lambda: mixture(log_scales=torch.zeros(2, C - 1, K, H, W)),
        r"log_scales must have shape \[\*, C, K, H, W\] = \[\*, 3, 2, 4, 5\] like means, got \(2, 2, 2, 4, 5\)",
    ),
    "log_scales-K": (
        lambda: mixture(log_scales=torch.zeros(2, C, K + 1, H, W)),
        r"log_scales must have shape .*got \(2, 3, 3, 4, 5\)",
    ),
    "coeffs-pairs": (
        lambda: mixture(coeffs=torch.zeros(2, 2, K, H, W)),
        r"coeffs must have shape \[\*, C\*\(C-1\)//2, K, H, W\] = \[\*, 3, 2, 4, 5\] for C=3, got \(2, 2, 2, 4, 5\)",
    ),
    "coeffs-H": (
        lambda: mixture(coeffs=torch.zeros(2, 3, K, H - 1, W)),
        r"coeffs must have shape .*got \(2, 3, 2, 3, 5\)",
    ),
    "batch-mismatch": (
        lambda: mixture(means=torch.zeros(3, C, K, H, W), log_scales=torch.zeros(3, C, K, H, W)),
        r"batch dimensions of logits, means, log_scales and coeffs do not broadcast: \(2,\), \(3,\), \(3,\), \(2,\)",
    ),
    "logits-int": (
        lambda: mixture(logits=torch.zeros(2, K, H, W, dtype=torch.long)),
        r"logits must be a floating-point tensor \[\*, K, H, W\], got torch.int64",
    ),
    "means-list": (
        lambda: mixture(means=[0.0]),
        r"means must be a floating-point tensor \[\*, C, K, H, W\], got list",
    ),
    # bit depths
    "num_bits-0": (lambda: mixture(num_bits=0), r"num_bits must be an integer in 1\.\.16, got 0"),
    "num_bits-17": (
        lambda: mixture(num_bits=17),
        r"num_bits must be an integer in 1\.\.16, got 17",
    ),
    "num_bits-2.5": (
        lambda: mixture(num_bits=2.5),
        r"num_bits must be an integer in 1\.\.16, got 2\.5",
    ),
    "num_bits-True": (
        lambda: mixture(num_bits=True),
        r"num_bits must be an integer in 1\.\.16, got True",
    ),
    # non-finite parameters (validation on by default)
    "logits-nan": (
        lambda: DiscretizedLogisticMixture(**with_value("logits", 3, math.nan)),
        r"Expected parameter logits .*Finite\(\).*found invalid values",
    ),
    "means-inf": (
        lambda: DiscretizedLogisticMixture(**with_value("means", 0, math.inf)),
        r"Expected parameter means .*Finite\(\).*found invalid values",
    ),
    "log_scales-ninf": (
        lambda: DiscretizedLogisticMixture(**with_value("log_scales", 7, -math.inf)),
        r"Expected parameter log_scales .*Finite\(\)",
    ),
    "coeffs-nan": (
        lambda: DiscretizedLogisticMixture(**with_value("coeffs", 1, math.nan)),
        r"Expected parameter coeffs .*Finite\(\)",
    ),
    # from_params
    "from_params-channels": (
        lambda: DiscretizedLogisticMixture.from_params(torch.zeros(2, 25, H, W), num_channels=3),
        r"params must have K \* 10 channels for num_channels=3 .*got 25 channels in shape \(2, 25, 4, 5\)",
    ),
    "from_params-zero-channels": (
        lambda: DiscretizedLogisticMixture.from_params(torch.zeros(2, 0, H, W), num_channels=1),
        r"params must have K \* 3 channels .*got 0 channels",
    ),
    "from_params-2d": (
        lambda: DiscretizedLogisticMixture.from_params(torch.zeros(10, 4), num_channels=3),
        r"params must be a tensor \[\*, K\*\(1 \+ 2C \+ C\(C-1\)/2\), H, W\], got \(10, 4\)",
    ),
    "from_params-num_channels": (
        lambda: DiscretizedLogisticMixture.from_params(torch.zeros(2, 10, H, W), num_channels=0),
        r"num_channels must be an integer >= 1, got 0",
    ),
    "from_params-num_bits": (
        lambda: DiscretizedLogisticMixture.from_params(
            torch.zeros(2, 10, H, W), num_channels=3, num_bits=17
        ),
        r"num_bits must be an integer in 1\.\.16, got 17",
    ),
    # softmax
    "softmax-levels-6": (
        lambda: PixelSoftmax(softmax_logits(6)),
        r"logits must have shape \[\*, C, 2\*\*bits, H, W\] .*got \(2, 3, 6, 4, 5\) \(6 levels\)",
    ),
    "softmax-levels-1": (
        lambda: PixelSoftmax(softmax_logits(1)),
        r"2\*\*bits levels for bits in 1\.\.16, got .*\(1 levels\)",
    ),
    "softmax-levels-2**17": (
        lambda: PixelSoftmax(torch.zeros(1, 2**17, 1, 1)),
        r"\(131072 levels\)",
    ),
    "softmax-3d": (
        lambda: PixelSoftmax(torch.zeros(8, H, W)),
        r"logits must be a floating-point tensor \[\*, C, 2\*\*bits, H, W\], got \(8, 4, 5\)",
    ),
    "softmax-int": (
        lambda: PixelSoftmax(torch.zeros(1, 8, H, W, dtype=torch.long)),
        r"logits must be a floating-point tensor",
    ),
    "softmax-coupling-shape": (
        lambda: PixelSoftmax(softmax_logits(), torch.zeros(2, 2, 8, H, W)),
        r"coupling must have shape \[\*, C\*\(C-1\)//2, 2\*\*bits, H, W\] = \[\*, 3, 8, 4, 5\], got \(2, 2, 8, 4, 5\)",
    ),
    "softmax-coupling-levels": (
        lambda: PixelSoftmax(softmax_logits(), torch.zeros(2, 3, 4, H, W)),
        r"coupling must have shape .*got \(2, 3, 4, 4, 5\)",
    ),
    "softmax-coupling-batch": (
        lambda: PixelSoftmax(softmax_logits(), torch.zeros(3, 3, 8, H, W)),
        r"batch dimensions of logits \(2,\) and coupling \(3,\) do not broadcast",
    ),
    "softmax-coupling-int": (
        lambda: PixelSoftmax(softmax_logits(), torch.zeros(2, 3, 8, H, W, dtype=torch.long)),
        r"coupling must be a floating-point tensor",
    ),
    "softmax-nan": (
        lambda: PixelSoftmax(softmax_logits().index_fill(0, torch.tensor([1]), math.nan)),
        r"Expected parameter logits .*found invalid values",
    ),
    # registry and heads
    "unknown-likelihood": (
        lambda: get_likelihood("gaussian", num_channels=3),
        r"unknown likelihood 'gaussian'; known likelihoods: 'dmol', .*'softmax'",
    ),
    "head-weight-norm-lazy": (
        lambda: get_likelihood("dmol", num_channels=3, weight_norm=True),
        r"weight_norm=True needs in_channels",
    ),
    "head-num_mixtures": (
        lambda: get_likelihood("dmol", num_channels=3, num_mixtures=0),
        r"num_mixtures must be an integer >= 1, got 0",
    ),
    "head-num_channels": (
        lambda: get_likelihood("softmax", num_channels=0),
        r"num_channels must be an integer >= 1, got 0",
    ),
    "head-num_bits": (
        lambda: get_likelihood("softmax", num_channels=1, num_bits=17),
        r"num_bits must be an integer in 1\.\.16, got 17",
    ),
    "head-in_channels": (
        lambda: get_likelihood("dmol", num_channels=1, in_channels=-2),
        r"in_channels must be a positive integer or None, got -2",
    ),
    "head-features-channels": (
        lambda: get_likelihood("dmol", num_channels=3, in_channels=8)(torch.zeros(2, 6, H, W)),
        r"features must have 8 channels \(\[B, F, H, W\]\), got \(2, 6, 4, 5\)",
    ),
    "head-features-3d": (
        lambda: get_likelihood("softmax", num_channels=1, in_channels=8)(torch.zeros(8, H, W)),
        r"features must be a tensor \[B, F, H, W\], got \(8, 4, 5\)",
    ),
}


@pytest.mark.parametrize("name", CONSTRUCTION_ERRORS)
def test_construction_errors(name):
    build, message = CONSTRUCTION_ERRORS[name]
    with pytest.raises(ValueError, match=message):
        build()


def test_unknown_likelihood_lists_every_known_name():
    with pytest.raises(ValueError) as info:
        get_likelihood("nope")
    for known in list_likelihoods():
        assert repr(known) in str(info.value)


# -- pixels given to log_prob ------------------------------------------------------------------

DISTRIBUTIONS = {
    "dmol": lambda: mixture(),
    "softmax": lambda: PixelSoftmax(softmax_logits(256)),
}
EVENT = f"\\[\\.\\.\\., 2, {C}, {H}, {W}\\]"
PIXEL_ERRORS = {
    "shape-C": (
        torch.zeros(2, C + 1, H, W, dtype=torch.long),
        rf"x must have shape {EVENT} \(event shape C, H, W = \(3, 4, 5\)\), got \(2, 4, 4, 5\)",
    ),
    "shape-H": (
        torch.zeros(2, C, H - 1, W, dtype=torch.long),
        r"x must have shape .*got \(2, 3, 3, 5\)",
    ),
    "shape-2d": (torch.zeros(H, W, dtype=torch.long), r"x must have shape .*got \(4, 5\)"),
    "batch": (
        torch.zeros(3, C, H, W, dtype=torch.long),
        rf"x of shape \(3, 3, 4, 5\) does not broadcast against the batch shape \(2,\); expected {EVENT}",
    ),
    "below-range": (
        torch.full((2, C, H, W), -1),
        r"x must hold pixels in \[0, 255\] for num_bits=8, got values in \[-1, -1\]",
    ),
    "above-range": (
        torch.full((2, C, H, W), 256),
        r"x must hold pixels in \[0, 255\] for num_bits=8, got values in \[256, 256\]",
    ),
    "non-integer": (
        torch.full((2, C, H, W), 3.0).index_fill(1, torch.tensor([2]), 7.5),
        r"x must hold integer pixels in \[0, 255\], found the non-integer value 7\.5$",
    ),
    "scaled": (
        torch.full((2, C, H, W), 0.25),
        r"non-integer value 0\.25 \(it looks scaled; pass the integer pixel values",
    ),
    "nan": (
        torch.full((2, C, H, W), math.nan),
        r"x must hold integer pixels in \[0, 255\], found NaN or inf",
    ),
    "inf": (torch.full((2, C, H, W), math.inf), r"found NaN or inf"),
    "bool": (
        torch.zeros(2, C, H, W, dtype=torch.bool),
        r"x must hold integer pixels in \[0, 255\], got dtype torch.bool",
    ),
    "list": ([[0]], r"x must be a torch.Tensor of integer pixels, got list"),
}


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
@pytest.mark.parametrize("method", ["log_prob", "log_prob_pixels"])
@pytest.mark.parametrize("name", PIXEL_ERRORS)
def test_pixel_errors(dist, method, name):
    d = DISTRIBUTIONS[dist]()
    x, message = PIXEL_ERRORS[name]
    with pytest.raises(ValueError, match=message):
        getattr(d, method)(x)


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_integer_valued_floats_and_other_integer_dtypes_are_accepted(dist):
    d = DISTRIBUTIONS[dist]()
    x = d.sample()
    expected = d.log_prob(x)
    for same in (x.double(), x.float(), x.to(torch.uint8), x.to(torch.int16)):
        torch.testing.assert_close(d.log_prob(same), expected)


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
@pytest.mark.parametrize("temperature", [0.0, -1.0, math.inf, math.nan])
def test_bad_temperature(dist, temperature):
    with pytest.raises(
        ValueError, match=rf"temperature must be a finite number > 0, got {temperature}"
    ):
        DISTRIBUTIONS[dist]().sample(temperature=temperature)


def test_without_validation_bad_parameters_pass_through():
    d = DiscretizedLogisticMixture(**with_value("means", 0, math.nan), validate_args=False)
    x = torch.zeros(2, C, H, W, dtype=torch.long)
    assert torch.isnan(d.log_prob(x)[0])
    assert torch.isfinite(d.log_prob(x)[1])


def test_finite_check_survives_sums_that_overflow():
    """Large finite parameters whose sum overflows are still valid."""
    params = mixture_params()
    params["means"] = torch.full_like(params["means"], 3e38)
    d = DiscretizedLogisticMixture(**params)
    assert torch.isfinite(d.log_prob(torch.zeros(2, C, H, W, dtype=torch.long))).all()


@pytest.mark.parametrize(
    ("channel", "block"), [(0, "logits"), (12, "means"), (45, "log_scales"), (99, "coeffs")]
)
def test_from_params_names_the_block_of_a_non_finite_entry(channel, block):
    params = torch.randn(2, DiscretizedLogisticMixture.num_params(3, 10), 3, 3)
    params[1, channel, 2, 0] = math.nan
    with pytest.raises(
        ValueError, match=rf"params .* at index \(1, {channel}, 2, 0\), in the {block} block"
    ):
        DiscretizedLogisticMixture.from_params(params, num_channels=3)
    DiscretizedLogisticMixture.from_params(params, num_channels=3, validate_args=False)
