"""Likelihood heads: network features ``[B, F, H, W]`` -> a distribution over ``[B, C, H, W]``.

Heads are registered by name; ``get_likelihood("dmol", num_channels=3)`` builds one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.distributions import Distribution
from torch.nn.utils.parametrizations import weight_norm as apply_weight_norm

from pixelcnnpp.checks import check_int
from pixelcnnpp.registry import Registry

from .mixture import DiscretizedLogisticMixture
from .pixels import check_num_bits, num_levels, num_pairs
from .softmax import PixelSoftmax

LIKELIHOODS = Registry("likelihood", entry_point_group="pixelcnnpp.likelihoods")


def register_likelihood(name: str, factory=None, *, override: bool = False):
    """Register a head class (or factory) under ``name``; usable as a decorator.

    A model calls the factory as ``factory(num_channels=C, num_bits=b, **likelihood_kwargs)``,
    adding ``in_channels=F`` (feature channels) and ``weight_norm=...`` when the factory
    declares them (or takes ``**kwargs``). It returns an ``nn.Module`` with
    ``forward(features [B, F, H, W], x=None) -> Distribution`` over ``[B, C, H, W]`` (with
    ``log_prob`` and ``log_prob_pixels``) and ``sample(features, temperature=1.0,
    generator=None) -> integer pixels [B, C, H, W]``.
    """
    return LIKELIHOODS.register(name, factory, override=override)


def get_likelihood(name: str, **kwargs) -> nn.Module:
    """Build the head registered under ``name`` with ``kwargs``; unknown names list the known
    ones, keywords the head does not take name the ones it does."""
    return LIKELIHOODS.create(name, kwargs)


def list_likelihoods() -> list[str]:
    """Names of the registered likelihood heads, sorted."""
    return LIKELIHOODS.names()


class LikelihoodHead(nn.Module):
    """A 1x1 convolution from features to distribution parameters.

    Args:
        num_channels: image channels C.
        num_bits: bit depth of the pixels.
        num_outputs: channels of the parameter tensor.
        in_channels: feature channels F; ``None`` infers them at the first call (a lazy
            module: build the optimizer after a first forward).
        weight_norm: weight-normalize the convolution (as the paper's output layer).
    """

    def __init__(
        self,
        num_channels: int,
        num_bits: int,
        num_outputs: int,
        in_channels: int | None = None,
        weight_norm: bool = False,
    ):
        super().__init__()
        check_int("num_channels", num_channels)
        self.num_channels = num_channels
        self.num_bits = check_num_bits(num_bits)
        self.in_channels = in_channels
        if in_channels is None:
            if weight_norm:
                raise ValueError(
                    "weight_norm=True needs in_channels (the number of feature channels)"
                )
            self.proj = nn.LazyConv2d(num_outputs, kernel_size=1)
        else:
            check_int("in_channels", in_channels, expected="a positive integer or None")
            self.proj = nn.Conv2d(in_channels, num_outputs, kernel_size=1)
            if weight_norm:
                apply_weight_norm(self.proj)

    def params(self, features: torch.Tensor) -> torch.Tensor:
        """Distribution parameters ``[B, num_outputs, H, W]`` from features ``[B, F, H, W]``."""
        if not isinstance(features, torch.Tensor) or features.dim() != 4:
            got = (
                tuple(features.shape)
                if isinstance(features, torch.Tensor)
                else type(features).__name__
            )
            raise ValueError(f"features must be a tensor [B, F, H, W], got {got}")
        if self.in_channels is not None and features.shape[1] != self.in_channels:
            raise ValueError(
                f"features must have {self.in_channels} channels ([B, F, H, W]), got {tuple(features.shape)}"
            )
        if features.shape[-2:] == (1, 1) and self._pointwise():
            # One position: a matrix product. Sampling asks for one pixel at a time, and at that
            # size oneDNN's 1x1 convolution costs about 13x as much (128 against 10 us for the
            # demo's head, batch 16, on a 2-core CPU).
            params = F.linear(features.flatten(1), self.proj.weight.flatten(1), self.proj.bias)
            return params[:, :, None, None]
        return self.proj(features)

    def _pointwise(self) -> bool:
        proj = self.proj
        return (
            isinstance(proj, nn.Conv2d)
            and not isinstance(proj.weight, nn.parameter.UninitializedParameter)
            and proj.kernel_size == (1, 1)
            and proj.groups == 1
            and proj.padding == (0, 0)
        )

    def forward(self, features: torch.Tensor, x: torch.Tensor | None = None) -> Distribution:
        """Distribution over ``[B, C, H, W]`` pixels from features ``[B, F, H, W]``; ``x`` is
        accepted for heads that need the true earlier channels (the built-in heads couple
        channels inside the distribution)."""
        return self.distribution(self.params(features))

    def distribution(self, params: torch.Tensor, validate_args: bool | None = None) -> Distribution:
        """The distribution given the parameter tensor ``[B, num_outputs, H, W]``."""
        raise NotImplementedError

    def distribution_from_features(
        self,
        features: torch.Tensor,
        x: torch.Tensor | None = None,
        validate_args: bool | None = None,
    ) -> Distribution:
        """The distribution ``forward`` returns, with a choice of checks: training and sampling
        pass ``validate_args=False`` (the parameters come from the network). A subclass that
        overrides ``forward`` gets its own ``forward``, with whatever checks it makes."""
        if type(self).forward is not LikelihoodHead.forward:
            return self(features, x)
        return self.distribution(self.params(features), validate_args=validate_args)

    @torch.no_grad()
    def sample(
        self,
        features: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Integer pixels ``[B, C, H, W]`` drawn from the head's distribution (its parameters
        come from the network, so they are not validated again)."""
        dist = self.distribution_from_features(features, validate_args=False)
        return dist.sample(temperature=temperature, generator=generator)


@register_likelihood("dmol")
class DiscretizedLogisticMixtureHead(LikelihoodHead):
    """Head for :class:`DiscretizedLogisticMixture`: a 1x1 conv to the ``from_params`` layout.

    ``num_mixtures`` components K; log-scales floored at ``min_log_scale``.
    """

    def __init__(
        self,
        num_channels: int = 3,
        num_bits: int = 8,
        num_mixtures: int = 10,
        in_channels: int | None = None,
        min_log_scale: float = -7.0,
        weight_norm: bool = False,
    ):
        check_int("num_mixtures", num_mixtures)
        outputs = DiscretizedLogisticMixture.num_params(num_channels, num_mixtures)
        super().__init__(num_channels, num_bits, outputs, in_channels, weight_norm)
        self.num_mixtures = num_mixtures
        self.min_log_scale = min_log_scale

    def distribution(
        self, params: torch.Tensor, validate_args: bool | None = None
    ) -> DiscretizedLogisticMixture:
        return DiscretizedLogisticMixture.from_params(
            params, self.num_channels, self.num_bits, self.min_log_scale, validate_args
        )


@register_likelihood("softmax")
class PixelSoftmaxHead(LikelihoodHead):
    """Head for :class:`PixelSoftmax`: a 1x1 conv to ``C * 2**bits`` logits and, for C > 1,
    ``C*(C-1)//2 * 2**bits`` coupling slopes, so channel c's logits depend on the values of the
    earlier channels of the same pixel (true values when scoring, sampled ones when sampling)."""

    def __init__(
        self,
        num_channels: int = 3,
        num_bits: int = 8,
        in_channels: int | None = None,
        weight_norm: bool = False,
    ):
        levels = num_levels(num_bits)
        outputs = (num_channels + num_pairs(num_channels)) * levels
        super().__init__(num_channels, num_bits, outputs, in_channels, weight_norm)

    def distribution(self, params: torch.Tensor, validate_args: bool | None = None) -> PixelSoftmax:
        if params.dtype in (torch.float16, torch.bfloat16):
            params = params.float()
        levels = num_levels(self.num_bits)
        c, p = self.num_channels, num_pairs(self.num_channels)
        logits, coupling = params.split([c * levels, p * levels], dim=1)
        logits = rearrange(logits, "b (c l) h w -> b c l h w", c=c)
        coupling = rearrange(coupling, "b (p l) h w -> b p l h w", p=p) if p else None
        return PixelSoftmax(logits, coupling, validate_args=validate_args)
