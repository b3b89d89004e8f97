"""Distributions over integer pixels and the heads that produce them from network features.

>>> from pixelcnnpp.likelihoods import DiscretizedLogisticMixture, PixelSoftmax, bits_per_dim
"""

from .discrete import MAX_JOINT_ENUMERATION, DiscretePixelDistribution, PixelSummary
from .heads import (
    LIKELIHOODS,
    DiscretizedLogisticMixtureHead,
    LikelihoodHead,
    PixelSoftmaxHead,
    get_likelihood,
    list_likelihoods,
    register_likelihood,
)
from .metrics import bits_per_dim
from .mixture import DiscretizedLogisticMixture
from .pixels import num_levels, num_pairs, scale_pixels, validate_pixels
from .softmax import PixelSoftmax

__all__ = [
    "LIKELIHOODS",
    "MAX_JOINT_ENUMERATION",
    "DiscretePixelDistribution",
    "DiscretizedLogisticMixture",
    "DiscretizedLogisticMixtureHead",
    "LikelihoodHead",
    "PixelSoftmax",
    "PixelSoftmaxHead",
    "PixelSummary",
    "bits_per_dim",
    "get_likelihood",
    "list_likelihoods",
    "num_levels",
    "num_pairs",
    "register_likelihood",
    "scale_pixels",
    "validate_pixels",
]
