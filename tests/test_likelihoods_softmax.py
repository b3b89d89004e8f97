"""The 2**bits-way softmax: coupling semantics against an in-test reference, gradients, masks."""

from __future__ import annotations

import pytest
import torch

from pixelcnnpp.likelihoods import DiscretePixelDistribution, PixelSoftmax

PAIRS = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]  # the documented pair order


def reference_log_prob_pixels(logits, coupling, x, num_bits):
    """log p(x_c | x_<c): channel c's logits plus coupling(c, p) * (x_p scaled to [-1, 1])."""
    last = 2**num_bits - 1
    xs = x.double() * 2 / last - 1  # [..., C, H, W]
    terms = []
    for c in range(logits.shape[-4]):
        channel_logits = logits[..., c, :, :, :].double()  # [..., L, H, W]
        for j, (later, earlier) in enumerate(
            PAIRS[: coupling.shape[-4] if coupling is not None else 0]
        ):
            if later == c:
                channel_logits = channel_logits + coupling[..., j, :, :, :] * xs[
                    ..., earlier, :, :
                ].unsqueeze(-3)
        logp = torch.log_softmax(channel_logits, dim=-3)
        terms.append(logp.gather(-3, x[..., c, :, :].unsqueeze(-3)).squeeze(-3))
    return torch.stack(terms, dim=-3)


@pytest.mark.parametrize(("c", "bits"), [(1, 8), (2, 3), (3, 4), (4, 2)])
@pytest.mark.parametrize("coupled", [False, True])
def test_log_prob_matches_reference(c, bits, coupled):
    g = torch.Generator().manual_seed(c * 10 + bits)
    logits = torch.randn(2, c, 2**bits, 3, 2, generator=g, dtype=torch.float64)
    p = c * (c - 1) // 2
    coupling = (
        torch.randn(2, p, 2**bits, 3, 2, generator=g, dtype=torch.float64)
        if coupled and p
        else None
    )
    x = torch.randint(0, 2**bits, (2, c, 3, 2), generator=g)
    x[0, :, 0, 0], x[1, :, 0, 1] = 0, 2**bits - 1
    d = PixelSoftmax(logits, coupling)
    assert d.num_bits == bits
    expected = reference_log_prob_pixels(logits, coupling, x, bits)
    torch.testing.assert_close(d.log_prob_pixels(x), expected)
    torch.testing.assert_close(d.log_prob(x), expected.sum((-3, -2, -1)))


def test_coupling_changes_later_channels_only():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 8, 1, 1, generator=g)
    coupling = torch.randn(3, 8, 1, 1, generator=g)
    d = PixelSoftmax(logits, coupling)
    x = torch.tensor([2, 5, 7]).reshape(3, 1, 1)
    moved = x.clone()
    moved[0] = 6
    before, after = d.log_prob_pixels(x), d.log_prob_pixels(moved)
    assert before[1] != after[1] and before[2] != after[2]
    moved = x.clone()
    moved[2] = 1
    assert torch.equal(d.log_prob_pixels(moved)[:2], before[:2])


def test_single_channel_ignores_an_empty_coupling():
    logits = torch.randn(2, 1, 4, 2, 2)
    d = PixelSoftmax(logits, torch.zeros(2, 0, 4, 2, 2))
    assert d.coupling is None
    x = d.sample()
    torch.testing.assert_close(d.log_prob(x), PixelSoftmax(logits).log_prob(x))


