"""The Pyro adapters: both distributions as the decoder of a tiny VAE trained with SVI, then
sampled through ``pyro.infer.Predictive``; ``to_event`` and ``mask``.

Pyro is an optional dependency (the ``pyro`` extra, included in ``dev``, which CI installs);
without it this module is skipped.
"""

from __future__ import annotations

import pytest
import torch
from einops import rearrange
from torch import nn

pyro = pytest.importorskip("pyro")
import pyro.distributions as pyro_dist  # noqa: E402
from pyro.infer import SVI, Predictive, Trace_ELBO  # noqa: E402
from pyro.optim import Adam  # noqa: E402

import pixelcnnpp.likelihoods as plain  # noqa: E402
import pixelcnnpp.likelihoods.pyro as pixel_dist  # noqa: E402

C, H, W, BITS, LATENT, K = 1, 4, 4, 3, 2, 2
LEVELS = 2**BITS


def decoder_distribution(name, params):
    """Decoder output ``[..., P, H, W]`` -> a Pyro distribution over ``[..., C, H, W]``."""
    if name == "dmol":
        return pixel_dist.DiscretizedLogisticMixture.from_params(params, C, num_bits=BITS)
    return pixel_dist.PixelSoftmax(rearrange(params, "... (c l) h w -> ... c l h w", c=C))


NUM_OUTPUTS = {"dmol": plain.DiscretizedLogisticMixture.num_params(C, K), "softmax": C * LEVELS}


class TinyVAE(nn.Module):
    def __init__(self, name):
        super().__init__()
        self.name = name
        outputs = NUM_OUTPUTS[name]
        self.encoder = nn.Sequential(nn.Flatten(-3), nn.Linear(C * H * W, 2 * LATENT))
        self.decoder = nn.Sequential(
            nn.Linear(LATENT, outputs * H * W), nn.Unflatten(-1, (outputs, H, W))
        )

    def model(self, x=None, num_images=None):
        pyro.module("decoder", self.decoder)
        num_images = len(x) if x is not None else num_images
        with pyro.plate("images", num_images):
            prior = pyro_dist.Normal(torch.zeros(LATENT), 1.0).to_event(1)
            z = pyro.sample("z", prior)
            return pyro.sample("x", decoder_distribution(self.name, self.decoder(z)), obs=x)

    def guide(self, x=None, num_images=None):
        pyro.module("encoder", self.encoder)
        num_images = len(x) if x is not None else num_images
        with pyro.plate("images", num_images):
            if x is None:
                return pyro.sample("z", pyro_dist.Normal(torch.zeros(LATENT), 1.0).to_event(1))
            xs = plain.scale_pixels(x, BITS)
            mean, log_scale = self.encoder(xs).chunk(2, dim=-1)
            return pyro.sample("z", pyro_dist.Normal(mean, log_scale.exp()).to_event(1))


@pytest.fixture
def clean_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    with pyro.validation_enabled(True):
        yield
    pyro.clear_param_store()


@pytest.mark.parametrize("name", ["dmol", "softmax"])
@pytest.mark.parametrize("vectorize", [False, True], ids=["one-particle", "vectorized"])
def test_svi_then_predictive_on_a_tiny_vae(name, vectorize, clean_pyro):
    g = torch.Generator().manual_seed(1)
    # images that a VAE can learn: two prototypes with little noise
    prototypes = torch.randint(0, LEVELS, (2, C, H, W), generator=g)
    x = prototypes[torch.randint(0, 2, (32,), generator=g)]
    vae = TinyVAE(name)
    elbo = Trace_ELBO(num_particles=2 if vectorize else 1, vectorize_particles=vectorize)
    svi = SVI(vae.model, vae.guide, Adam({"lr": 0.05}), loss=elbo)
    losses = [svi.step(x) for _ in range(40)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) < sum(losses[:5])  # it learns

    predictive = Predictive(vae.model, guide=vae.guide, num_samples=3, return_sites=["x", "z"])
    samples = predictive(num_images=5)
    assert samples["x"].shape == (3, 5, C, H, W) and samples["x"].dtype == torch.long
    assert samples["x"].min() >= 0 and samples["x"].max() <= LEVELS - 1
    assert samples["z"].shape == (3, 5, LATENT)


@pytest.mark.parametrize("name", ["dmol", "softmax"])
def test_to_event_and_mask(name, clean_pyro):
    g = torch.Generator().manual_seed(2)
    params = torch.randn(2, 3, NUM_OUTPUTS[name], H, W, generator=g)
    d = decoder_distribution(name, params)
    x = d.sample()
    assert d.batch_shape == (2, 3) and d.event_shape == (C, H, W)
    assert d().shape == (2, 3, C, H, W)  # calling it samples, as Pyro expects
    lp = d.log_prob(x)
    folded = d.to_event(1)
    assert folded.batch_shape == (2,) and folded.event_shape == (3, C, H, W)
    torch.testing.assert_close(folded.log_prob(x), lp.sum(-1))
    mask = torch.tensor([[True, False, True], [False, False, True]])
    torch.testing.assert_close(d.mask(mask).log_prob(x), torch.where(mask, lp, 0.0))
    assert d.expand_by((4,)).batch_shape == (4, 2, 3)
    # the adapter is the toolkit's distribution: same numbers as the plain class
    plain_class = getattr(plain, type(d).__name__)
    assert isinstance(d, plain_class)
    torch.testing.assert_close(lp, plain_class.log_prob(d, x))


def test_validation_still_names_the_problem(clean_pyro):
    params = torch.randn(2, NUM_OUTPUTS["dmol"], H, W)
    d = decoder_distribution("dmol", params)
    with pytest.raises(ValueError, match="must hold pixels in"):
        d.log_prob(torch.full((2, C, H, W), LEVELS))
