"""A convolutional VAE on Fashion-MNIST whose decoder is a pixelcnnpp likelihood.

The decoder's last layer outputs the parameters of a distribution over the integer pixels:

- ``dmol``: a discretized logistic mixture, ``K * (1 + 2)`` channels for one image channel,
  read by ``DiscretizedLogisticMixture.from_params``;
- ``softmax``: 256 logits per sub-pixel, read by ``PixelSoftmax``.

Training minimises the negative ELBO in bits/dim. At the end the test log-likelihood is
estimated by importance weighting with k posterior samples (IWAE-k, Burda et al. 2016), a
bound tighter than the ELBO, so the two decoders are compared on their likelihoods:

    python docs/examples/vae.py                   # both decoders: ~15 minutes on a 2-core CPU
    python docs/examples/vae.py --likelihood dmol --steps 5000 --num-mixtures 10

From Python (with docs/examples on the path)::

    from vae import VAEConfig, run
    results = run(VAEConfig(likelihood="softmax", steps=200))   # a dict, also saved as JSON

Axis key: ``B`` batch, ``C`` image channels, ``D`` latent size, ``S`` importance samples.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from rich.console import Console
from rich.table import Table
from rich.text import Text
from torch import nn
from torch.distributions import Distribution, Normal

from pixelcnnpp.likelihoods import (
    DiscretizedLogisticMixture,
    PixelSoftmax,
    bits_per_dim,
    num_levels,
    scale_pixels,
)
from pixelcnnpp.training import load_dataset, save_image_grid

LIKELIHOODS = ("dmol", "softmax")


@dataclass
class VAEConfig:
    """Everything a run depends on; ``run(config)`` trains, estimates and writes the outputs."""

    likelihood: str = "dmol"  # the decoder: "dmol" (logistic mixture) or "softmax" (256-way)
    dataset: str = "fashion-mnist"  # any registered dataset whose H and W are multiples of 4
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    latent_dim: int = 32
    hidden: int = 32  # channels of the widest conv layer
    num_mixtures: int = 5  # K, for dmol
    num_bits: int = 8
    iw_samples: int = 64  # k of the importance-weighted estimate (k = 1 is the ELBO)
    test_images: int = 500  # the first N test images are scored (every draw costs a decode)
    eval_batch_size: int = 250
    subset: int | None = None  # train on the first N training images only
    data_dir: str | None = None  # the only place looked in; default: where load_dataset looks
    out: str = "vae-out"  # folder for the image grid and the results JSON
    seed: int = 0
    device: str = "auto"  # "auto": CUDA when available
    log_every: int = 250

    def __post_init__(self):
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        counts = ["steps", "batch_size", "latent_dim", "hidden", "num_mixtures", "iw_samples"]
        for name in [*counts, "test_images", "eval_batch_size", "log_every"]:
            _check_positive(name, getattr(self, name))
        if self.subset is not None:
            _check_positive("subset", self.subset)
        num_levels(self.num_bits)  # 1..16 bits, else ValueError


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


# -- the decoder's likelihood: the only lines that depend on it -----------------------------------


def num_decoder_outputs(config: VAEConfig, num_channels: int) -> int:
    """Channels of the decoder's output for the chosen likelihood."""
    if config.likelihood == "dmol":
        return DiscretizedLogisticMixture.num_params(num_channels, config.num_mixtures)
    return num_channels * num_levels(config.num_bits)  # one logit per level of every sub-pixel


def pixel_distribution(config: VAEConfig, params: torch.Tensor, num_channels: int) -> Distribution:
    """Decoder output ``[B, P, H, W]`` -> a distribution over integer images ``[B, C, H, W]``."""
    if config.likelihood == "dmol":
        return DiscretizedLogisticMixture.from_params(params, num_channels, config.num_bits)
    return PixelSoftmax(rearrange(params, "b (c l) h w -> b c l h w", c=num_channels))


# -- the model ------------------------------------------------------------------------------------


