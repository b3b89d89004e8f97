"""The pixel distributions as Pyro distributions; needs Pyro (``pip install "pixelcnnpp[pyro]"``).

Each class here is the toolkit's distribution with Pyro's ``TorchDistributionMixin`` mixed in,
as Pyro wraps torch's own distributions: calling it draws a sample (what ``pyro.sample``
without ``obs`` and ``pyro.infer.Predictive`` do), and ``to_event``, ``mask``, ``expand_by``
and ``shape`` work as on any Pyro distribution. Everything else is unchanged: the parameters,
``from_params``, validation, ``log_prob``, ``sample(temperature=...)`` and the summaries::

    import pixelcnnpp.likelihoods.pyro as pixel_dist

    with pyro.plate("images", len(x)):
        pyro.sample("x", pixel_dist.DiscretizedLogisticMixture.from_params(params, 3), obs=x)
"""

from __future__ import annotations

try:
    from pyro.distributions.torch_distribution import TorchDistributionMixin
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "pixelcnnpp.likelihoods.pyro needs Pyro: pip install 'pixelcnnpp[pyro]' "
        "(or pip install pyro-ppl)"
    ) from error

from . import mixture, softmax

__all__ = ["DiscretizedLogisticMixture", "PixelSoftmax"]


class DiscretizedLogisticMixture(mixture.DiscretizedLogisticMixture, TorchDistributionMixin):
    """:class:`pixelcnnpp.likelihoods.DiscretizedLogisticMixture` as a Pyro distribution:
    batch ``[*]``, event ``(C, H, W)``, so one image per element of a ``pyro.plate``."""


class PixelSoftmax(softmax.PixelSoftmax, TorchDistributionMixin):
    """:class:`pixelcnnpp.likelihoods.PixelSoftmax` as a Pyro distribution: batch ``[*]``,
    event ``(C, H, W)``."""
