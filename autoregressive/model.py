"""PixelCNN++ (Salimans, Karpathy, Chen, Kingma 2017) assembled from registered blocks.

Axis key: ``B`` batch, ``C`` image channels, ``F`` filters, ``H, W`` image size, ``D`` size of
the conditioning vector.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution
from torch.nn.utils.parametrize import is_parametrized

from pixelcnnpp.likelihoods import LikelihoodHead, scale_pixels, validate_pixels
from pixelcnnpp.likelihoods.heads import LIKELIHOODS

from .blocks import block_graph_breaks, build_block
from .causality import verify_block
from .config import PixelCNNConfig
from .initialization import initialize_weight_norm
from .layers import ShiftedConv2d, ShiftedConvTranspose2d, down_shift, get_nonlinearity, right_shift


class PixelCNNPP(nn.Module):
    """PixelCNN++: ``model(x) -> distribution over x``, every pixel given those before it.

    Two streams run over the image: ``u`` sees the rows above a position, ``ul`` the rows above
    and the pixels to its left. The up pass applies ``num_resnet`` blocks per resolution and
    halves the resolution between stages; the down pass mirrors it (``num_resnet`` blocks at
    the lowest resolution, ``num_resnet + 1`` at the others), each block taking the matching
    up-pass output as its short-cut input. ``elu(ul)`` feeds the likelihood head.

    Example::

        >>> import torch
        >>> from pixelcnnpp.autoregressive import PixelCNNPP, PixelCNNConfig
        >>> model = PixelCNNPP(PixelCNNConfig(image_shape=(1, 8, 8), num_filters=16, num_resnet=1))
        >>> x = torch.randint(0, 256, (2, 1, 8, 8))
        >>> nll = -model(x).log_prob(x)                  # [2] nats per image
        >>> samples = model.sample(2)                    # [2, 1, 8, 8] integers
    """

    def __init__(self, config: PixelCNNConfig | None = None, **overrides: Any):
        super().__init__()
        config = config or PixelCNNConfig()
        if overrides:
            config = PixelCNNConfig.from_dict({**config.to_dict(), **overrides})
        self.config = config
        c, _, _ = config.image_shape
        f, nr, wn = config.num_filters, config.num_resnet, config.weight_norm
        get_nonlinearity(config.nonlinearity)
        verify_block(config.block, config.nonlinearity)
        d = config.conditioning_dim

        sizes = [tuple(config.image_shape[1:])]  # (H, W) per stage: halved, rounded up
        for _ in range(config.num_stages - 1):
            sizes.append(tuple((n + 1) // 2 for n in sizes[-1]))

        def block(stream: str, skip: int, stage: int) -> nn.Module:
            return build_block(
                config.block,
                f,
                stream,
                skip,
                config.dropout,
                d,
                config.nonlinearity,
                wn,
                resolution=sizes[stage],
                block_kwargs=config.block_kwargs,
            )

        def pair(u: nn.Module, ul: nn.Module) -> nn.ModuleDict:
            return nn.ModuleDict({"u": u, "ul": ul})

        # c + 1 input channels: the image and a channel of ones that marks the zero padding.
        self.u_init = ShiftedConv2d(c + 1, f, (2, 3), "down", weight_norm=wn)
        self.ul_init_above = ShiftedConv2d(c + 1, f, (1, 3), "down", weight_norm=wn)
        self.ul_init_left = ShiftedConv2d(c + 1, f, (2, 1), "down_right", weight_norm=wn)
        self.up = nn.ModuleList(
            pair(
                nn.ModuleList(block("u", 0, s) for _ in range(nr)),
                nn.ModuleList(block("ul", f, s) for _ in range(nr)),
            )
            for s in range(config.num_stages)
        )
        lowest = config.num_stages - 1
        self.downsample = nn.ModuleList(
            pair(
                ShiftedConv2d(f, f, (2, 3), "down", stride=2, weight_norm=wn),
                ShiftedConv2d(f, f, (2, 2), "down_right", stride=2, weight_norm=wn),
            )
            for _ in range(config.num_stages - 1)
        )
        self.down = nn.ModuleList(  # from the lowest resolution up
            pair(
                nn.ModuleList(block("u", f, lowest - s) for _ in range(nr + (s > 0))),
                nn.ModuleList(block("ul", 2 * f, lowest - s) for _ in range(nr + (s > 0))),
            )
            for s in range(config.num_stages)
        )
        self.upsample = nn.ModuleList(
            pair(
                ShiftedConvTranspose2d(f, f, (2, 3), "down", weight_norm=wn),
                ShiftedConvTranspose2d(f, f, (2, 2), "down_right", weight_norm=wn),
            )
            for _ in range(config.num_stages - 1)
        )
        self.head = LIKELIHOODS.create(
            config.likelihood,
            {"num_channels": c, "num_bits": config.num_bits, **config.likelihood_kwargs},
            {"in_channels": f, "weight_norm": wn},
        )

    # -- inputs ----------------------------------------------------------------------------------

    def check_inputs(
        self,
        x: torch.Tensor | None,
        labels: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        batch: int | None = None,
    ) -> torch.Tensor | None:
        """Validate pixels, labels and conditioning; return the conditioning vector ``[B, D]``.

        Raises ``ValueError`` naming the argument, what the config expects and what came.
        """
        cfg = self.config
        if x is not None:
            if not isinstance(x, torch.Tensor) or x.dim() != 4:
                got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(
                    f"x must be [B, C, H, W] = [B, {', '.join(map(str, cfg.image_shape))}], got {got}"
                )
            validate_pixels(x, torch.Size(cfg.image_shape), torch.Size(), cfg.num_bits)
            batch = x.shape[0]
        if cfg.num_classes is None:
            if labels is not None:
                raise ValueError(
                    "labels were given but the model is not class-conditional (num_classes=None)"
                )
        else:
            if labels is None:
                raise ValueError(
                    f"labels [B] in [0, {cfg.num_classes - 1}] are required: the model has num_classes={cfg.num_classes}"
                )
            if (
                not isinstance(labels, torch.Tensor)
                or labels.shape != (batch,)
                or labels.is_floating_point()
            ):
                got = (
                    f"{tuple(labels.shape)} {labels.dtype}"
                    if isinstance(labels, torch.Tensor)
                    else type(labels).__name__
                )
                raise ValueError(f"labels must be an integer tensor of shape ({batch},), got {got}")
            if labels.numel() and (labels.min() < 0 or labels.max() >= cfg.num_classes):
                raise ValueError(
                    f"labels must lie in [0, {cfg.num_classes - 1}] (num_classes={cfg.num_classes}), "
                    f"got values in [{labels.min().item()}, {labels.max().item()}]"
                )
        if cfg.cond_dim is None:
            if cond is not None:
                raise ValueError(
                    "cond was given but the model has no conditioning vector (cond_dim=None)"
                )
        elif (
            not isinstance(cond, torch.Tensor)
            or cond.shape != (batch, cfg.cond_dim)
            or not cond.is_floating_point()
        ):
            got = (
                f"{tuple(cond.shape)} {cond.dtype}"
                if isinstance(cond, torch.Tensor)
                else repr(cond)
            )
            raise ValueError(
                f"cond must be a float tensor of shape ({batch}, {cfg.cond_dim}), got {got}"
            )
        return self.conditioning_vector(labels, cond)

    def conditioning_vector(
        self, labels: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """One-hot ``labels`` and ``cond`` concatenated: ``[B, D]`` (None without either); unchecked."""
        parts = []
        if labels is not None and self.config.num_classes is not None:
            parts.append(F.one_hot(labels.long(), self.config.num_classes))
        if cond is not None and self.config.cond_dim is not None:
            parts.append(cond)
        if not parts:
            return None
        dtype = self.u_init.conv.bias.dtype
        return torch.cat([p.to(dtype) for p in parts], dim=1)

    def nll(
        self, x: torch.Tensor, labels: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Negative log-likelihood in nats per image, ``[B, C, H, W] -> [B]``, without input
        validation (for training loops that validated their data once; compiles cleanly)."""
        dist = self.distribution(
            self.features(x, self.conditioning_vector(labels, cond)), x, validate=False
        )
        return -dist.log_prob(x)

    def compiled_nll(self, **options: Any) -> Callable[..., torch.Tensor]:
        """``torch.compile(self.nll, **options)``: the training loss, forward and backward, the
        likelihood included, as one graph. ``fullgraph=True`` unless the config's block
        declares graph breaks (``register_block``), so that a break is an error, not a slow
        step. ``options`` go to ``torch.compile`` (``backend``, ``mode``, ``dynamic``, ...).

        The compiled function takes and returns what ``nll`` does; call it under autocast
        for mixed precision, after ``model.to(memory_format=torch.channels_last)`` for that
        layout. Its graph is traced at the first call and again for new shapes or modes.

        On CPU, for an NCHW model compiled by inductor with no ``mode`` or ``options`` given,
        inductor's layout optimization (convolutions in channels_last) is turned off: on a
        2-core AVX2 CPU the compiled demo step took 1.93 s against 1.64 s eager with it, and
        1.63 s against 1.81 s without (``benchmarks/train_step.py --configs b``).
        """
        options.setdefault("fullgraph", block_graph_breaks(self.config.block) is None)
        settings = self.inductor_options()
        if (
            settings is not None
            and options.get("backend", "inductor") == "inductor"
            and not {"mode", "options"} & set(options)
        ):
            options["options"] = settings
        # torch.compile's first use turns torch.distributions' argument validation off for
        # the whole process (torch 2.13); keep the user's setting, so that out-of-range
        # pixels still raise in every distribution built afterwards.
        validate = Distribution._validate_args
        compiled = torch.compile(self.nll, **options)
        Distribution.set_default_validate_args(validate)
        return compiled

    def inductor_options(self) -> dict | None:
        """The inductor settings ``compiled_nll`` uses for this model: on CPU, for an NCHW
        model, ``{"layout_optimization": False}`` (see ``compiled_nll``); else ``None``."""
        if self.u_init.conv.bias.device.type == "cpu" and not self._channels_last():
            return {"layout_optimization": False}
        return None

    # -- network ---------------------------------------------------------------------------------

    def scaled_input(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels ``[B, C, H, W]`` -> scaled to ``[-1, 1]`` with a channel of ones: ``[B, C+1, H, W]``."""
        xs = scale_pixels(x, self.config.num_bits, self.u_init.conv.bias.dtype)
        return torch.cat([xs, torch.ones_like(xs[:, :1])], dim=1)

    def _channels_last(self) -> bool:
        """Whether ``model.to(memory_format=torch.channels_last)`` was applied (the first
        convolution's stored weight is in that layout)."""
        conv = self.u_init.conv
        weight = conv.parametrizations.weight.original1 if is_parametrized(conv) else conv.weight
        return not weight.is_contiguous() and weight.is_contiguous(
            memory_format=torch.channels_last
        )

    def features(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """Network output before the head: pixels ``[B, C, H, W]`` -> ``[B, F, H, W]``.

        ``h`` is the conditioning vector from ``check_inputs``; no validation here.
        """
        xp = self.scaled_input(x)
        if self._channels_last():  # activations follow the weights' layout
            xp = xp.contiguous(memory_format=torch.channels_last)
        us = [down_shift(self.u_init(xp))]
        uls = [down_shift(self.ul_init_above(xp)) + right_shift(self.ul_init_left(xp))]
        for s, stage in enumerate(self.up):
            if s > 0:
                us.append(self.downsample[s - 1]["u"](us[-1]))
                uls.append(self.downsample[s - 1]["ul"](uls[-1]))
            for block_u, block_ul in zip(stage["u"], stage["ul"], strict=True):
                us.append(block_u(us[-1], None, h))
                uls.append(block_ul(uls[-1], us[-1], h))
        u, ul = us.pop(), uls.pop()
        for s, stage in enumerate(self.down):
            if s > 0:
                size = us[-1].shape[-2:]
                u = self.upsample[s - 1]["u"](u, size)
                ul = self.upsample[s - 1]["ul"](ul, size)
            for block_u, block_ul in zip(stage["u"], stage["ul"], strict=True):
                u = block_u(u, us.pop(), h)
                ul = block_ul(ul, torch.cat([u, uls.pop()], dim=1), h)
        return F.elu(ul)

    def distribution(
        self, features: torch.Tensor, x: torch.Tensor | None = None, validate: bool = True
    ) -> Distribution:
        """The head's distribution from features ``[B, F, H, W]``, always in float32 or wider:
        under bf16/fp16 autocast the head's projection and the likelihood leave autocast, so
        means and scales keep full precision (the head is a small part of the cost).
        ``validate=False`` skips the distribution's argument and sample checks (for heads built
        on ``LikelihoodHead``; other heads return what their ``forward`` returns)."""
        if features.dtype in (torch.float16, torch.bfloat16) or torch.is_autocast_enabled(
            features.device.type
        ):
            with torch.autocast(features.device.type, enabled=False):
                return self._head_distribution(features.float(), x, validate)
        return self._head_distribution(features, x, validate)

    def _head_distribution(
        self, features: torch.Tensor, x: torch.Tensor | None, validate: bool
    ) -> Distribution:
        if validate or not isinstance(self.head, LikelihoodHead):
            return self.head(features, x)
        return self.head.distribution_from_features(features, x, validate_args=False)

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> Distribution:
        """The distribution over ``x [B, C, H, W]`` (batch ``[B]``, event ``(C, H, W)``)."""
        h = self.check_inputs(x, labels, cond)
        return self.distribution(self.features(x, h), x)

    # -- initialisation and sampling -------------------------------------------------------------------

    @torch.no_grad()
    def initialize(
        self, x: torch.Tensor, labels: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> PixelCNNPP:
        """The paper's data-dependent initialisation of the weight-normalized layers (opt-in).

        Runs one batch through the network in evaluation mode; each weight-normalized layer, in
        order, rescales its gain and shifts its bias so that its outputs on the batch have mean
        0 and standard deviation ``init_scale`` (1, or 0.1 for the last conv of a block) per
        channel. Call once, before training, with a batch of a few hundred images.
        """
        h = self.check_inputs(x, labels, cond)
        with initialize_weight_norm(self):
            self.head(self.features(x, h), x)
        return self

    @torch.no_grad()
    def sample(
        self,
        n: int,
        labels: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        temperature: float = 1.0,
        method: str = "cached",
        generator: torch.Generator | None = None,
        progress=None,
        *,
        replay: bool | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` images ``[n, C, H, W]`` (integers), one pixel at a time in raster order.

        ``method="cached"`` reuses each layer's recent outputs so every pixel costs only the
        work its position needs; ``"naive"`` reruns the whole network per pixel. Both consume
        the generator identically and give the same images (up to float rounding at bin edges).
        Runs in evaluation mode under ``no_grad``, with TF32 off (``exact_float32``);
        ``progress(done, total)`` is called per row.

        ``replay`` (cached only): record a row's operations once per pattern of resolution
        levels and replay them in later rows: a CUDA graph on a GPU, a tape of ATen operations
        on CPU. The images are those of ``replay=False``, which runs every row's Python.
        ``None``: on CUDA only. On CPU, where an operation's own dispatch costs most of its
        time, recording a row costs more than the replays save (``benchmarks/sampling.py``
        measures both); ``replay=True`` there checks that a model's blocks replay correctly
        before a GPU replays them.
        """
        from .sampling import sample

        return sample(
            self, n, labels, cond, temperature, method, generator, progress, replay=replay
        )

    @torch.no_grad()
    def complete(
        self,
        x: torch.Tensor,
        num_known: int,
        labels: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        temperature: float = 1.0,
        method: str = "cached",
        generator: torch.Generator | None = None,
        progress=None,
        *,
        replay: bool | None = None,
    ) -> torch.Tensor:
        """Keep the first ``num_known`` pixels of ``x [B, C, H, W]`` (integers) in raster order,
        all channels, and draw every later pixel given everything before it: ``[B, C, H, W]``.

        ``num_known=0`` is ``sample``; ``num_known=H*W`` returns ``x``. Methods, generator,
        ``progress`` (per row with pixels to draw) and ``replay`` as in ``sample``; ``x`` is not
        modified.
        """
        from .sampling import complete

        return complete(
            self,
            x,
            num_known,
            labels,
            cond,
            temperature,
            method,
            generator,
            progress,
            replay=replay,
        )

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
