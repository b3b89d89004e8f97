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

Derivatives of the slopes (Hessians, ``create_graph=True``, ``torch.func``) come from the same
slope formulas written in plain differentiable ops (``_slopes``), recomputed from the saved
inputs only when the backward pass is itself differentiated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd import forward_ad

# Guards that keep log_prob finite for any finite parameters. They change nothing a float can
# tell apart: a log-scale below -80 (or above 60) and a standardized bin edge beyond 1e15 only
# occur for masses below exp(-1e15) or flat distributions far wider than any pixel range.
MIN_LOG_SCALE = -80.0
MAX_LOG_SCALE = 60.0
MAX_STANDARDIZED = 1e15
# softplus(z) = z above this; exp(z) still fits in float32 and log1p(exp(-z)) is below float
# resolution, so softplus is exact to rounding (torch's default of 20 leaves an error of 2e-9).
_SOFTPLUS_THRESHOLD = 80.0
# w / expm1(w) = 1 - w/2 + sum_k B_2k w^2k / (2k)!: the coefficients of w^2, w^4, ..., w^12.
# Up to w = 0.25 the first term left out (w^14 / 74724249600) is below 1e-19.
_SERIES_LIMIT = 0.25
_WIDTH_SERIES = (1 / 12, -1 / 720, 1 / 30240, -1 / 1209600, 1 / 47900160, -691 / 1307674368000)


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
    # The log-scale guard costs three passes (clamp, mask, masked slope); on CPU one reduction
    # tells whether it can change anything. Reading that answer on a GPU would make the host
    # wait for the device, so there (and in compiled code, which fuses the passes) the guard
    # always runs.
    guarded = torch.compiler.is_compiling() or log_scales.device.type != "cpu"
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


def _width_slope(w: torch.Tensor) -> torch.Tensor:
    """``w / expm1(w)``, the width term of ``-d log q / d log s``, with derivatives of every order.

    Below ``_SERIES_LIMIT`` it is its Taylor series (Bernoulli numbers, truncated where the next
    term is below float64 resolution); above, ``w exp(-w) / (1 - exp(-w))``. Each branch sees
    its argument clamped to its own range, so the branch not taken is finite and its zero
    gradient stays zero: the plain formula's derivatives overflow for tiny ``w``
    (``1 / expm1(w)**2``) and give ``inf / inf`` for large ``w``.
    """
    small = w.clamp(max=_SERIES_LIMIT)
    square = small * small
    series = _WIDTH_SERIES[-1]
    for coefficient in reversed(_WIDTH_SERIES[:-1]):
        series = series * square + coefficient
    series = 1.0 - 0.5 * small + square * series
    large = w.clamp(min=_SERIES_LIMIT)
    return torch.where(w < _SERIES_LIMIT, series, large * torch.exp(-large) / -torch.expm1(-large))


def _standardized(edge: torch.Tensor, mean: torch.Tensor, inv_s: torch.Tensor) -> torch.Tensor:
    """``(edge - mean) / s`` clamped to ``+-MAX_STANDARDIZED``, as the fused pass computes it; an
    infinite edge is replaced before any arithmetic, so no gradient meets ``0 * inf``."""
    finite = torch.isfinite(edge)
    z = ((torch.where(finite, edge, 0.0) - mean) * inv_s).clamp(-MAX_STANDARDIZED, MAX_STANDARDIZED)
    return torch.where(finite, z, torch.copysign(torch.full_like(edge, MAX_STANDARDIZED), edge))


def _slopes(mean, log_scales, lower, upper, interior, half_width):
    """The slopes of ``_log_mass_and_slopes`` in plain differentiable ops.

    The same values (to rounding) as the fused pass, written so that autograd and forward-mode
    AD can differentiate them again: second and higher derivatives, and ``torch.func``.
    """
    clamped = log_scales.clamp(MIN_LOG_SCALE, MAX_LOG_SCALE)
    inv_s = torch.exp(-clamped)
    a = _standardized(lower, mean, inv_s)
    neg_b = -_standardized(upper, mean, inv_s)
    sig_a, sig_neg_b = torch.sigmoid(a), torch.sigmoid(neg_b)
    d_mean = (sig_a - sig_neg_b) * inv_s
    d_log_scales = (
        a * sig_a + neg_b * sig_neg_b - interior * _width_slope(inv_s * (2.0 * half_width))
    )
    return d_mean, torch.where(clamped == log_scales, d_log_scales, 0.0)


def _has_tangent(*tensors: torch.Tensor) -> bool:
    """Whether any tensor carries a forward-mode (``torch.autograd.forward_ad``) tangent."""
    if torch.compiler.is_compiling():
        return False
    return any(forward_ad.unpack_dual(t).tangent is not None for t in tensors)


