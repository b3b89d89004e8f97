"""The discretized logistic mixture of PixelCNN++ (Salimans et al. 2017), for any C, bits, K.

Axis key: ``*`` batch, ``C`` channels, ``K`` mixture components, ``P = C*(C-1)//2`` channel
pairs, ``H, W`` image size.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange

from pixelcnnpp.checks import check_int

from .discrete import DiscretePixelDistribution, finite
from .logistic import batch_first, differentiating, discretized_logistic_log_mass, transformed
from .pixels import (
    check_num_bits,
    compute_dtype,
    exists,
    num_pairs,
    pair_slice,
    physical,
    scale_pixels,
)


class _CoupledMeans(torch.autograd.Function):
    """``means + sum_{p < c} coeffs[(c, p)] * xs[p]`` for every channel c.

    Written out because slicing ``means`` and ``coeffs`` per channel under autograd makes each
    slice's backward allocate and fill a zero tensor of the full size, and ``einsum`` would be
    run in bfloat16 under CPU autocast. ``xs`` (scaled pixels) is a constant.
    """

    @staticmethod
    def forward(means, coeffs, xs):
        # means [*, C, K, H, W], coeffs [*, P, K, H, W], xs [..., C, 1, H, W] -> [..., C, K, H, W]
        out = torch.empty(
            torch.broadcast_shapes(means.shape, coeffs.shape[:-4] + means.shape[-4:], xs.shape),
            dtype=means.dtype,
            device=means.device,
        )
        out[..., 0, :, :, :].copy_(means[..., 0, :, :, :])
        for j, (c, p) in enumerate(_pairs(means.shape[-4])):
            term = coeffs[..., j, :, :, :], xs[..., p, :, :, :]
            if p == 0 and torch.compiler.is_compiling():  # dynamo traces no out= into a view
                out[..., c, :, :, :].copy_(means[..., c, :, :, :]).addcmul_(*term)
            elif p == 0:  # the first pair of channel c writes means + term straight into out
                torch.addcmul(means[..., c, :, :, :], *term, out=out[..., c, :, :, :])
            else:
                out[..., c, :, :, :].addcmul_(*term)
        return out

    @staticmethod
    def setup_context(ctx, inputs, output):
        means, coeffs, xs = inputs
        ctx.save_for_backward(xs)
        ctx.save_for_forward(xs)
        ctx.input_shapes = means.shape, coeffs.shape

    @staticmethod
    def backward(ctx, grad):
        (xs,) = ctx.saved_tensors
        means_shape, coeffs_shape = ctx.input_shapes
        grad_means = grad_coeffs = None
        if ctx.needs_input_grad[0]:
            grad_means = grad.sum_to_size(means_shape)
        if ctx.needs_input_grad[1]:
            pairs = _pairs(means_shape[-4])
            # differentiated again (create_graph=True, torch.func), or traced (no out= there)
            if differentiating(grad) or torch.compiler.is_compiling():
                grad_coeffs = torch.stack(
                    [grad[..., c, :, :, :] * xs[..., p, :, :, :] for c, p in pairs], dim=-4
                )
            else:
                grad_coeffs = grad.new_empty(grad.shape[:-4] + (len(pairs),) + grad.shape[-3:])
                for j, (c, p) in enumerate(pairs):
                    torch.mul(
                        grad[..., c, :, :, :], xs[..., p, :, :, :], out=grad_coeffs[..., j, :, :, :]
                    )
            grad_coeffs = grad_coeffs.sum_to_size(coeffs_shape)
        return grad_means, grad_coeffs, None


class _TransformedCoupledMeans(_CoupledMeans):
    """``_CoupledMeans`` with ``jvp`` and ``vmap`` for forward-mode AD and ``torch.func`` (apart,
    since ``torch.compile`` does not trace a custom ``jvp``). The function is linear in
    ``means`` and ``coeffs``, so its tangent is the function of their tangents."""

    @staticmethod
    def jvp(ctx, means_t, coeffs_t, _xs_t):
        (xs,) = ctx.saved_tensors
        means_shape, coeffs_shape = ctx.input_shapes
        if means_t is None:
            means_t = xs.new_zeros(means_shape)
        if coeffs_t is None:
            coeffs_t = xs.new_zeros(coeffs_shape)
        return _TransformedCoupledMeans.apply(means_t, coeffs_t, xs)

    @staticmethod
    def vmap(info, in_dims, *args):
        return _TransformedCoupledMeans.apply(*batch_first(in_dims, args)), 0


def _check_finite_params(params: torch.Tensor, blocks: list[tuple[str, int]]) -> None:
    """Raise ``ValueError`` naming the block and index of a non-finite entry of ``params``.

    Under ``torch.func.vmap`` every batch member is checked and the message names the block only.
    """
    if params.is_floating_point() and bool(torch.isfinite(physical(params).sum())):
        return
    first = 0
    for name, size in blocks:
        part = params.narrow(-3, first, size)
        bad = (~torch.isfinite(physical(part))).nonzero()
        if len(bad):
            found = "a non-finite entry"
            if physical(part) is part:
                index = tuple(bad[0].tolist())
                found = f"{part[index].item()} at index {index[:-3] + (index[-3] + first,) + index[-2:]}"
            raise ValueError(
                f"params (Tensor of shape {tuple(params.shape)}) must be finite, found {found}, in "
                f"the {name} block (channels {first}..{first + size - 1} of the from_params layout)"
            )
        first += size


def _pairs(num_channels: int) -> list[tuple[int, int]]:
    """``(c, p)`` for every later channel c and earlier channel p, in pair order."""
    return [(c, p) for c in range(num_channels) for p in range(c)]


class DiscretizedLogisticMixture(DiscretePixelDistribution):
    r"""Mixture of discretized logistics over integer pixels, with linear channel coupling.

    Each pixel draws one component ``k`` with probability ``softmax(logits)[k]``; given it,
    channel ``c`` is a logistic with mean
    ``means[c, k] + sum_{p < c} coeffs[(c, p), k] * x_p`` (``x_p`` the earlier channel's
    value scaled to ``[-1, 1]``) and scale ``exp(log_scales[c, k])``, discretized to the
    ``2**num_bits`` levels: the lowest level takes the whole left tail, the highest the whole
    right tail, every other level the logistic mass of its bin of width ``2 / (2**bits - 1)``.

    Example::

        >>> import torch
        >>> from pixelcnnpp.likelihoods import DiscretizedLogisticMixture
        >>> params = torch.randn(4, 10 * 10, 8, 8)       # [B, K*(1 + 2C + C(C-1)/2), H, W]
        >>> d = DiscretizedLogisticMixture.from_params(params, num_channels=3)
        >>> x = d.sample()                               # [4, 3, 8, 8] integers in 0..255
        >>> d.log_prob(x).shape                          # nats per image
        torch.Size([4])

    Args:
        logits: ``[*, K, H, W]`` unnormalized log-weights of the components.
        means: ``[*, C, K, H, W]`` logistic means in scaled units (before coupling).
        log_scales: ``[*, C, K, H, W]`` log of the logistic scales (used as given; see
            ``from_params`` for the usual floor at -7).
        coeffs: ``[*, C*(C-1)//2, K, H, W]`` coupling coefficients, pairs in the order
            ``(1,0), (2,0), (2,1), (3,0), ...``; used as given (no tanh). ``None``: no coupling.
        num_bits: bit depth, 1..16.

    ``log_prob`` is the exact mass. It is computed as
    ``logsigmoid(b) + logsigmoid(-a) + log(1 - exp(a - b))`` so that bins of tiny mass keep
    float32 accuracy; half-precision parameters (e.g. from bf16 autocast) are computed in
    float32. Log-scales are clipped to ``[-80, 60]`` and standardized bin edges to ``+-1e15``
    inside the computation so that ``log_prob`` is finite for any finite parameters; this
    changes no mass larger than ``exp(-1e15)``.

    Summaries (``mean``, ``variance``, ``mode``, ``entropy()``, or all at once with
    ``summary()``) enumerate the values of each pixel and are exact for C = 1 and whenever
    ``2**(bits*C) <= 65536``. For larger coupled pixels (RGB at 8 bits) they are greedy:
    channel c is summarised under its conditional given the earlier channels at their greedy
    modes, so ``mode`` is the greedy channel-by-channel mode, ``mean``/``variance`` are those
    conditional moments, and ``entropy()`` is the sum of those conditional entropies.
    """

    has_rsample = False
    _param_event_dims: ClassVar[dict[str, int]] = {
        "logits": 3,
        "means": 4,
        "log_scales": 4,
        "coeffs": 4,
    }

    def __init__(
        self,
        logits: torch.Tensor,
        means: torch.Tensor,
        log_scales: torch.Tensor,
        coeffs: torch.Tensor | None = None,
        num_bits: int = 8,
        validate_args: bool | None = None,
    ):
        self.num_bits = check_num_bits(num_bits)
        for name, value, dims in (
            ("logits", logits, "[*, K, H, W]"),
            ("means", means, "[*, C, K, H, W]"),
            ("log_scales", log_scales, "[*, C, K, H, W]"),
            ("coeffs", coeffs, "[*, C*(C-1)//2, K, H, W]"),
        ):
            if value is None and name == "coeffs":
                continue
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                got = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"{name} must be a floating-point tensor {dims}, got {got}")
        if logits.dim() < 3:
            raise ValueError(f"logits must have shape [*, K, H, W], got {tuple(logits.shape)}")
        k, h, w = logits.shape[-3:]
        if means.dim() < 4 or tuple(means.shape[-3:]) != (k, h, w):
            raise ValueError(
                f"means must have shape [*, C, K, H, W] with K, H, W = {(k, h, w)} taken from "
                f"logits {tuple(logits.shape)}, got {tuple(means.shape)}"
            )
        c = means.shape[-4]
        if c < 1:
            raise ValueError(
                f"means must have at least one channel, got shape {tuple(means.shape)}"
            )
        if log_scales.dim() < 4 or tuple(log_scales.shape[-4:]) != (c, k, h, w):
            raise ValueError(
                f"log_scales must have shape [*, C, K, H, W] = [*, {c}, {k}, {h}, {w}] like means, "
                f"got {tuple(log_scales.shape)}"
            )
        if coeffs is not None:
            if coeffs.dim() < 4 or tuple(coeffs.shape[-4:]) != (num_pairs(c), k, h, w):
                raise ValueError(
                    f"coeffs must have shape [*, C*(C-1)//2, K, H, W] = "
                    f"[*, {num_pairs(c)}, {k}, {h}, {w}] for C={c}, got {tuple(coeffs.shape)}"
                )
            if c == 1:
                coeffs = None
        params = [logits, means, log_scales] + ([coeffs] if exists(coeffs) else [])
        shapes = [logits.shape[:-3]] + [p.shape[:-4] for p in params[1:]]
        try:
            # torch.broadcast_shapes costs about 23 us (against 1 us for comparing the shapes);
            # sampling builds one of these per pixel, and from_params's shapes are always equal.
            same = all(shape == shapes[0] for shape in shapes)
            batch_shape = shapes[0] if same else torch.broadcast_shapes(*shapes)
        except RuntimeError:
            raise ValueError(
                "the batch dimensions of logits, means, log_scales and coeffs do not broadcast: "
                + ", ".join(str(tuple(s)) for s in shapes)
            ) from None
        dtype = compute_dtype(*params)
        self.logits = logits.to(dtype).expand(batch_shape + logits.shape[-3:])
        self.means = means.to(dtype).expand(batch_shape + means.shape[-4:])
        self.log_scales = log_scales.to(dtype).expand(batch_shape + log_scales.shape[-4:])
        self.coeffs = (
            coeffs.to(dtype).expand(batch_shape + coeffs.shape[-4:]) if exists(coeffs) else None
        )
        super().__init__(batch_shape, torch.Size((c, h, w)), validate_args=validate_args)

    @property
    def arg_constraints(self):
        names = ["logits", "means", "log_scales"] + (["coeffs"] if exists(self.coeffs) else [])
        return dict.fromkeys(names, finite)

    @property
    def num_mixtures(self) -> int:
        return self.logits.shape[-3]

    @staticmethod
    def num_params(num_channels: int, num_mixtures: int) -> int:
        """Channels of the ``from_params`` layout: ``K * (1 + 2C + C(C-1)/2)``."""
        return num_mixtures * (1 + 2 * num_channels + num_pairs(num_channels))

    @classmethod
    def from_params(
        cls,
        params: torch.Tensor,
        num_channels: int,
        num_bits: int = 8,
        min_log_scale: float = -7.0,
        validate_args: bool | None = None,
    ) -> DiscretizedLogisticMixture:
        """Build the mixture from one tensor of network outputs.

        ``params [*, K*(1 + 2C + C*(C-1)//2), H, W]`` holds, along dim -3: K logits, then
        C*K means, C*K log-scales, C*(C-1)//2*K raw coefficients, each block laid out
        channel-major (``(c k)``, ``(pair k)``). Log-scales are floored at ``min_log_scale``;
        coefficients pass through ``tanh``.
        """
        check_int("num_channels", num_channels)
        if not isinstance(params, torch.Tensor) or params.dim() < 3:
            got = tuple(params.shape) if isinstance(params, torch.Tensor) else type(params).__name__
            raise ValueError(f"params must be a tensor [*, K*(1 + 2C + C(C-1)/2), H, W], got {got}")
        per = cls.num_params(num_channels, 1)
        d = params.shape[-3]
        if d == 0 or d % per:
            raise ValueError(
                f"params must have K * {per} channels for num_channels={num_channels} "
                f"(K logits + {2 * num_channels}K means/log-scales + {num_pairs(num_channels)}K "
                f"coefficients), got {d} channels in shape {tuple(params.shape)}"
            )
        if params.is_floating_point() and params.dtype in (torch.float16, torch.bfloat16):
            params = params.float()
        k, c, p = d // per, num_channels, num_pairs(num_channels)
        validate = cls._validate_args if validate_args is None else validate_args
        # Checked before the floor and the tanh, which would turn -inf log-scales and infinite
        # coefficients into ordinary values; the message locates the entry in this layout.
        if validate:
            _check_finite_params(
                params, [("logits", k), ("means", c * k), ("log_scales", c * k), ("coeffs", p * k)]
            )
        logits, means, log_scales, coeffs = params.split([k, c * k, c * k, p * k], dim=-3)
        means = rearrange(means, "... (c k) h w -> ... c k h w", c=c)
        log_scales = rearrange(log_scales, "... (c k) h w -> ... c k h w", c=c).clamp(
            min=min_log_scale
        )
        coeffs = torch.tanh(rearrange(coeffs, "... (p k) h w -> ... p k h w", p=p)) if p else None
        return cls(logits, means, log_scales, coeffs, num_bits=num_bits, validate_args=validate)

    # -- likelihood --------------------------------------------------------------------------

    def _coupled_means(self, xs: torch.Tensor) -> torch.Tensor:
        """Means after coupling: ``[..., C, 1, H, W]`` scaled values -> ``[..., C, K, H, W]``."""
        if self.coeffs is None:
            return self.means
        function = (
            _TransformedCoupledMeans if transformed(self.means, self.coeffs, xs) else _CoupledMeans
        )
        return function.apply(self.means, self.coeffs, xs)

    def _component_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Per channel and component log-mass: ``[..., C, H, W] -> [..., C, K, H, W]``."""
        x = x.unsqueeze(-3)
        dtype = self.means.dtype
        xs = scale_pixels(x, self.num_bits, dtype)
        last = self.num_levels - 1
        half_width = 1.0 / last
        # Edge 2v +- 1 (in half-widths above -1), computed from the integer so that the upper
        # edge of level v and the lower edge of level v + 1 are the same float: no gap or
        # overlap between bins, so the masses sum to one in float32 too.
        twice = x.to(dtype) * 2.0
        lower = torch.where(x == 0, -math.inf, (twice - 1.0) * half_width - 1.0)
        upper = torch.where(x == last, math.inf, (twice + 1.0) * half_width - 1.0)
        interior = ((x != 0) & (x != last)).to(dtype)
        return discretized_logistic_log_mass(
            self._coupled_means(xs), self.log_scales, lower, upper, interior, half_width
        )

    @property
    def log_weights(self) -> torch.Tensor:
        """Normalized log mixture weights ``[*, K, H, W]``."""
        return F.log_softmax(self.logits, dim=-3)

    def _pixel_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        lp = self._component_log_probs(value).sum(-4)  # [..., K, H, W]
        return torch.logsumexp(self.log_weights + lp, dim=-3)

    def _log_prob_pixels(self, value: torch.Tensor) -> torch.Tensor:
        """The mixture is over whole pixels, so channel c's term is
        ``log sum_k w_k prod_{c' <= c} p_k(x_c') - log sum_k w_k prod_{c' < c} p_k(x_c')``."""
        lp = self._component_log_probs(value).cumsum(-4)  # [..., C, K, H, W]
        upto = torch.logsumexp(self.log_weights.unsqueeze(-4) + lp, dim=-3)  # log p(x_<=c)
        before = torch.cat([torch.zeros_like(upto[..., :1, :, :]), upto[..., :-1, :, :]], dim=-3)
        return upto - before

    def _values_cost(self) -> int:
        return self.num_mixtures

    # -- sampling ------------------------------------------------------------------------------

    def sample(
        self,
        sample_shape: torch.Size | tuple[int, ...] = (),
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw integer images ``[*sample_shape, *batch, C, H, W]`` exactly from the pmf.

        A component per pixel by Gumbel-max, then channel by channel a logistic draw rounded to
        the nearest level and clamped to the range, later channels' means coupled to the
        *discretized* earlier values, as ``log_prob`` scores them.

        ``temperature`` divides the mixture logits and multiplies the logistic scales:
        below 1 sharpens both the choice of component and each logistic, 1 is the model itself.
        """
        t = self._check_temperature(temperature)
        sample_shape = torch.Size(sample_shape)
        with torch.no_grad():
            lead = sample_shape + self.batch_shape
            c, h, w = self.event_shape
            logits = self.logits.expand(lead + self.logits.shape[-3:])
            gumbel = -torch.empty_like(logits).exponential_(generator=generator).log()
            # At t == 1 dividing and adding log(t) change nothing; skipped, since sampling calls
            # this once per pixel.
            k = torch.argmax((logits if t == 1 else logits / t) + gumbel, dim=-3, keepdim=True)

            def pick(param):  # [*, J, K, H, W] -> [..., J, H, W] at the chosen component
                param = param.expand(lead + param.shape[-4:])
                index = k.unsqueeze(-4).expand(lead + (param.shape[-4], 1, h, w))
                return param.gather(-3, index).squeeze(-3)

            means = pick(self.means)
            log_scales = pick(self.log_scales).double()
            scales = (log_scales if t == 1 else log_scales + math.log(t)).exp()
            coeffs = pick(self.coeffs) if exists(self.coeffs) else None
            u = torch.rand(
                lead + (c, h, w), generator=generator, device=logits.device, dtype=torch.float64
            )
            noise = torch.log(u) - torch.log1p(-u)
            last = self.num_levels - 1
            out = torch.empty(lead + (c, h, w), dtype=torch.long, device=logits.device)
            xs = []
            for ch in range(c):
                mean = means[..., ch, :, :]
                if exists(coeffs) and ch:
                    mean = mean + (coeffs[..., pair_slice(ch), :, :] * torch.stack(xs, -3)).sum(-3)
                y = mean.double() + scales[..., ch, :, :] * noise[..., ch, :, :]
                v = ((y + 1.0) * (last / 2.0)).round().clamp(0, last)
                out[..., ch, :, :] = v.long()
                if ch < c - 1:  # what later channels' means are coupled to
                    xs.append(scale_pixels(v, self.num_bits, means.dtype))
            return out
