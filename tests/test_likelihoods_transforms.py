"""``torch.func`` over both distributions: ``vmap``, ``grad``, ``jacrev``, ``jacfwd`` and
``hessian`` of ``log_prob`` as functions of the parameters, against the eager results (a loop
over the batch, ``torch.autograd``), with the default argument and sample checks on.
"""

from __future__ import annotations

import pytest
import torch
from torch import func

from pixelcnnpp.likelihoods import DiscretizedLogisticMixture, PixelSoftmax

B, C, H, W = 3, 3, 2, 2
DTYPE = torch.float64


def mixture_case(seed=0, bits=8, k=2):
    g = torch.Generator().manual_seed(seed)
    params = torch.randn(B, DiscretizedLogisticMixture.num_params(C, k), H, W, generator=g)
    x = torch.randint(0, 2**bits, (B, C, H, W), generator=g)
    return params.to(DTYPE), x, lambda p, v: mixture_log_prob(p, v, bits)


def mixture_log_prob(params, x, bits):
    """log p(x) of one image from its parameter tensor ``[D, H, W]``."""
    return DiscretizedLogisticMixture.from_params(params, C, num_bits=bits).log_prob(x)


def softmax_case(seed=0, bits=3):
    g = torch.Generator().manual_seed(seed)
    levels = 2**bits
    params = torch.randn(B, C + C * (C - 1) // 2, levels, H, W, generator=g)
    x = torch.randint(0, levels, (B, C, H, W), generator=g)
    return params.to(DTYPE), x, softmax_log_prob


def softmax_log_prob(params, x):
    """log p(x) of one image from its logits and coupling slopes ``[C + P, L, H, W]``."""
    return PixelSoftmax(params[:C], params[C:]).log_prob(x)


CASES = {"dmol": mixture_case, "dmol-16bit": lambda: mixture_case(1, 16), "softmax": softmax_case}


def eager_grad(f, params, x):
    p = params.clone().requires_grad_()
    (g,) = torch.autograd.grad(f(p, x), p)
    return g


@pytest.mark.parametrize("case", CASES)
def test_vmap_matches_a_loop(case):
    params, x, f = CASES[case]()
    expected = torch.stack([f(params[i], x[i]) for i in range(B)])
    torch.testing.assert_close(func.vmap(f)(params, x), expected)
    # batched parameters against one image, and one parameter set against batched images
    torch.testing.assert_close(
        func.vmap(f, in_dims=(0, None))(params, x[0]),
        torch.stack([f(params[i], x[0]) for i in range(B)]),
    )
    torch.testing.assert_close(
        func.vmap(f, in_dims=(None, 0))(params[0], x),
        torch.stack([f(params[0], x[i]) for i in range(B)]),
    )


@pytest.mark.parametrize("case", CASES)
def test_vmap_over_a_non_leading_dimension(case):
    params, x, f = CASES[case]()
    moved = params.movedim(0, -1).contiguous()
    expected = torch.stack([f(params[i], x[i]) for i in range(B)])
    torch.testing.assert_close(func.vmap(f, in_dims=(-1, 0))(moved, x), expected)


@pytest.mark.parametrize("case", CASES)
def test_grad_and_per_sample_grads_match_autograd(case):
    params, x, f = CASES[case]()
    expected = torch.stack([eager_grad(f, params[i], x[i]) for i in range(B)])
    torch.testing.assert_close(func.grad(f)(params[0], x[0]), expected[0])
    torch.testing.assert_close(func.vmap(func.grad(f))(params, x), expected)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("jacobian", [func.jacrev, func.jacfwd])
def test_jacobians_match_autograd(case, jacobian):
    params, x, f = CASES[case]()

    def per_image(p):  # [B, ...] parameters -> [B] log-probabilities
        return torch.stack([f(p[i], x[i]) for i in range(B)])

    expected = torch.autograd.functional.jacobian(per_image, params)
    torch.testing.assert_close(jacobian(per_image)(params), expected)


@pytest.mark.parametrize("case", CASES)
def test_hessian_matches_autograd(case):
    params, x, f = CASES[case]()
    p, v = params[0][..., :1, :1].contiguous(), x[0][..., :1, :1]  # one pixel keeps it small
    expected = torch.autograd.functional.hessian(lambda q: f(q, v), p)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(func.hessian(lambda q: f(q, v))(p), expected)
    torch.testing.assert_close(func.jacrev(func.jacrev(lambda q: f(q, v)))(p), expected)
    torch.testing.assert_close(func.jacrev(func.jacfwd(lambda q: f(q, v)))(p), expected)


@pytest.mark.parametrize("case", CASES)
def test_vmap_checks_every_batch_member(case):
    params, x, f = CASES[case]()
    bad_pixels = x.clone()
    bad_pixels[1, 0, 0, 0] = 2**20
    with pytest.raises(ValueError, match="must hold pixels in"):
        func.vmap(f)(params, bad_pixels)
    bad_params = params.clone()
    bad_params[2, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"must be finite|Real\(\)"):
        func.vmap(f)(bad_params, x)


@pytest.fixture
def validation_default():
    """Tracing a distribution built with ``validate_args=False`` sets torch's global default
    to False (torch 2.13, torch's own ``Normal`` too); put the default back afterwards."""
    default = torch.distributions.Distribution._validate_args
    yield
    torch.distributions.Distribution.set_default_validate_args(default)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["dmol", "softmax"])
@pytest.mark.parametrize("channels", [1, 3])
def test_compiled_log_prob_and_gradients_match_eager(case, channels, validation_default):
    """``torch.compile(fullgraph=True)`` traces both distributions, backward included."""
    g = torch.Generator().manual_seed(channels)
    x = torch.randint(0, 256, (2, channels, 3, 3), generator=g)
    if case == "dmol":
        params = torch.randn(
            2, DiscretizedLogisticMixture.num_params(channels, 3), 3, 3, generator=g
        )

        def f(p):
            d = DiscretizedLogisticMixture.from_params(p, channels, validate_args=False)
            return d.log_prob(x).sum()
    else:
        params = torch.randn(2, channels, 256, 3, 3, generator=g)

        def f(p):
            return PixelSoftmax(p, validate_args=False).log_prob(x).sum()

    params.requires_grad_()
    compiled = torch.compile(f, fullgraph=True)
    eager, compiled_value = f(params), compiled(params)
    torch.testing.assert_close(compiled_value, eager)
    (grad,) = torch.autograd.grad(eager, params)
    (compiled_grad,) = torch.autograd.grad(compiled_value, params)
    torch.testing.assert_close(compiled_grad, grad, rtol=1e-4, atol=1e-4)
