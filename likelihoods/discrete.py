"""Base class of the distributions over integer images ``[*, C, H, W]``.

It holds what the mixture and the softmax share: the support, input validation, ``log_prob``
as the sum of the per-sub-pixel terms, ``expand``, and the summaries (mean, variance, mode,
entropy) obtained by enumerating the values of each pixel.

Summaries are exact whenever the joint values of one pixel can be enumerated (``2**bits``
values for one channel; ``2**(bits * C)`` for C coupled channels up to
``MAX_JOINT_ENUMERATION``). Beyond that they are taken greedily channel by channel: channel
``c`` is summarised under its conditional given the earlier channels set to their greedy
modes. Subclasses with closed forms override them.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
from torch.distributions import Distribution, constraints

from .pixels import num_levels, physical, validate_pixels

MAX_JOINT_ENUMERATION = 2**16
_CHUNK_ELEMENTS = 2**23


class _Finite(constraints.Constraint):
    """Every element is a finite number."""

    def check(self, value):
        # An inf or NaN anywhere makes the sum inf or NaN, so one reduction settles the common
        # case (a 0-dim True broadcasts over value); only a non-finite sum, which large finite
        # values can also give, needs the elementwise test (several passes and a slow all()).
        value = physical(value)
        if bool(torch.isfinite(value.sum())):
            return torch.ones((), dtype=torch.bool, device=value.device)
        return torch.isfinite(value)

    def __repr__(self):
        return "Finite()"


class _NotNan(constraints.Constraint):
    """No element is NaN (infinities allowed, e.g. -inf logits that mask a level)."""

    def check(self, value):
        # A NaN anywhere makes the sum NaN; so can +inf and -inf together, which then gets the
        # elementwise test.
        value = physical(value)
        if not bool(torch.isnan(value.sum())):
            return torch.ones((), dtype=torch.bool, device=value.device)
        return ~torch.isnan(value)

    def __repr__(self):
        return "Real()"


finite = _Finite()
not_nan = _NotNan()


class PixelSummary(NamedTuple):
    """Per-pixel summaries: mean and variance ``[*, C, H, W]`` (floats), mode ``[*, C, H, W]``
    (integers), entropy ``[*]`` (nats, summed over the event)."""

    mean: torch.Tensor
    variance: torch.Tensor
    mode: torch.Tensor
    entropy: torch.Tensor


def summary_in(dtype: torch.dtype, mean, variance, mode, entropy) -> PixelSummary:
    """A summary accumulated in float64, its floats returned in the parameters' ``dtype``."""
    return PixelSummary(mean.to(dtype), variance.to(dtype), mode, entropy.to(dtype))


