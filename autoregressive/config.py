"""Hyperparameters of a PixelCNN++, saved beside the weights so a checkpoint rebuilds its model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pixelcnnpp.checks import check_int
from pixelcnnpp.likelihoods import num_levels


@dataclass
class PixelCNNConfig:
    """PixelCNN++ hyperparameters; the defaults are the paper's CIFAR-10 model."""

    image_shape: tuple[int, int, int] = (3, 32, 32)  # (C, H, W); any C >= 1, any H, W >= 1
    num_bits: int = 8
    likelihood: str = "dmol"  # a registered likelihood head: "dmol" or "softmax"
    likelihood_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"num_mixtures": 10}
    num_filters: int = 160
    num_resnet: int = 5  # blocks per stage in the up pass (the down pass has 5, 6, 6)
    num_stages: int = 3  # resolutions: 32 -> 16 -> 8
    dropout: float = 0.5
    block: str = "gated_resnet"  # a registered block
    block_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"num_heads": 2}
    nonlinearity: str = "concat_elu"
    weight_norm: bool = True
    num_classes: int | None = None  # class-conditional when set: model(x, labels=...)
    cond_dim: int | None = None  # conditioned on a vector when set: model(x, cond=[B, cond_dim])

    def __post_init__(self):
        shape = self.image_shape
        if not isinstance(shape, (tuple, list)) or len(shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {shape!r}")
        for axis, value in zip("CHW", shape, strict=True):
            check_int(f"image_shape {axis}", value)
        self.image_shape = tuple(shape)
        num_levels(self.num_bits)
        check_int("num_filters", self.num_filters)
        check_int("num_resnet", self.num_resnet, 0)
        check_int("num_stages", self.num_stages)
        if (
            isinstance(self.dropout, bool)
            or not isinstance(self.dropout, (int, float))
            or not 0 <= self.dropout < 1
        ):
            raise ValueError(f"dropout must be a probability in [0, 1), got {self.dropout!r}")
        if not isinstance(self.likelihood_kwargs, dict):
            raise ValueError(
                f"likelihood_kwargs must be a dict, got {type(self.likelihood_kwargs).__name__}"
            )
        if not isinstance(self.block_kwargs, dict) or not all(
            isinstance(k, str) for k in self.block_kwargs
        ):
            raise ValueError(
                f"block_kwargs must be a dict of keyword names (str) to values, got {self.block_kwargs!r}"
            )
        if not isinstance(self.weight_norm, bool):
            raise ValueError(f"weight_norm must be True or False, got {self.weight_norm!r}")
        for name in ("likelihood", "block", "nonlinearity"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a name (str), got {getattr(self, name)!r}")
        if self.num_classes is not None:
            check_int("num_classes", self.num_classes)
        if self.cond_dim is not None:
            check_int("cond_dim", self.cond_dim)

    @property
    def conditioning_dim(self) -> int | None:
        """Size of the vector each block is conditioned on (one-hot labels + cond), or None."""
        total = (self.num_classes or 0) + (self.cond_dim or 0)
        return total or None

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, ints, strings), for checkpoints and JSON."""
        d = dataclasses.asdict(self)
        d["image_shape"] = list(self.image_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PixelCNNConfig:
        """Inverse of ``to_dict``; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown PixelCNNConfig fields {unknown}; known: {sorted(known)}")
        d = dict(d)
        if "image_shape" in d:
            d["image_shape"] = tuple(d["image_shape"])
        return cls(**d)