def differentiating(*tensors: torch.Tensor) -> bool:
    """Whether the backward pass is itself being differentiated: under ``create_graph=True`` or
    a ``torch.func`` transform (both run it with grad mode on), or with forward-mode tangents."""
    return torch.is_grad_enabled() or _has_tangent(*tensors)


def transformed(*tensors: torch.Tensor) -> bool:
    """Whether any tensor is wrapped by a ``torch.func`` transform (vmap, grad, jvp) or carries
    a forward-mode tangent: then the autograd functions need their ``jvp`` and ``vmap`` rules.
    Never while ``torch.compile`` traces (it does not trace these rules)."""
    if torch.compiler.is_compiling():
        return False
    wrapped = any(torch._C._functorch.is_functorch_wrapped_tensor(t) for t in tensors)
    return wrapped or _has_tangent(*tensors)


def batch_first(in_dims, args):
    """A ``vmap`` rule's arguments for a function that broadcasts its tensor arguments: each
    vmapped dimension moved to the front, then ones inserted after it up to the largest logical
    rank, so the batch lines up across arguments and the other dimensions broadcast as before."""
    rank = max(
        a.dim() - (d is not None) for a, d in zip(args, in_dims, strict=True) if torch.is_tensor(a)
    )
    out = []
    for arg, dim in zip(args, in_dims, strict=True):
        if dim is not None:
            arg = arg.movedim(dim, 0)
            arg = arg.reshape(arg.shape[:1] + (1,) * (rank + 1 - arg.dim()) + arg.shape[1:])
        out.append(arg)
    return out


class _LogBinMass(torch.autograd.Function):
    """``log P`` and its two slopes from one fused pass; the slopes are outputs that autograd
    does not differentiate, and the backward pass multiplies them by the incoming gradient.

    When the backward pass is itself differentiated it recomputes the slopes with ``_slopes``
    from the saved inputs instead, so second derivatives are exact and plain first-order
    training keeps the fused pass. This class is what ``torch.compile`` traces.
    """

    @staticmethod
    def forward(mean, log_scales, lower, upper, interior, half_width):
        return _log_mass_and_slopes(
            mean, log_scales, lower, upper, interior, half_width, with_slopes=True
        )

    @staticmethod
    def setup_context(ctx, inputs, output):
        mean, log_scales, lower, upper, interior, half_width = inputs
        _, d_mean, d_log_scales = output
        ctx.mark_non_differentiable(d_mean, d_log_scales)
        ctx.save_for_backward(mean, log_scales, lower, upper, interior, d_mean, d_log_scales)
        ctx.save_for_forward(mean, log_scales, lower, upper, interior)
        ctx.half_width = half_width

    @staticmethod
    def backward(ctx, grad, _grad_d_mean, _grad_d_log_scales):
        mean, log_scales, lower, upper, interior, d_mean, d_log_scales = ctx.saved_tensors
        if differentiating(grad, mean, log_scales):
            d_mean, d_log_scales = _slopes(mean, log_scales, lower, upper, interior, ctx.half_width)
        grad_mean = grad_log_scales = None
        if ctx.needs_input_grad[0]:
            grad_mean = (grad * d_mean).sum_to_size(mean.shape)
        if ctx.needs_input_grad[1]:
            grad_log_scales = (grad * d_log_scales).sum_to_size(log_scales.shape)
        return grad_mean, grad_log_scales, None, None, None, None


class _TransformedLogBinMass(_LogBinMass):
    """``_LogBinMass`` with the rules that forward-mode AD and ``torch.func`` need: ``jvp`` and
    ``vmap`` (a class of its own because ``torch.compile`` does not trace a custom ``jvp``)."""

    @staticmethod
    def jvp(ctx, mean_t, log_scales_t, *_):
        mean, log_scales, lower, upper, interior = ctx.saved_tensors
        d_mean, d_log_scales = _slopes(mean, log_scales, lower, upper, interior, ctx.half_width)
        out_t = torch.zeros_like(d_mean)
        if mean_t is not None:
            out_t = out_t + d_mean * mean_t
        if log_scales_t is not None:
            out_t = out_t + d_log_scales * log_scales_t
        return out_t, None, None

    @staticmethod
    def vmap(info, in_dims, *args):
        return _TransformedLogBinMass.apply(*batch_first(in_dims, args)), (0, 0, 0)


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
    tensors = mean, log_scales, lower, upper, interior
    if transformed(*tensors):
        return _TransformedLogBinMass.apply(*tensors, half_width)[0]
    if torch.is_grad_enabled() and (mean.requires_grad or log_scales.requires_grad):
        return _LogBinMass.apply(*tensors, half_width)[0]
    out, _, _ = _log_mass_and_slopes(
        mean, log_scales, lower, upper, interior, half_width, with_slopes=False
    )
    return out