class VAE(nn.Module):
    """``q(z|x)`` a diagonal Gaussian from a conv encoder, ``p(z) = N(0, I)``, ``p(x|z)`` a
    distribution over integer pixels from a transposed-conv decoder."""

    def __init__(self, config: VAEConfig, image_shape: tuple[int, int, int]):
        super().__init__()
        c, h, w = image_shape
        if h % 4 or w % 4:
            raise ValueError(f"image height and width must be multiples of 4, got {image_shape}")
        self.config, self.image_shape = config, image_shape
        f, d = config.hidden, config.latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(c, f // 2, 4, stride=2, padding=1),  # (B, f/2, H/2, W/2)
            nn.SiLU(),
            nn.Conv2d(f // 2, f, 4, stride=2, padding=1),  # (B, f, H/4, W/4)
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(f * (h // 4) * (w // 4), 2 * d),  # (B, 2D): mean and log-variance
        )
        self.decoder = nn.Sequential(
            nn.Linear(d, f * (h // 4) * (w // 4)),
            nn.Unflatten(1, (f, h // 4, w // 4)),  # (B, f, H/4, W/4)
            nn.SiLU(),
            nn.ConvTranspose2d(f, f // 2, 4, stride=2, padding=1),  # (B, f/2, H/2, W/2)
            nn.SiLU(),
            nn.ConvTranspose2d(f // 2, f // 2, 4, stride=2, padding=1),  # (B, f/2, H, W)
            nn.SiLU(),
            nn.Conv2d(f // 2, num_decoder_outputs(config, c), 1),  # (B, P, H, W)
        )

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer pixels ``[B, C, H, W]`` -> mean and log-variance of ``q(z|x)``, ``[B, D]``."""
        mean, log_var = self.encoder(scale_pixels(x, self.config.num_bits)).chunk(2, dim=-1)
        return mean, log_var

    def decode(self, z: torch.Tensor) -> Distribution:
        """Latents ``[B, D]`` -> ``p(x|z)``, batch ``[B]``, event ``(C, H, W)``."""
        return pixel_distribution(self.config, self.decoder(z), self.image_shape[0])

    def loss(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Negative ELBO and its KL term, nats per image ``[B]`` each (one reparameterised draw)."""
        mean, log_var = self.posterior(x)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        z = mean + (0.5 * log_var).exp() * noise
        reconstruction = self.decode(z).log_prob(x)  # log p(x|z), exact over the pixel bins
        kl = kl_to_prior(mean, log_var)
        return kl - reconstruction, kl


def kl_to_prior(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, exp(log_var)) || N(0, I))`` in closed form, nats: ``[B, D] -> [B]``."""
    return 0.5 * (mean**2 + log_var.exp() - 1.0 - log_var).sum(-1)


# -- the likelihood estimates ---------------------------------------------------------------------


@torch.no_grad()
def log_importance_weights(
    model: VAE, x: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``log w_s = log p(x|z_s) + log p(z_s) - log q(z_s|x)`` for ``z_s ~ q(z|x)``: ``[S=k, B]``."""
    mean, log_var = model.posterior(x)
    q, prior = Normal(mean, (0.5 * log_var).exp()), Normal(0.0, 1.0)
    log_w = []
    for _ in range(k):  # one decode of the batch per draw keeps the memory of one batch
        z = mean + q.scale * torch.randn(mean.shape, generator=generator, device=mean.device)
        log_p = model.decode(z).log_prob(x) + prior.log_prob(z).sum(-1)  # log p(x, z)
        log_w.append(log_p - q.log_prob(z).sum(-1))
    return torch.stack(log_w)  # (S, B)


def elbo_and_iwae(log_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image ELBO and IWAE-k estimates in nats, ``[S, B] -> [B], [B]``, from the same draws.

    ``mean_s log w_s`` estimates the ELBO; ``log mean_s w_s`` is the k-sample importance-weighted
    bound, ``>=`` the first for every set of draws (Jensen) and equal to it for k = 1.
    """
    return log_w.mean(0), torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


def estimate_log_likelihood(
    model: VAE, images: torch.Tensor, config: VAEConfig, generator: torch.Generator
) -> dict[str, float]:
    """Test ELBO, IWAE-k and KL, in bits/dim (lower is better), averaged over ``images``."""
    dims = math.prod(model.image_shape)
    elbo, iwae, kl = [], [], []
    for x in images.split(config.eval_batch_size):
        e, i = elbo_and_iwae(log_importance_weights(model, x, config.iw_samples, generator))
        elbo.append(e)
        iwae.append(i)
        with torch.no_grad():
            kl.append(kl_to_prior(*model.posterior(x)))
    return {
        "test_elbo_bits_per_dim": bits_per_dim(torch.cat(elbo).mean(), dims).item(),
        "test_iwae_bits_per_dim": bits_per_dim(torch.cat(iwae).mean(), dims).item(),
        "test_kl_bits_per_dim": -bits_per_dim(torch.cat(kl).mean(), dims).item(),
    }


@torch.no_grad()
def image_rows(model: VAE, test: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Four rows of ``n`` images ``[4n, C, H, W]``: test images, their reconstructions (the
    mode of ``p(x|z)`` at the posterior mean), prior draws' modes, prior draws sampled."""
    x = test[:n]
    reconstructions = model.decode(model.posterior(x)[0]).mode
    z = torch.randn(n, model.config.latent_dim, generator=generator, device=x.device)
    prior = model.decode(z)
    return torch.cat([x.long(), reconstructions, prior.mode, prior.sample(generator=generator)])


@torch.no_grad()
def held_out_neg_elbo(model: VAE, x: torch.Tensor, seed: int) -> float:
    """Negative ELBO of ``x`` in bits/dim with draws fixed by ``seed``: the same number for
    the same model, so successive values show what training did."""
    generator = torch.Generator(device=x.device).manual_seed(seed)
    loss, _ = model.loss(x, generator)
    return bits_per_dim(-loss.mean(), math.prod(model.image_shape)).item()


def _log_line(likelihood: str, record: dict[str, Any], seconds: float) -> Text:
    line = f"{likelihood:>7} step {record['step']:5d} | "
    if "train_neg_elbo_bits_per_dim" in record:
        train, kl = record["train_neg_elbo_bits_per_dim"], record["train_kl_bits_per_dim"]
        line += f"train -ELBO {train:.3f} (KL {kl:.3f}) | "
    test_batch = record["test_batch_neg_elbo_bits_per_dim"]
    return Text(line + f"test batch -ELBO {test_batch:.3f} | {seconds:.0f} s")


# -- the run --------------------------------------------------------------------------------------


def run(config: VAEConfig, console: Console | None = None) -> dict[str, Any]:
    """Train the VAE, estimate its test likelihood, write the image grid and a results JSON.

    Returns the results (all bits/dim are negated log-likelihoods: lower is better):

    - ``history``: every ``log_every`` steps from step 0, the -ELBO of a fixed batch of test
      images and, after step 0, the mean train -ELBO and KL since the last record;
    - ``test_elbo_bits_per_dim``, ``test_iwae_bits_per_dim``, ``test_kl_bits_per_dim``: the
      estimates over the first ``test_images`` test images;
    - ``config``, ``num_parameters``, ``train_seconds``, ``eval_seconds``, ``test_images``,
      ``image_grid`` and ``results_json`` (the paths written).
    """
    console = console or Console()
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu")
        if config.device == "auto"
        else config.device
    )
    torch.manual_seed(config.seed)
    data = dict(data_dir=config.data_dir, num_bits=config.num_bits, seed=config.seed)
    train = load_dataset(config.dataset, "train", validation_size=0, subset=config.subset, **data)
    test = load_dataset(config.dataset, "test", subset=config.test_images, **data)
    train_images, test_images = train.images.to(device), test.images.to(device)  # uint8
    dims = math.prod(train.image_shape)

    model = VAE(config, train.image_shape).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    batches = torch.Generator(device=device).manual_seed(config.seed)
    held_out = test_images[: config.eval_batch_size]  # a fixed batch to follow training on
    history = []
    window_loss, window_kl, window_steps = 0.0, 0.0, 0
    start = time.perf_counter()
    for step in range(config.steps + 1):
        if step > 0:
            index = torch.randint(
                len(train_images), (config.batch_size,), generator=batches, device=device
            )
            loss, kl = model.loss(train_images[index])
            optimizer.zero_grad(set_to_none=True)
            loss.mean().backward()
            optimizer.step()
            window_loss, window_kl = window_loss + loss.mean().item(), window_kl + kl.mean().item()
            window_steps += 1
        if step % config.log_every == 0 or step == config.steps:
            # the same test images and the same draws every time: comparable across steps
            test_batch = held_out_neg_elbo(model, held_out, config.seed)
            record = {"step": step, "test_batch_neg_elbo_bits_per_dim": test_batch}
            if window_steps:  # means over the training steps since the last record
                record["train_neg_elbo_bits_per_dim"] = bits_per_dim(
                    -window_loss / window_steps, dims
                )
                record["train_kl_bits_per_dim"] = -bits_per_dim(window_kl / window_steps, dims)
            history.append(record)
            line = _log_line(config.likelihood, record, time.perf_counter() - start)
            console.print(line, soft_wrap=True)
            window_loss, window_kl, window_steps = 0.0, 0.0, 0
    train_seconds = time.perf_counter() - start

    draws = torch.Generator(device=device).manual_seed(config.seed + 1)
    start = time.perf_counter()
    estimates = estimate_log_likelihood(model, test_images, config, draws)
    eval_seconds = time.perf_counter() - start

    out = Path(config.out)
    grid = save_image_grid(
        image_rows(model, test_images, 8, draws).cpu(),
        out / f"vae-{config.likelihood}.png",
        config.num_bits,
        nrow=8,
    )
    results = {
        "config": dataclasses.asdict(config),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "test_images": len(test_images),
        **estimates,
        "history": history,
        "image_grid": str(grid),
    }
    results["results_json"] = str(out / f"vae-{config.likelihood}.json")
    Path(results["results_json"]).write_text(json.dumps(results, indent=2) + "\n")
    return results


def results_table(results: list[dict[str, Any]]) -> Table:
    """One row per run: the likelihood, its training and its test bounds in bits/dim."""
    config = results[0]["config"]
    table = Table(
        title=f"VAE decoders on {config['dataset']}: test bits/dim on {results[0]['test_images']} "
        "images (lower is better)"
    )
    table.add_column("likelihood")
    k = config["iw_samples"]
    for name in ("parameters", "train steps", "-ELBO", f"IWAE-{k}", "KL", "time"):
        table.add_column(name, justify="right")
    for r in results:
        table.add_row(
            r["config"]["likelihood"],
            f"{r['num_parameters']:,}",
            str(r["config"]["steps"]),
            f"{r['test_elbo_bits_per_dim']:.4f}",
            f"{r['test_iwae_bits_per_dim']:.4f}",
            f"{r['test_kl_bits_per_dim']:.4f}",
            f"{r['train_seconds'] + r['eval_seconds']:.0f} s",
        )
    return table


def parse_args(argv: list[str] | None = None) -> list[VAEConfig]:
    """Command-line options -> one ``VAEConfig`` per requested likelihood."""
    d = VAEConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--likelihood",
        nargs="+",
        choices=LIKELIHOODS,
        default=list(LIKELIHOODS),
        help="decoder likelihood(s), trained one after the other (default: both)",
    )
    p.add_argument("--steps", type=int, default=d.steps, help="training steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--latent-dim", type=int, default=d.latent_dim)
    p.add_argument("--hidden", type=int, default=d.hidden, help="channels of the widest conv")
    p.add_argument("--num-mixtures", type=int, default=d.num_mixtures, help="K, for dmol")
    p.add_argument(
        "--iw-samples",
        type=int,
        default=d.iw_samples,
        help="k of the importance-weighted test estimate",
    )
    p.add_argument(
        "--test-images", type=int, default=d.test_images, help="score the first N test images"
    )
    p.add_argument(
        "--subset", type=int, default=d.subset, help="train on the first N training images"
    )
    p.add_argument("--num-bits", type=int, default=d.num_bits, help="bit depth of the pixels")
    p.add_argument("--dataset", default=d.dataset)
    p.add_argument("--data-dir", default=d.data_dir, help="where to look for the data first")
    p.add_argument("--out", default=d.out, help="folder for the image grids and results")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    args = vars(p.parse_args(argv))
    likelihoods = args.pop("likelihood")
    return [VAEConfig(likelihood=name, **args) for name in likelihoods]


def main(argv: list[str] | None = None) -> None:
    console = Console()
    results = [run(config, console) for config in parse_args(argv)]
    console.print(results_table(results))
    for r in results:
        files = f"{r['config']['likelihood']}: {r['image_grid']}, {r['results_json']}"
        console.print(Text(files), soft_wrap=True)


if __name__ == "__main__":
    main()
