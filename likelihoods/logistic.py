"""Log-mass of a discretized logistic bin, accurate when the mass is tiny.

A value ``v`` of ``n = 2**bits`` levels sits at ``x = 2 v / (n - 1) - 1`` with half-width
``h = 1 / (n - 1)``. With ``a = (x - h - mu) / s`` and ``b = (x + h - mu) / s``:

    log P(v) = log(sigmoid(b) - sigmoid(a))                       interior bins
             = logsigmoid(b) + logsigmoid(-a) + log(1 - exp(-(b - a)))
    log P(0)     = logsigmoid(b)                                  the whole left tail
    log P(n - 1) = logsigmoid(-a)                                 the whole right tail

``b - a = 2 h / s`` depends on the scale alone, so no difference of two nearly equal CDFs is
ever taken. The float32 error left comes from rounding the bin edges and ``mu`` themselves,
magnified by ``1 / s``: the result stays within 2e-4 nats of float64 (scales down to
``exp(-7)``, 8 bits) for bins of mass down to 1e-30 and beyond, where the paper's code switches
to a density approximation. The edge bins are handled by moving their outer bin edge to
infinity, so one formula serves all levels.

The forward and backward passes are written out (a custom autograd function): the forward
pass also computes the two slopes ``d log P / d mu`` and ``d log P / d log s`` from the
quantities it already has, and the backward pass only multiplies them by the incoming
gradient. The straightforward autograd graph keeps a dozen tensors of the full
``[*, C, K, H, W]`` size and evaluates as many transcendental functions again.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

# Guards that keep log_prob finite for any finite parameters. They change nothing a float can
# tell apart: a log-scale below -80 (or above 60) and a standardized bin edge beyond 1e15 only
# occur for masses below exp(-1e15) or flat distributions far wider than any pixel range.
MIN_LOG_SCALE = -80.0
MAX_LOG_SCALE = 60.0
MAX_STANDARDIZED = 1e15
# softplus(z) = z above this; exp(z) still fits in float32 and log1p(exp(-z)) is below float
# resolution, so softplus is exact to rounding (torch's default of 20 leaves an error of 2e-9).
_SOFTPLUS_THRESHOLD = 80.0


def _log_mass_and_slopes(mean, log_scales, lower, upper, interior, half_width, with_slopes):
    """``log P``, and with ``with_slopes`` its derivatives in ``mean`` and ``log_scales``.

    ``lower``/``upper`` are the bin edges (``-inf``/``+inf`` for the edge bins), ``interior``
    is 1.0 for interior bins and 0.0 for edge bins. Everything broadcasts to the output shape.
    With ``a = (lower - mu) / s``, ``-b = (mu - upper) / s`` and ``q = 1 - exp(-2h/s)``:
    ``log P = interior * log(q) - softplus(a) - softplus(-b)``.

    The ops work in place where they can and free what is no longer needed, so that at most six
    tensors of the output size are alive at once; every full-size pass counts, since the work
    is bound by memory traffic.
    """
    shape = torch.broadcast_shapes(mean.shape, log_scales.shape, lower.shape, upper.shape)
    mean = mean.expand(shape)  # so that the in-place ops below never need to grow a tensor
    # The log-scale guard costs three passes (clamp, mask, masked slope); one reduction tells
    # whether it can change anything. Compiled code fuses the passes and keeps the guard.
    guarded = torch.compiler.is_compiling()
    if not guarded:
        low, high = torch.aminmax(log_scales)
        guarded = not (low.item() >= MIN_LOG_SCALE and high.item() <= MAX_LOG_SCALE)
    if guarded:
        clamped = log_scales.clamp(MIN_LOG_SCALE, MAX_LOG_SCALE)
        in_range = clamped == log_scales if with_slopes else None
        inv_s = clamped.neg_().exp_()
    else:
        in_range = None
        inv_s = log_scales.neg().exp_()
    # The clamps keep a * sigmoid(a) at 0 (not inf * 0) for the edge bins' infinite edges.
    a = (lower - mean).mul_(inv_s).clamp_(-MAX_STANDARDIZED, MAX_STANDARDIZED)
    neg_b = (mean - upper).mul_(inv_s).clamp_(-MAX_STANDARDIZED, MAX_STANDARDIZED)
    q = inv_s.mul(-2.0 * half_width).expm1_().neg_()  # 1 - exp(-(b - a)), in (0, 1]
    out = torch.log(q) * interior  # the full shape: q has the log-scales', interior the values'
    out -= F.softplus(a, threshold=_SOFTPLUS_THRESHOLD)
    out -= F.softplus(neg_b, threshold=_SOFTPLUS_THRESHOLD)
    d_mean = d_log_scales = None
    if with_slopes:
        d_mean = torch.sigmoid(a)
        d_log_scales = a.mul_(d_mean)  # a * sigmoid(a)
        sig_neg_b = torch.sigmoid(neg_b)
        d_log_scales.addcmul_(sig_neg_b, neg_b)
        d_mean.sub_(sig_neg_b).mul_(inv_s)
        del sig_neg_b
        # d/d(log s) of log q with w = 2h/s: -w / expm1(w) = -w (1 - q) / q
        width_slope = q.reciprocal_().sub_(1.0).mul_(inv_s).mul_(2.0 * half_width)
        d_log_scales.addcmul_(width_slope, interior, value=-1.0)
        if in_range is not None:
            d_log_scales.mul_(in_range)
    return out, d_mean, d_log_scales


class _LogBinMass(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mean, log_scales, lower, upper, interior, half_width):
        out, d_mean, d_log_scales = _log_mass_and_slopes(
            mean, log_scales, lower, upper, interior, half_width, with_slopes=True
        )
        ctx.save_for_backward(d_mean, d_log_scales)
        ctx.input_shapes = mean.shape, log_scales.shape
        return out

    @staticmethod
    @once_differentiable  # the saved slopes are constants: no second derivatives from here
    def backward(ctx, grad):
        d_mean, d_log_scales = ctx.saved_tensors
        mean_shape, log_scales_shape = ctx.input_shapes
        grad_mean = grad_log_scales = None
        if ctx.needs_input_grad[0]:
            grad_mean = (grad * d_mean).sum_to_size(mean_shape)
        if ctx.needs_input_grad[1]:
            grad_log_scales = (grad * d_log_scales).sum_to_size(log_scales_shape)
        return grad_mean, grad_log_scales, None, None, None, None


def discretized_logistic_log_mass(
    mean: torch.Tensor,
    log_scales: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    interior: torch.Tensor,
    half_width: float,
) -> torch.Tensor:
    """Log-probability of the bin ``[lower, upper]`` under a logistic of the given mean and scale.

    Args:
        mean: logistic means in scaled units (broadcastable).
        log_scales: log of the logistic scales ``s`` (broadcastable).
        lower: lower bin edge, ``x - half_width``, or ``-inf`` for the lowest level (its bin
            is the whole left tail).
        upper: upper bin edge, ``x + half_width``, or ``+inf`` for the highest level.
        interior: 1.0 where both edges are finite, 0.0 at the two edge levels (same dtype).
        half_width: half the distance between two levels in scaled units, ``1 / (2**bits - 1)``.

    Returns:
        The log-mass, broadcast over all inputs. Differentiable in ``mean`` and ``log_scales``.
    """
    if torch.is_grad_enabled() and (mean.requires_grad or log_scales.requires_grad):
        return _LogBinMass.apply(mean, log_scales, lower, upper, interior, half_width)
    out, _, _ = _log_mass_and_slopes(
        mean, log_scales, lower, upper, interior, half_width, with_slopes=False
    )
    return out
