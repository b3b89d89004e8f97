"""The 2**bits-way softmax baseline over integer pixels.

Axis key: ``*`` batch, ``C`` channels, ``L = 2**bits`` levels, ``P = C*(C-1)//2`` channel
pairs, ``H, W`` image size.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from .discrete import DiscretePixelDistribution, PixelSummary, not_nan, summary_in
from .pixels import MAX_BITS, compute_dtype, exists, num_pairs, pair_slice, scale_pixels


class PixelSoftmax(DiscretePixelDistribution):
    r"""A categorical over the ``2**bits`` levels of every sub-pixel.

    Without ``coupling`` the sub-pixels are independent given ``logits``. With it, channel c's
    logits get ``sum_{p < c} coupling[(c, p)] * x_p`` (``x_p`` the earlier channel's value
    scaled to ``[-1, 1]``, pairs ordered ``(1,0), (2,0), (2,1), ...``), the softmax analogue of
    the mixture's channel coupling: ``log_prob`` scores channel c given the true earlier
    channels and ``sample`` draws them in order.

    Example::

        >>> import torch
        >>> from pixelcnnpp.likelihoods import PixelSoftmax
        >>> d = PixelSoftmax(torch.randn(2, 3, 256, 8, 8))   # [B, C, 2**bits, H, W]
        >>> x = d.sample()
        >>> d.log_prob(x).shape
        torch.Size([2])

    Args:
        logits: ``[*, C, 2**bits, H, W]`` unnormalized log-probabilities of each level.
        coupling: optional ``[*, C*(C-1)//2, 2**bits, H, W]`` slopes of channel c's logits in
            each earlier channel's scaled value.

    Summaries (``mean``, ``variance``, ``mode``, ``entropy()``) are exact in closed form
    without coupling; with coupling they follow ``DiscretePixelDistribution.summary`` (exact
    when the joint values of a pixel can be enumerated, else greedy channel by channel).
    """

    has_rsample = False
    _param_event_dims: ClassVar[dict[str, int]] = {"logits": 4, "coupling": 4}

    def __init__(
        self,
        logits: torch.Tensor,
        coupling: torch.Tensor | None = None,
        validate_args: bool | None = None,
    ):
        if (
            not isinstance(logits, torch.Tensor)
            or not logits.is_floating_point()
            or logits.dim() < 4
        ):
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(
                f"logits must be a floating-point tensor [*, C, 2**bits, H, W], got {got}"
            )
        c, levels, h, w = logits.shape[-4:]
        bits = round(math.log2(levels)) if levels > 0 else 0
        if c < 1 or 2**bits != levels or not 1 <= bits <= MAX_BITS:
            raise ValueError(
                f"logits must have shape [*, C, 2**bits, H, W] with C >= 1 and 2**bits levels for "
                f"bits in 1..{MAX_BITS}, got {tuple(logits.shape)} ({levels} levels)"
            )
        batch_shape = logits.shape[:-4]
        if coupling is not None:
            if not isinstance(coupling, torch.Tensor) or not coupling.is_floating_point():
                raise ValueError(
                    "coupling must be a floating-point tensor [*, C*(C-1)//2, 2**bits, H, W]"
                )
            if coupling.dim() < 4 or tuple(coupling.shape[-4:]) != (num_pairs(c), levels, h, w):
                raise ValueError(
                    f"coupling must have shape [*, C*(C-1)//2, 2**bits, H, W] = "
                    f"[*, {num_pairs(c)}, {levels}, {h}, {w}], got {tuple(coupling.shape)}"
                )
            try:
                batch_shape = torch.broadcast_shapes(batch_shape, coupling.shape[:-4])
            except RuntimeError:
                raise ValueError(
                    f"the batch dimensions of logits {tuple(logits.shape[:-4])} and coupling "
                    f"{tuple(coupling.shape[:-4])} do not broadcast"
                ) from None
            if c == 1:
                coupling = None
        dtype = compute_dtype(logits, *([coupling] if exists(coupling) else []))
        self.num_bits = bits
        self.logits = logits.to(dtype).expand(batch_shape + logits.shape[-4:])
        self.coupling = (
            coupling.to(dtype).expand(batch_shape + coupling.shape[-4:])
            if exists(coupling)
            else None
        )
        super().__init__(batch_shape, torch.Size((c, h, w)), validate_args=validate_args)

    @property
    def arg_constraints(self):
        names = ["logits"] + (["coupling"] if exists(self.coupling) else [])
        return dict.fromkeys(names, not_nan)

    def conditional_logits(self, value: torch.Tensor) -> torch.Tensor:
        """Logits of each channel given the earlier channels of ``value``:
        ``[..., C, H, W] -> [..., C, L, H, W]`` (the plain logits without coupling)."""
        if self.coupling is None:
            return self.logits
        xs = scale_pixels(value, self.num_bits, self.logits.dtype).unsqueeze(
            -3
        )  # [..., C, 1, H, W]
        shifts = [torch.zeros_like(self.logits[..., 0, :, :, :] * xs[..., 0, :, :, :])]
        for c in range(1, self.num_channels):
            coupling = self.coupling[..., pair_slice(c), :, :, :]  # [*, c, L, H, W]
            shifts.append((coupling * xs[..., :c, :, :, :]).sum(-4))
        return self.logits + torch.stack(shifts, dim=-4)

    def _log_prob_pixels(self, value: torch.Tensor) -> torch.Tensor:
        # The logit of the value minus the log-normaliser, as torch's Categorical computes it:
        # logsumexp sums accurately along any dimension, log_softmax along a non-last one loses
        # up to 1e-4 nats at 2**16 levels in float32.
        logits = self.conditional_logits(value)  # [..., C, L, H, W]
        lead = torch.broadcast_shapes(logits.shape[:-4], value.shape[:-3])
        index = value.long().expand(lead + value.shape[-3:]).unsqueeze(-3)
        picked = logits.expand(lead + logits.shape[-4:]).gather(-3, index).squeeze(-3)
        return picked - torch.logsumexp(logits, dim=-3)

    def sample(
        self,
        sample_shape: torch.Size | tuple[int, ...] = (),
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw integer images ``[*sample_shape, *batch, C, H, W]``, channel by channel.

        Gumbel-max over the levels of each sub-pixel; ``temperature`` divides the logits.
        """
        t = self._check_temperature(temperature)
        sample_shape = torch.Size(sample_shape)
        with torch.no_grad():
            lead = sample_shape + self.batch_shape
            logits = self.logits.expand(lead + self.logits.shape[-4:])
            gumbel = -torch.empty_like(logits).exponential_(generator=generator).log()
            if self.coupling is None:
                return torch.argmax(logits / t + gumbel, dim=-3)
            out = torch.zeros(lead + self.event_shape, dtype=torch.long, device=logits.device)
            xs = []
            for c in range(self.num_channels):
                channel_logits = logits[..., c, :, :, :]
                if c:
                    coupling = self.coupling[..., pair_slice(c), :, :, :]
                    channel_logits = channel_logits + (coupling * torch.stack(xs, -4)).sum(-4)
                out[..., c, :, :] = torch.argmax(
                    channel_logits / t + gumbel[..., c, :, :, :], dim=-3
                )
                xs.append(
                    scale_pixels(out[..., c, :, :], self.num_bits, logits.dtype).unsqueeze(-3)
                )
            return out

    def _summarize(self) -> PixelSummary:
        if self.coupling is None:
            mean, variance, mode, entropy = _level_summary(self.logits)
            return summary_in(self.logits.dtype, mean, variance, mode, entropy.sum((-3, -2, -1)))
        return super()._summarize()

    def _greedy_summary(self) -> PixelSummary:
        # Channel c's conditional given the earlier channels is a categorical over its logits,
        # so each step of the greedy summary is in closed form.
        mode = torch.zeros(self.batch_shape + self.event_shape, dtype=torch.long)
        mode = mode.to(self.logits.device)
        parts = []
        for c in range(self.num_channels):
            part = _level_summary(self.conditional_logits(mode)[..., c, :, :, :])
            mode[..., c, :, :] = part[2]
            parts.append(part)
        mean, variance, _, entropy = (torch.stack(p, dim=-3) for p in zip(*parts, strict=True))
        return summary_in(self.logits.dtype, mean, variance, mode, entropy.sum((-3, -2, -1)))

    def _values_cost(self) -> int:
        return self.num_levels


def _level_summary(logits: torch.Tensor):
    """Mean, variance, mode and entropy of the categorical over the levels (dim -3) of
    ``logits [..., L, H, W]``, each ``[..., H, W]``; the floats in float64, since the moments sum
    ``2**bits`` terms of up to ``(2**bits)**2`` and float32 sums of 2**16 terms drift (the mean
    by up to 3 levels at 16 bits)."""
    wide = logits.double()
    logp = wide - torch.logsumexp(wide, dim=-3, keepdim=True)
    p = logp.exp()
    levels = torch.arange(logits.shape[-3], device=p.device, dtype=p.dtype).reshape(-1, 1, 1)
    mean = (p * levels).sum(-3)
    variance = (p * (levels - mean.unsqueeze(-3)) ** 2).sum(-3)
    entropy = torch.where(p > 0, -p * logp, 0.0).sum(-3)
    return mean, variance, logits.argmax(-3), entropy
