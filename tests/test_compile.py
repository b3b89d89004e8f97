"""``torch.compile`` of the training loss: one graph, no recompiles, the same numbers.

Parametrized over ``list_blocks()`` and ``list_likelihoods()``: a newly registered block or
head is held to compiling whole with no new test. A block that declares ``graph_breaks``
(see ``register_block``) is an expected failure named by its reason, and strict: once it
compiles whole, the stale declaration fails the test.

Graphs are traced with ``aot_eager`` (dynamo, then AOT autograd's forward and backward
graphs, run without code generation), which breaks and recompiles exactly where inductor
would, in a fraction of the time.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend
from torch.distributions import Distribution

from pixelcnnpp.autoregressive import (
    PixelCNNConfig,
    PixelCNNPP,
    block_graph_breaks,
    list_blocks,
    register_block,
)
from pixelcnnpp.likelihoods import list_likelihoods

IMAGE = (2, 5, 6)  # two channels (dmol couples them), odd sizes, two resolutions
NUM_BITS = 3  # few levels: a small softmax head
NUM_CLASSES = 3  # class-conditional, so that each block's conditioning is traced too


@pytest.fixture(autouse=True)
def distribution_validation():
    """Dynamo's first use turns torch.distributions' argument validation off for the whole
    process (``Distribution.set_default_validate_args(False)``, torch 2.13); put it back so
    that later tests see the default."""
    default = Distribution._validate_args
    yield
    Distribution.set_default_validate_args(default)


def _blocks() -> list:
    params = []
    for name in list_blocks():
        reason = block_graph_breaks(name)
        marks = [pytest.mark.xfail(strict=True, reason=f"{name}: {reason}")] if reason else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def _likelihoods() -> list:
    return [pytest.param(name, id=name) for name in list_likelihoods()]


def tiny_model(block: str, likelihood: str, dropout: float = 0.0) -> PixelCNNPP:
    kwargs = {"num_mixtures": 2} if likelihood == "dmol" else {}
    config = PixelCNNConfig(
        image_shape=IMAGE,
        num_bits=NUM_BITS,
        num_filters=4,
        num_resnet=1,
        num_stages=2,
        dropout=dropout,
        block=block,
        likelihood=likelihood,
        likelihood_kwargs=kwargs,
        num_classes=NUM_CLASSES,
    )
    torch.manual_seed(0)
    return PixelCNNPP(config).train()


def batch(seed: int, n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2**NUM_BITS, (n, *IMAGE), generator=gen)
    return x, torch.randint(0, NUM_CLASSES, (n,), generator=gen)


def compile_one_graph(model: PixelCNNPP) -> tuple[object, CompileCounterWithBackend]:
    """The compiled training loss, whole (``fullgraph=True`` raises at a break), counted."""
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    return model.compiled_nll(backend=counter, fullgraph=True), counter


def gradients(model: PixelCNNPP, loss: torch.Tensor) -> list[torch.Tensor]:
    return torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])


@pytest.mark.parametrize("likelihood", _likelihoods())
@pytest.mark.parametrize("block", _blocks())
def test_training_loss_compiles_to_one_graph_with_eager_numbers(block, likelihood):
    model = tiny_model(block, likelihood)
    nll, counter = compile_one_graph(model)
    for seed in (0, 1):  # a second batch of the same shape reuses the graph
        x, labels = batch(seed)
        compiled = nll(x, labels)
        eager = model.nll(x, labels)
        torch.testing.assert_close(compiled, eager)
        for g_compiled, g_eager in zip(
            gradients(model, compiled.mean()), gradients(model, eager.mean()), strict=True
        ):
            torch.testing.assert_close(g_compiled, g_eager)
    assert counter.frame_count == 1, f"{counter.frame_count} graphs compiled, expected 1"
    assert counter.op_count > 0


@pytest.mark.parametrize("likelihood", _likelihoods())
@pytest.mark.parametrize("block", _blocks())
def test_training_loop_settings_compile_to_one_graph(block, likelihood):
    """What ``pixelcnn train --compile`` combines: dropout in training mode, the channels_last
    layout, bfloat16 autocast (the head leaving it for float32), all at once."""
    model = tiny_model(block, likelihood, dropout=0.5).to(memory_format=torch.channels_last)
    nll, counter = compile_one_graph(model)
    for seed in (0, 1):
        x, labels = batch(seed)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nll(x, labels).float().mean()
        loss.backward()
        assert torch.isfinite(loss)
    assert counter.frame_count == 1, f"{counter.frame_count} graphs compiled, expected 1"
    weight = model.u_init.conv.parametrizations.weight.original1
    assert weight.grad.is_contiguous(memory_format=torch.channels_last)


class BreakingBlock(nn.Module):
    """A causal 1x1 block with a graph break (standing for any call dynamo cannot trace)."""

    def __init__(self, channels, stream, skip_channels=0, cond_dim=None):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x, skip=None, cond=None):
        torch._dynamo.graph_break()
        return x + self.conv(x)


def test_an_undeclared_graph_break_fails_the_one_graph_check(registries):
    register_block("breaking", BreakingBlock)
    assert block_graph_breaks("breaking") is None
    nll, _ = compile_one_graph(tiny_model("breaking", "softmax"))
    with pytest.raises(torch._dynamo.exc.Unsupported):
        nll(*batch(0))


def test_a_declared_graph_break_compiles_in_pieces(registries):
    reason = "calls code dynamo cannot trace"
    register_block("breaking", BreakingBlock, graph_breaks=reason)
    assert block_graph_breaks("breaking") == reason
    model = tiny_model("breaking", "softmax")
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    nll = model.compiled_nll(backend=counter)  # fullgraph=False, from the declaration
    x, labels = batch(0)
    torch.testing.assert_close(nll(x, labels), model.nll(x, labels))
    assert counter.frame_count > 1


def test_a_plugin_declares_graph_breaks_on_its_factory(registries):
    class PluginBlock(BreakingBlock):
        graph_breaks = "reads a value on the host"

    register_block("plugin_block", PluginBlock)
    assert block_graph_breaks("plugin_block") == "reads a value on the host"


@pytest.mark.parametrize("reason", ["", 3, b"why"])
def test_graph_breaks_must_be_a_reason(registries, reason):
    with pytest.raises(ValueError, match="graph_breaks must be None or a reason"):
        register_block("bad_declaration", BreakingBlock, graph_breaks=reason)
    assert "bad_declaration" not in list_blocks()


def test_compiling_keeps_distribution_validation_on():
    """torch.compile's first use turns torch.distributions' validation off process-wide;
    after ``compiled_nll`` a distribution built by the user still rejects bad pixels. Run in
    a fresh interpreter, where the compile really is the first."""
    script = """