@pytest.mark.parametrize("c", [1, 3])
def test_gradcheck(c):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, c, 4, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    inputs = [logits]
    if c > 1:
        inputs.append(
            torch.randn(2, 3, 4, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
        )
    x = torch.randint(0, 4, (2, c, 2, 2), generator=g)
    x[0, :, 0, 0], x[1, :, 1, 1] = 0, 3
    assert torch.autograd.gradcheck(lambda *p: PixelSoftmax(*p).log_prob_pixels(x), inputs)


def test_minus_inf_logits_mask_levels():
    logits = torch.zeros(1, 8, 1, 1)
    logits[0, 3:] = -torch.inf
    d = PixelSoftmax(logits)
    x = torch.arange(8).reshape(8, 1, 1, 1)
    lp = d.log_prob(x)
    torch.testing.assert_close(lp[:3], torch.full((3,), -torch.log(torch.tensor(3.0)).item()))
    assert torch.isneginf(lp[3:]).all()
    assert (d.sample((500,)) < 3).all()
    assert d.mode.item() < 3


def test_half_precision_logits_are_computed_in_float32():
    logits = torch.randn(2, 3, 16, 2, 2).bfloat16()
    d = PixelSoftmax(logits, torch.randn(2, 3, 16, 2, 2).bfloat16())
    x = d.sample()
    assert d.log_prob(x).dtype == torch.float32


# -- float32 accuracy at every bit depth --------------------------------------------------------


def categorical(logits):
    """torch's own categorical over the level axis of ``[*, C, L, H, W]`` logits."""
    return torch.distributions.Categorical(logits=logits.movedim(-3, -1))


@pytest.mark.parametrize("bits", range(1, 17))
def test_float32_log_probs_match_categorical_at_every_bit_depth(bits):
    g = torch.Generator().manual_seed(bits)
    levels = 2**bits
    logits = 4 * torch.randn(2, 2, levels, 2, 3, generator=g)
    x = torch.randint(0, levels, (3, 2, 2, 2, 3), generator=g)
    x[0, 0, 0, 0, :2] = torch.tensor([0, levels - 1])
    ours = PixelSoftmax(logits).log_prob_pixels(x)
    torch.testing.assert_close(ours, categorical(logits).log_prob(x), rtol=1e-6, atol=1e-6)
    exact = categorical(logits.double()).log_prob(x)
    torch.testing.assert_close(ours.double(), exact, rtol=0, atol=5e-6)  # log_softmax: 2.8e-4


@pytest.mark.parametrize("bits", [1, 4, 8, 12, 16])
def test_coupled_float32_log_probs_match_categorical(bits):
    g = torch.Generator().manual_seed(100 + bits)
    levels = 2**bits
    logits = 4 * torch.randn(2, 2, levels, 1, 3, generator=g)
    coupling = torch.randn(2, 1, levels, 1, 3, generator=g)
    x = torch.randint(0, levels, (2, 2, 1, 3), generator=g)
    d = PixelSoftmax(logits, coupling)
    conditional = d.conditional_logits(x)
    torch.testing.assert_close(
        d.log_prob_pixels(x), categorical(conditional).log_prob(x), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("bits", range(1, 17))
def test_float32_summaries_match_categorical_in_float64(bits):
    """Mean, variance and entropy within float32 rounding of the float64 values from
    Categorical's probabilities (a float32 sum over 2**16 levels drifts the mean by 3 levels)."""
    g = torch.Generator().manual_seed(bits)
    levels = 2**bits
    logits = 4 * torch.randn(2, 2, levels, 2, 3, generator=g)
    d = PixelSoftmax(logits)
    exact = categorical(logits.double())
    values = torch.arange(levels, dtype=torch.float64)
    mean = (exact.probs * values).sum(-1)
    variance = (exact.probs * (values - mean[..., None]) ** 2).sum(-1)
    entropy = exact.entropy().sum((-3, -2, -1))
    summary = d.summary()
    assert summary.mean.dtype == torch.float32
    torch.testing.assert_close(summary.mean.double(), mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(summary.variance.double(), variance, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(summary.entropy.double(), entropy, rtol=1e-6, atol=1e-6)
    assert torch.equal(summary.mode, exact.mode)


def test_coupled_summaries_at_16_bits_keep_float32_accuracy():
    """Enumerated (greedy) summaries sum 2**16 values per channel; float32 matches float64."""
    g = torch.Generator().manual_seed(5)
    levels = 2**16
    logits = 4 * torch.randn(2, levels, 1, 2, generator=g, dtype=torch.float64)
    coupling = torch.randn(1, levels, 1, 2, generator=g, dtype=torch.float64)
    exact = PixelSoftmax(logits, coupling).summary()
    ours = PixelSoftmax(logits.float(), coupling.float()).summary()
    for name in ("mean", "variance", "entropy"):
        got, want = getattr(ours, name), getattr(exact, name)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5, msg=name)
    assert torch.equal(ours.mode, exact.mode)


def test_coupled_greedy_summary_in_closed_form_matches_the_enumeration():
    """The closed-form greedy summary of a coupled softmax against the generic one, which
    enumerates the values of each channel under its conditional."""
    g = torch.Generator().manual_seed(6)
    logits = 2 * torch.randn(2, 3, 8, 2, 3, generator=g, dtype=torch.float64)
    coupling = 2 * torch.randn(2, 3, 8, 2, 3, generator=g, dtype=torch.float64)
    d = PixelSoftmax(logits, coupling)
    closed, enumerated = d._greedy_summary(), DiscretePixelDistribution._greedy_summary(d)
    assert torch.equal(closed.mode, enumerated.mode)
    for name in ("mean", "variance", "entropy"):
        torch.testing.assert_close(getattr(closed, name), getattr(enumerated, name), msg=name)
