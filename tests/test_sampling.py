"""Sampling from a PixelCNN++: naive and cached sampling draw the same images from the same
generator, in range, reproducibly; blocks without ``incremental_context`` fall back to naive;
bad arguments are refused; the cached sampler keeps a fixed number of rows per layer.

Runs in float64 (``model.double()``) so that the two methods' different summation orders
cannot move a draw across a bin edge.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from pixelcnnpp.autoregressive import PixelCNNConfig, PixelCNNPP, ShiftedConv2d, list_blocks
from pixelcnnpp.autoregressive import sampling as sampling_module
from pixelcnnpp.autoregressive.blocks import BLOCKS, GatedResnet

DTYPE = torch.float64

SAMPLING_CASES = [
    # image_shape, num_stages, num_resnet, likelihood, num_bits, num_classes, cond_dim, T, n
    ((1, 5, 7), 3, 1, "dmol", 8, None, None, 1.0, 3),
    ((3, 7, 3), 2, 0, "softmax", 3, None, None, 0.7, 1),
    ((2, 1, 1), 3, 1, "dmol", 4, 3, None, 1.0, 3),
    ((3, 3, 8), 1, 2, "dmol", 5, None, 2, 0.7, 3),
    ((2, 4, 5), 2, 2, "softmax", 2, 2, 3, 1.0, 1),
    ((3, 6, 6), 3, 1, "dmol", 8, 4, None, 0.7, 3),
    ((1, 8, 1), 3, 1, "softmax", 1, None, 2, 0.7, 3),
]


def make(shape, stages, resnet, likelihood, bits, classes, cond_dim, seed=0, **kwargs):
    config = PixelCNNConfig(
        image_shape=shape,
        num_bits=bits,
        likelihood=likelihood,
        likelihood_kwargs={"num_mixtures": 3} if likelihood == "dmol" else {},
        num_filters=6,
        num_resnet=resnet,
        num_stages=stages,
        num_classes=classes,
        cond_dim=cond_dim,
        **kwargs,
    )
    torch.manual_seed(seed)
    model = PixelCNNPP(config).double()
    # Strong dependencies between pixels, so a sampler that conditions wrongly shows.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=DTYPE) * 0.5)
    return model


def conditioning(model, n, seed=1):
    config = model.config
    gen = torch.Generator().manual_seed(seed)
    labels = (
        torch.randint(0, config.num_classes, (n,), generator=gen) if config.num_classes else None
    )
    cond = torch.randn(n, config.cond_dim, generator=gen, dtype=DTYPE) if config.cond_dim else None
    return labels, cond


def draw(model, n, method, seed=2, temperature=1.0, **kwargs):
    labels, cond = conditioning(model, n)
    gen = torch.Generator().manual_seed(seed)
    return model.sample(
        n, labels, cond, temperature=temperature, method=method, generator=gen, **kwargs
    )


def case_id(case):
    shape, stages, resnet, likelihood, bits, classes, cond_dim, t, n = case
    extra = ("-labels" if classes else "") + ("-cond" if cond_dim else "")
    return f"{'x'.join(map(str, shape))}-s{stages}r{resnet}-{likelihood}{bits}{extra}-T{t}-n{n}"


@pytest.mark.parametrize("block", list_blocks())
@pytest.mark.parametrize("case", SAMPLING_CASES, ids=[case_id(c) for c in SAMPLING_CASES])
def test_cached_and_naive_sampling_draw_identical_images(case, block):
    *build, temperature, n = case
    model = make(*build, block=block)
    naive = draw(model, n, "naive", temperature=temperature)
    with warnings.catch_warnings():
        if not sampling_module.unsupported_blocks(model):  # really cached: no fallback
            warnings.simplefilter("error")
        cached = draw(model, n, "cached", temperature=temperature)
    c, h, w = model.config.image_shape
    for x in (naive, cached):
        assert x.shape == (n, c, h, w)
        assert x.dtype == torch.long
        assert x.min() >= 0 and x.max() <= 2**model.config.num_bits - 1
    assert torch.equal(naive, cached), (naive != cached).nonzero()[:5].tolist()


def test_samples_follow_the_conditioning():
    """Different labels give different images from the same generator (the sampler passes
    the conditioning through in both methods)."""
    model = make((1, 4, 4), 2, 1, "softmax", 4, 3, None)
    images = {}
    for method in ("naive", "cached"):
        for label in (0, 2):
            gen = torch.Generator().manual_seed(0)
            labels = torch.full((3,), label)
            images[method, label] = model.sample(3, labels, method=method, generator=gen)
    assert torch.equal(images["naive", 0], images["cached", 0])
    assert torch.equal(images["naive", 2], images["cached", 2])
    assert not torch.equal(images["naive", 0], images["naive", 2])


@pytest.mark.parametrize("method", ["cached", "naive"])
def test_sampling_is_reproducible_with_a_generator(method):
    model = make((2, 4, 5), 2, 1, "dmol", 8, None, None)
    a, b = draw(model, 3, method, seed=5), draw(model, 3, method, seed=5)
    assert torch.equal(a, b)
    assert not torch.equal(a, draw(model, 3, method, seed=6))


def test_temperature_changes_the_draw():
    model = make((1, 4, 4), 2, 1, "dmol", 8, None, None)
    for method in ("naive", "cached"):
        assert not torch.equal(
            draw(model, 3, method, temperature=1.0), draw(model, 3, method, temperature=0.5)
        )


@pytest.mark.parametrize("method", ["cached", "naive"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_sampling_restores_the_training_flag(method, training):
    model = make((1, 3, 3), 2, 1, "softmax", 2, None, None, dropout=0.5).train(training)
    draw(model, 2, method)
    assert all(m.training is training for m in model.modules())


def test_dropout_is_off_while_sampling():
    """A model in training mode samples as in eval mode (same images from the same seed)."""
    model = make((1, 3, 4), 2, 1, "dmol", 8, None, None, dropout=0.5)
    for method in ("naive", "cached"):
        train = draw(model.train(), 2, method)
        assert torch.equal(train, draw(model.eval(), 2, method))


@pytest.mark.parametrize("method", ["cached", "naive"])
def test_progress_is_reported_once_per_row(method):
    model = make((1, 3, 2), 2, 1, "softmax", 2, None, None)
    calls = []
    draw(model, 1, method, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


# -- bad arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "fast"}, r"method must be one of \('cached', 'naive'\), got 'fast'"),
        ({"n": 0}, "n must be a positive integer, got 0"),
        ({"n": -2}, "n must be a positive integer, got -2"),
        ({"n": 2.0}, "n must be a positive integer, got 2.0"),
        ({"n": True}, "n must be a positive integer, got True"),
        ({"temperature": 0.0}, "temperature must be a finite number > 0, got 0.0"),
        ({"temperature": -1.0}, "temperature must be a finite number > 0"),
        ({"temperature": float("inf")}, "temperature must be a finite number > 0"),
        ({"temperature": float("nan")}, "temperature must be a finite number > 0"),
        ({"labels": torch.tensor([0])}, r"labels must be an integer tensor of shape \(2,\)"),
        ({"labels": None}, "labels .* are required"),
        ({"cond": torch.zeros(2, 3)}, r"cond must be a float tensor of shape \(2, 2\)"),
    ],
)
def test_bad_sampling_arguments_raise(kwargs, match):
    model = make((1, 2, 2), 1, 0, "softmax", 2, 3, 2)
    args = {"n": 2, "labels": torch.tensor([0, 1]), "cond": torch.zeros(2, 2, dtype=DTYPE)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        model.sample(**args)


# -- fallback for blocks without incremental_context --------------------------------------------


class ShiftedResidualBlock(nn.Module):
    """A causal block that does not declare ``incremental_context``."""

    def __init__(self, channels, stream, skip_channels=0, cond_dim=None, **kwargs):
        super().__init__()
        kind, kernel = ("down", (2, 3)) if stream == "u" else ("down_right", (2, 2))
        self.conv = ShiftedConv2d(channels, channels, kernel, kind)
        self.skip = nn.Conv2d(skip_channels, channels, 1) if skip_channels else None
        self.cond = nn.Linear(cond_dim, channels) if cond_dim else None

    def forward(self, x, skip=None, cond=None):
        out = x + torch.tanh(self.conv(x))
        if self.skip is not None:
            out = out + self.skip(skip)
        if self.cond is not None:
            out = out + self.cond(cond)[:, :, None, None]
        return out


def test_blocks_without_incremental_context_fall_back_to_naive(registries):
    BLOCKS.register("test_no_context", ShiftedResidualBlock)
    model = make((2, 4, 3), 2, 1, "dmol", 8, 2, None, block="test_no_context")
    with pytest.warns(UserWarning, match=r"ShiftedResidualBlock does not.*method='naive'"):
        cached = draw(model, 2, "cached")
    assert torch.equal(cached, draw(model, 2, "naive"))


def test_one_block_without_incremental_context_is_enough_to_fall_back(monkeypatch):
    model = make((1, 3, 3), 2, 1, "softmax", 2, None, None)
    monkeypatch.delattr(model.down[0]["ul"][0], "incremental_context")
    with pytest.warns(UserWarning, match="GatedResnet does not"):
        cached = draw(model, 2, "cached")
    assert torch.equal(cached, draw(model, 2, "naive"))


def test_cached_sampling_with_capable_blocks_does_not_warn(recwarn):
    draw(make((1, 3, 3), 2, 1, "softmax", 2, None, None), 1, "cached")
    assert not [w for w in recwarn if "incremental_context" in str(w.message)]


class DeepBlock(nn.Module):
    """Three stacked shifted convs: reaches 3 rows up, more than the sampler keeps by default."""

    def __init__(self, channels, stream, skip_channels=0, cond_dim=None, **kwargs):
        super().__init__()
        kind, kernel = ("down", (2, 3)) if stream == "u" else ("down_right", (2, 2))
        self.convs = nn.ModuleList(
            ShiftedConv2d(channels, channels, kernel, kind) for _ in range(3)
        )
        self.skip = nn.Conv2d(skip_channels, channels, 1) if skip_channels else None
        self.incremental_context = (3, 3, 3) if stream == "u" else (3, 3, 0)

    def forward(self, x, skip=None, cond=None):
        h = x
        for conv in self.convs:
            h = torch.tanh(conv(h))
        return x + (h if self.skip is None else h + self.skip(skip))


@pytest.mark.parametrize(("shape", "stages"), [((2, 6, 7), 3), ((1, 9, 5), 2), ((3, 2, 2), 3)])
def test_cached_sampling_keeps_enough_rows_for_a_deeper_block(
    monkeypatch, registries, shape, stages
):
    BLOCKS.register("test_deep", DeepBlock)
    buffers = _record_row_buffers(monkeypatch)
    model = make(shape, stages, 2, "dmol", 3, None, None, block="test_deep")
    naive, cached = draw(model, 2, "naive"), draw(model, 2, "cached")
    assert torch.equal(naive, cached)
    assert {b.keep for b in buffers if b.buf.shape[-1] == model.config.num_filters} == {4}


# -- memory of the cached sampler ---------------------------------------------------------------


def _record_row_buffers(monkeypatch):
    buffers = []
    init = sampling_module._Rows.__init__

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        buffers.append(self)

    monkeypatch.setattr(sampling_module._Rows, "__init__", recording_init)
    return buffers


@pytest.mark.parametrize("height", [4, 12])
def test_cached_sampler_keeps_a_fixed_number_of_rows_per_layer(monkeypatch, height):
    """Every buffer is ``[B, K, 1 + W_s, F]`` (channels last, a padding column on the left)
    with ``K`` fixed (3: the most rows any layer reads) and ``W_s`` the width at its level; the
    set of buffers does not grow with the height, so memory per layer is proportional to the
    width, not to the image."""
    buffers = _record_row_buffers(monkeypatch)
    model = make((1, height, 7), 3, 1, "softmax", 2, None, None)
    draw(model, 2, "cached")
    shapes = sorted(tuple(b.buf.shape) for b in buffers)
    f, widths = model.config.num_filters, {7, 4, 2}
    image_buffer = (2, 3, 1 + 7, 2)  # the scaled pixels and the channel of ones
    assert image_buffer in shapes
    for shape in shapes:
        if shape == image_buffer:
            continue
        batch, rows, width, channels = shape
        assert (batch, rows, channels) == (2, 3, f)
        assert width - 1 in widths
    # Per level and stream: the up-pass input and 1 block output, then the down-pass input and
    # 2 block outputs; the lowest level's down pass starts from its up pass and has 1 block.
    per_width = {w: sum(1 for s in shapes if s[3] == f and s[2] == 1 + w) for w in widths}
    assert per_width == {7: 2 * 5, 4: 2 * 5, 2: 2 * 3}
    assert all(b.buf.shape[1] == b.keep == 3 for b in buffers)


def test_cached_sampler_buffers_do_not_depend_on_height(monkeypatch):
    shapes = []
    for height in (3, 9):
        buffers = _record_row_buffers(monkeypatch)
        draw(make((1, height, 5), 2, 1, "dmol", 8, None, None), 1, "cached")
        shapes.append(sorted(tuple(b.buf.shape) for b in buffers))
        monkeypatch.undo()
    assert shapes[0] == shapes[1]


# -- the two ways a block is evaluated -------------------------------------------------------------


class SubclassedGatedResnet(GatedResnet):
    """Same computation as ``gated_resnet``, but its own type: the sampler runs its forward on
    windows instead of evaluating it from its weights."""


def _count_layers(monkeypatch):
    counts = {}
    for name in ("_GatedResnetU", "_GatedResnetUL", "_WindowU", "_WindowUL"):
        cls = getattr(sampling_module, name)
        init = cls.__init__

        def counting_init(self, *args, _init=init, _name=name, **kwargs):
            counts[_name] = counts.get(_name, 0) + 1
            _init(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", counting_init)
    return counts


@pytest.mark.parametrize("nonlinearity", ["concat_elu", "elu"])
def test_gated_resnet_is_evaluated_from_its_weights(monkeypatch, nonlinearity):
    counts = _count_layers(monkeypatch)
    model = make((2, 5, 6), 3, 1, "dmol", 8, 2, 2, nonlinearity=nonlinearity)
    naive, cached = draw(model, 2, "naive"), draw(model, 2, "cached")
    assert torch.equal(naive, cached)
    blocks = sum(len(s["u"]) for s in (*model.up, *model.down))
    assert counts == {"_GatedResnetU": blocks, "_GatedResnetUL": blocks}


def test_other_blocks_run_their_own_forward_on_windows(monkeypatch, registries):
    BLOCKS.register("test_subclassed_gated_resnet", SubclassedGatedResnet)
    counts = _count_layers(monkeypatch)
    model = make((2, 5, 6), 3, 1, "dmol", 8, 2, None, block="test_subclassed_gated_resnet")
    naive, cached = draw(model, 2, "naive"), draw(model, 2, "cached")
    assert torch.equal(naive, cached)
    blocks = sum(len(s["u"]) for s in (*model.up, *model.down))
    assert counts == {"_WindowU": blocks, "_WindowUL": blocks}
