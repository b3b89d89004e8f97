"""Log-mass of a discretized logistic bin, accurate when the mass is tiny.

A value ``v`` of ``n = 2**bits`` levels sits at ``x = 2 v / (n - 1) - 1`` with half-width
``h = 1 / (n - 1)``. With ``a = (x - h - mu) / s`` and ``b = (x + h - mu) / s``:

    log P(v) = log(sigmoid(b) - sigmoid(a))                       interior bins
             = logsigmoid(b) + logsigmoid(-a) + log(1 - exp(-(b - a)))
    log P(0)     = logsigmoid(b)                                  the whole left tail
    log P(n - 1) = logsigmoid(-a)                                 the whole right tail

``b - a = 2 h / s`` depends on the scale alone, so no difference of two nearly equal CDFs is
ever taken: the float32 result stays within ~1e-5 nats of float64 for bins of mass down to
1e-30 and beyond, where the paper's code switches to a density approximation.

The forward and backward passes are written out (a custom autograd function) so that only the
centred values and the log-scales are kept for the backward pass; the straightforward autograd
graph keeps a dozen tensors of the full ``[*, C, K, H, W]`` size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Guards that keep log_prob finite for any finite parameters. They change nothing a float can
# tell apart: a log-scale below -80 (or above 60) and a standardized bin edge beyond 1e15 only
# occur for masses below exp(-1e15) or flat distributions far wider than any pixel range.
MIN_LOG_SCALE = -80.0
MAX_LOG_SCALE = 60.0
MAX_STANDARDIZED = 1e15
_LOG2 = math.log(2.0)


def log1mexp(d: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(-d))`` for ``d > 0``, accurate for tiny and large ``d`` (Maechler 2012)."""
    return torch.where(d < _LOG2, torch.log(-torch.expm1(-d)), torch.log1p(-torch.exp(-d)))


def _edges(centered, log_scales, half_width):
    inv_s = torch.exp(-log_scales.clamp(MIN_LOG_SCALE, MAX_LOG_SCALE))
    a = ((centered - half_width) * inv_s).clamp(-MAX_STANDARDIZED, MAX_STANDARDIZED)
    b = ((centered + half_width) * inv_s).clamp(-MAX_STANDARDIZED, MAX_STANDARDIZED)
    return inv_s, a, b


class _LogBinMass(torch.autograd.Function):
    @staticmethod
    def forward(ctx, centered, log_scales, is_low, is_high, half_width):
        inv_s, a, b = _edges(centered, log_scales, half_width)
        edge = is_low | is_high
        out = torch.where(is_high, 0.0, F.logsigmoid(b))
        out = out + torch.where(is_low, 0.0, F.logsigmoid(-a))
        out = out + torch.where(edge, 0.0, log1mexp((2.0 * half_width) * inv_s))
        ctx.save_for_backward(centered, log_scales, is_low, is_high)
        ctx.half_width = half_width
        return out

    @staticmethod
    def backward(ctx, grad):
        centered, log_scales, is_low, is_high = ctx.saved_tensors
        h = ctx.half_width
        inv_s, a, b = _edges(centered, log_scales, h)
        dlp_da = torch.where(is_low, 0.0, -torch.sigmoid(a))  # d logsigmoid(-a) / da
        dlp_db = torch.where(is_high, 0.0, torch.sigmoid(-b))  # d logsigmoid(b) / db
        grad_centered = grad_log_scales = None
        if ctx.needs_input_grad[0]:
            grad_centered = (grad * inv_s * (dlp_da + dlp_db)).sum_to_size(centered.shape)
        if ctx.needs_input_grad[1]:
            d = (2.0 * h) * inv_s
            width_term = torch.where(is_low | is_high, 0.0, d / torch.expm1(d))
            in_range = (log_scales >= MIN_LOG_SCALE) & (log_scales <= MAX_LOG_SCALE)
            g = -grad * (a * dlp_da + b * dlp_db + width_term)
            grad_log_scales = torch.where(in_range, g.sum_to_size(log_scales.shape), 0.0)
        return grad_centered, grad_log_scales, None, None, None


def discretized_logistic_log_mass(
    centered: torch.Tensor,
    log_scales: torch.Tensor,
    is_low: torch.Tensor,
    is_high: torch.Tensor,
    half_width: float,
) -> torch.Tensor:
    """Log-probability of the bin around each value under a logistic of the given scale.

    Args:
        centered: ``x - mu``, the scaled value minus the logistic mean (broadcastable).
        log_scales: log of the logistic scale ``s`` (broadcastable).
        is_low: True where the value is the lowest level (its bin is the whole left tail).
        is_high: True where the value is the highest level (its bin is the whole right tail).
        half_width: half the distance between two levels in scaled units, ``1 / (2**bits - 1)``.

    Returns:
        The log-mass, broadcast over all inputs.
    """
    return _LogBinMass.apply(centered, log_scales, is_low, is_high, half_width)