import torch
from pixelcnnpp.autoregressive import PixelCNNConfig, PixelCNNPP
from pixelcnnpp.likelihoods import PixelSoftmax
model = PixelCNNPP(PixelCNNConfig(image_shape=(1, 2, 2), num_bits=2, num_filters=2,
                                  num_resnet=0, num_stages=1, likelihood="softmax"))
model.compiled_nll(backend="eager")
d = PixelSoftmax(torch.zeros(1, 1, 4, 2, 2))
try:
    d.log_prob(torch.full((1, 1, 2, 2), 7))
except ValueError as error:
    print("rejected:", error)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.startswith("rejected:"), done.stdout + done.stderr


def test_inductor_on_cpu_keeps_the_nchw_layout(monkeypatch):
    """An NCHW model compiled by inductor on CPU asks it not to move the convolutions to
    channels_last; a channels_last model, another backend, or the user's own mode or options
    are left as given."""
    seen = []
    monkeypatch.setattr(torch, "compile", lambda f, **options: seen.append(options) or f)
    model = tiny_model("gated_resnet", "softmax")
    model.compiled_nll()
    assert seen[-1]["options"] == {"layout_optimization": False}
    model.compiled_nll(backend="aot_eager")
    assert "options" not in seen[-1]
    model.compiled_nll(mode="max-autotune")
    assert "options" not in seen[-1]
    model.compiled_nll(options={"max_autotune": True})
    assert seen[-1]["options"] == {"max_autotune": True}
    model.to(memory_format=torch.channels_last).compiled_nll()
    assert "options" not in seen[-1]
