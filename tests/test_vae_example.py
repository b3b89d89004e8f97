"""docs/examples/vae.py: the mixture (and the softmax) as a VAE decoder, end to end.

Both decoders train for a few steps on a Fashion-MNIST subset; the ELBO must be finite and
improve, the importance-weighted estimate must be at least as tight as the ELBO, and the image
grid must be written. The bound identities are also checked exactly on a tiny untrained model.
"""

from __future__ import annotations

import importlib.util
import math
import re
import shlex
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from rich.console import Console

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "vae.py"
FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
needs_fashion = pytest.mark.skipif(
    not FASHION.exists(),
    reason="the real Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)",
)


def _load_example():
    spec = importlib.util.spec_from_file_location("vae_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


vae = _load_example()


def tiny_config(**changes) -> vae.VAEConfig:
    settings = dict(
        steps=40,
        batch_size=32,
        lr=3e-3,
        latent_dim=8,
        hidden=16,
        num_mixtures=3,
        iw_samples=8,
        test_images=48,
        eval_batch_size=48,
        subset=2000,
        log_every=20,
        seed=0,
        device="cpu",
    )
    return vae.VAEConfig(**{**settings, **changes})


@pytest.fixture(scope="module", params=vae.LIKELIHOODS)
def results(request, tmp_path_factory) -> dict:
    if not FASHION.exists():
        pytest.skip(
            "the real Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
        )
    out = tmp_path_factory.mktemp(f"vae-{request.param}")
    return vae.run(tiny_config(likelihood=request.param, out=str(out)), Console(quiet=True))


@needs_fashion
def test_elbo_is_finite_and_improves_with_training(results):
    history = results["history"]
    assert [r["step"] for r in history] == [0, 20, 40]
    # the same test images with the same draws: the untrained model against the trained one
    values = [r["test_batch_neg_elbo_bits_per_dim"] for r in history]
    assert all(math.isfinite(v) for v in values), values
    assert values[-1] < values[0] - 0.2, values
    train = [r["train_neg_elbo_bits_per_dim"] for r in history[1:]]
    assert all(math.isfinite(v) for v in train), train
    for key in ("test_elbo_bits_per_dim", "test_iwae_bits_per_dim", "test_kl_bits_per_dim"):
        assert math.isfinite(results[key]), (key, results[key])
    assert 0.0 < results["test_iwae_bits_per_dim"] < 8.0  # better than uniform over 256 levels
    assert results["test_kl_bits_per_dim"] >= 0.0


@needs_fashion
def test_importance_weighted_estimate_is_tighter_than_the_elbo(results):
    # Both come from the same draws, so IWAE-k >= ELBO holds for every image (Jensen), not
    # just in expectation: in bits/dim (negated), the IWAE value is the smaller.
    assert results["test_iwae_bits_per_dim"] <= results["test_elbo_bits_per_dim"] + 1e-9


@needs_fashion
def test_image_grid_and_results_are_written(results):
    grid = Path(results["image_grid"])
    assert grid.is_file()
    with Image.open(grid) as image:
        # 4 rows (test, reconstructions, prior modes, prior samples) of 8 images 28x28, 2 px
        # apart, scaled 4x
        assert image.size == ((8 * 30 - 2) * 4, (4 * 30 - 2) * 4)
    assert Path(results["results_json"]).is_file()
    assert results["test_images"] == 48


@needs_fashion
def test_results_table_has_one_row_per_run(results):
    table = vae.results_table([results, results])
    assert table.row_count == 2
    assert any(str(column.header) == "IWAE-8" for column in table.columns)


@pytest.mark.parametrize("likelihood", vae.LIKELIHOODS)
def test_one_sample_iwae_equals_the_elbo_and_more_samples_bound_it(likelihood):
    torch.manual_seed(0)
    config = tiny_config(likelihood=likelihood)
    model = vae.VAE(config, (1, 8, 8)).eval()
    x = torch.randint(0, 256, (5, 1, 8, 8))
    g = torch.Generator().manual_seed(1)
    elbo, iwae = vae.elbo_and_iwae(vae.log_importance_weights(model, x, 1, g))
    assert torch.equal(elbo, iwae)
    log_w = vae.log_importance_weights(model, x, 16, g)
    assert log_w.shape == (16, 5) and torch.isfinite(log_w).all()
    elbo, iwae = vae.elbo_and_iwae(log_w)
    assert (iwae >= elbo).all()


def test_elbo_estimates_agree_with_the_training_loss():
    # mean_s log w_s (KL estimated by sampling) and -loss (KL in closed form) are two
    # estimates of the same ELBO: over many draws they agree.
    torch.manual_seed(0)
    model = vae.VAE(tiny_config(likelihood="dmol"), (1, 8, 8))
    x = torch.randint(0, 256, (3, 1, 8, 8)).repeat(4000, 1, 1, 1)  # 4000 draws of each image
    g = torch.Generator().manual_seed(2)
    elbo = vae.log_importance_weights(model, x, 1, g)[0].view(4000, 3).mean(0)
    with torch.no_grad():
        loss = model.loss(x, g)[0].view(4000, 3).mean(0)
    torch.testing.assert_close(elbo, -loss, rtol=1e-4, atol=0.0)


def test_command_line_makes_one_config_per_likelihood():
    configs = vae.parse_args(
        ["--likelihood", "softmax", "dmol", "--steps", "5", "--iw-samples", "3", "--subset", "100"]
    )
    assert [c.likelihood for c in configs] == ["softmax", "dmol"]
    assert {(c.steps, c.iw_samples, c.subset) for c in configs} == {(5, 3, 100)}
    assert [c.likelihood for c in vae.parse_args([])] == list(vae.LIKELIHOODS)


def test_the_commands_on_the_docs_page_parse():
    page = EXAMPLE.parents[1] / "vae.md"
    bash = re.findall(r"^```bash\n(.*?)^```", page.read_text(), re.MULTILINE | re.DOTALL)
    lines = [line for block in bash for line in block.splitlines() if "examples/vae.py" in line]
    assert len(lines) >= 3, lines
    for line in lines:
        words = shlex.split(line, comments=True)
        args = words[words.index("docs/examples/vae.py") + 1 :]
        assert vae.parse_args(args), line  # argparse exits on an unknown option


def test_bad_settings_are_refused_with_the_name():
    with pytest.raises(ValueError, match="likelihood"):
        vae.VAEConfig(likelihood="gaussian")
    with pytest.raises(ValueError, match="iw_samples"):
        vae.VAEConfig(iw_samples=0)