class DiscretePixelDistribution(Distribution):
    """A distribution over integer images with event shape ``(C, H, W)``.

    Subclasses set ``num_bits`` and the parameters, and implement ``log_prob_pixels``:
    ``[..., C, H, W] -> [..., C, H, W]``, the log-probability of each sub-pixel given the
    earlier channels of its own pixel (pixels are independent given the parameters).
    """

    has_enumerate_support = False
    _param_event_dims: ClassVar[dict[str, int]] = {}

    num_bits: int

    @property
    def num_levels(self) -> int:
        """Number of values of a sub-pixel, ``2**num_bits``."""
        return num_levels(self.num_bits)

    @property
    def num_channels(self) -> int:
        return self.event_shape[0]

    @property
    def support(self):
        return constraints.independent(constraints.integer_interval(0, self.num_levels - 1), 3)

    # -- validation ----------------------------------------------------------------------

    def _validate_sample(self, value: torch.Tensor) -> None:
        validate_pixels(value, self.event_shape, self.batch_shape, self.num_bits)

    def _check_temperature(self, temperature: float) -> float:
        t = float(temperature)
        if not t > 0.0 or t == float("inf"):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        return t

    # -- expand ----------------------------------------------------------------------------

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        for name, event_dims in self._param_event_dims.items():
            value = getattr(self, name)
            if value is not None:
                value = value.expand(batch_shape + value.shape[value.dim() - event_dims :])
            setattr(new, name, value)
        new.num_bits = self.num_bits
        super(DiscretePixelDistribution, new).__init__(
            batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    # -- likelihood --------------------------------------------------------------------------
    # The public methods validate their input; the private ones compute and are what the
    # summaries and subclasses call.

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-probability in nats of whole images: ``[..., C, H, W] -> [...]``."""
        if self._validate_args:
            self._validate_sample(value)
        return self._pixel_log_prob(value).sum((-2, -1))

    def log_prob_pixels(self, value: torch.Tensor) -> torch.Tensor:
        """``log p(x_c | x_<c)`` of each sub-pixel, ``[..., C, H, W] -> [..., C, H, W]``; the
        terms of a pixel sum to its log-probability."""
        if self._validate_args:
            self._validate_sample(value)
        return self._log_prob_pixels(value)

    def _log_prob_pixels(self, value: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _pixel_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-probability of each whole pixel, ``[..., C, H, W] -> [..., H, W]``."""
        return self._log_prob_pixels(value).sum(-3)

    # -- summaries -----------------------------------------------------------------------------

    @property
    def mean(self) -> torch.Tensor:
        return self.summary().mean

    @property
    def variance(self) -> torch.Tensor:
        return self.summary().variance

    @property
    def mode(self) -> torch.Tensor:
        return self.summary().mode

    def entropy(self) -> torch.Tensor:
        return self.summary().entropy

    def summary(self) -> PixelSummary:
        """Mean, variance, mode and entropy in one pass over the values of each pixel.

        Exact when ``2**(bits * C) <= MAX_JOINT_ENUMERATION`` or ``C == 1``; otherwise greedy
        channel by channel (see the module docstring). Computed once per grad mode and kept:
        ``mean``, ``variance``, ``mode`` and ``entropy()`` share it, and a summary taken under
        ``torch.no_grad()`` is never handed to code that differentiates it.
        """
        cache = self.__dict__.setdefault("_summaries", {})
        grad_mode = torch.is_grad_enabled()
        if grad_mode not in cache:
            cache[grad_mode] = self._summarize()
        return cache[grad_mode]

    def _summarize(self) -> PixelSummary:
        if self.num_channels == 1 or self.num_levels**self.num_channels <= MAX_JOINT_ENUMERATION:
            return self._joint_summary()
        return self._greedy_summary()

    def _chunk(self, values_per_item: int) -> int:
        per_value = max(1, self.batch_shape.numel() * self.event_shape.numel() * values_per_item)
        return max(1, _CHUNK_ELEMENTS // per_value)

    def _param_device_dtype(self):
        t = next(getattr(self, n) for n in self._param_event_dims if getattr(self, n) is not None)
        return t.device, t.dtype

    def _joint_summary(self) -> PixelSummary:
        device, dtype = self._param_device_dtype()
        acc = torch.float64  # sums over up to 2**16 values keep float32 accuracy
        n, (c, h, w) = self.num_levels, self.event_shape
        batch = self.batch_shape
        levels = torch.arange(n, device=device)
        table = torch.cartesian_prod(*[levels] * c).reshape(-1, c)  # [V, C] joint values
        first = torch.zeros((*batch, c, h, w), device=device, dtype=acc)
        second = torch.zeros_like(first)
        entropy = torch.zeros((*batch, h, w), device=device, dtype=acc)
        best = torch.full((*batch, h, w), -torch.inf, device=device, dtype=acc)
        best_index = torch.zeros((*batch, h, w), device=device, dtype=torch.long)
        view = (-1,) + (1,) * len(batch) + (c, 1, 1)
        for start in range(0, table.shape[0], self._chunk(self._values_cost())):
            chunk = table[start : start + self._chunk(self._values_cost())]
            x = chunk.reshape(view).expand(chunk.shape[0], *batch, c, h, w)
            lp = self._pixel_log_prob(x).double()  # [v, *batch, H, W]
            p = lp.exp()
            values = chunk.to(acc).reshape(view)
            first = first + (p.unsqueeze(-3) * values).sum(0)
            second = second + (p.unsqueeze(-3) * values**2).sum(0)
            entropy = entropy + torch.where(p > 0, -p * lp, 0.0).sum(0)
            top, arg = lp.max(0)
            better = top > best
            best = torch.where(better, top, best)
            best_index = torch.where(better, arg + start, best_index)
        mode = table[best_index].movedim(-1, -3)  # [*batch, C, H, W]
        return summary_in(dtype, first, second - first**2, mode, entropy.sum((-2, -1)))

    def _greedy_summary(self) -> PixelSummary:
        device, dtype = self._param_device_dtype()
        acc = torch.float64  # sums over up to 2**16 values keep float32 accuracy
        n, (c, h, w) = self.num_levels, self.event_shape
        batch = self.batch_shape
        ref = torch.zeros((*batch, c, h, w), device=device, dtype=torch.long)
        mean = torch.zeros((*batch, c, h, w), device=device, dtype=acc)
        second = torch.zeros_like(mean)
        entropy = torch.zeros((*batch, h, w), device=device, dtype=acc)
        view = (-1,) + (1,) * len(batch) + (1, 1)
        for channel in range(c):
            best = torch.full((*batch, h, w), -torch.inf, device=device, dtype=acc)
            best_value = torch.zeros((*batch, h, w), device=device, dtype=torch.long)
            step = self._chunk(self._values_cost())
            for start in range(0, n, step):
                values = torch.arange(start, min(n, start + step), device=device)
                x = ref.expand(values.shape[0], *ref.shape).clone()
                x[..., channel, :, :] = values.reshape(view)
                lp = self._log_prob_pixels(x)[..., channel, :, :].double()
                p = lp.exp()
                vf = values.to(acc).reshape(view)
                mean[..., channel, :, :] += (p * vf).sum(0)
                second[..., channel, :, :] += (p * vf**2).sum(0)
                entropy = entropy + torch.where(p > 0, -p * lp, 0.0).sum(0)
                top, arg = lp.max(0)
                better = top > best
                best = torch.where(better, top, best)
                best_value = torch.where(better, arg + start, best_value)
            ref[..., channel, :, :] = best_value
        return summary_in(dtype, mean, second - mean**2, ref, entropy.sum((-2, -1)))

    def _values_cost(self) -> int:
        """Elements of work per enumerated value and sub-pixel (e.g. mixture components)."""
        return 1
