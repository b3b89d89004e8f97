"""The PixelCNN++ model: its config, output distribution, causality, parameter count,
data-dependent initialisation, save/rebuild, and the errors bad inputs get.

Models are tiny (4-8 filters). Where a test needs the network's dependencies to be large, its
parameters are redrawn from N(0, 0.5): the default weight-norm init makes them tiny, and a
leak or a missing dependency could then hide under the tolerances.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from pixelcnnpp.autoregressive import (
    CausalityError,
    PixelCNNConfig,
    PixelCNNPP,
    check_causality,
    list_blocks,
)
from pixelcnnpp.likelihoods import list_likelihoods, scale_pixels

DTYPE = torch.float64


def tiny(**kwargs) -> PixelCNNConfig:
    defaults = dict(image_shape=(1, 4, 4), num_filters=4, num_resnet=1, num_stages=2)
    return PixelCNNConfig(**{**defaults, **kwargs})


def randomized(model: nn.Module, seed: int = 0, scale: float = 0.5) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
    return model


def conditioning(config: PixelCNNConfig, batch: int, seed: int = 0):
    """``(labels, cond)`` the config asks for, or ``None``s."""
    gen = torch.Generator().manual_seed(seed)
    labels = (
        torch.randint(0, config.num_classes, (batch,), generator=gen)
        if config.num_classes
        else None
    )
    cond = torch.randn(batch, config.cond_dim, generator=gen) if config.cond_dim else None
    return labels, cond


def pixels(config: PixelCNNConfig, batch: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2**config.num_bits, (batch, *config.image_shape), generator=gen)


# -- config -------------------------------------------------------------------------------------


def test_config_defaults_are_the_papers():
    c = PixelCNNConfig()
    assert c.image_shape == (3, 32, 32)
    assert c.num_bits == 8
    assert c.likelihood == "dmol"
    assert c.num_filters == 160
    assert c.num_resnet == 5
    assert c.num_stages == 3
    assert c.dropout == 0.5
    assert c.block == "gated_resnet"
    assert c.block_kwargs == {}
    assert c.nonlinearity == "concat_elu"
    assert c.weight_norm is True
    assert c.num_classes is None and c.cond_dim is None
    # The dmol head defaults to the paper's 10 mixture components.
    model = PixelCNNPP(PixelCNNConfig(num_filters=4, num_resnet=0, num_stages=1))
    assert model.head.num_mixtures == 10
    assert model.head.proj.out_channels == 10 * (1 + 2 * 3 + 3)


INVALID_FIELDS = [
    ("image_shape", (3, 32)),
    ("image_shape", (0, 32, 32)),
    ("image_shape", (3, -1, 32)),
    ("image_shape", (3, 32, 2.5)),
    ("image_shape", "3x32x32"),
    ("num_bits", 0),
    ("num_bits", 17),
    ("num_bits", 8.0),
    ("num_bits", True),
    ("likelihood", None),
    ("likelihood_kwargs", [("num_mixtures", 5)]),
    ("num_filters", 0),
    ("num_filters", 1.5),
    ("num_resnet", -1),
    ("num_stages", 0),
    ("dropout", 1.0),
    ("dropout", -0.1),
    ("dropout", True),
    ("dropout", "0.5"),
    ("block", 3),
    ("block_kwargs", [("num_heads", 2)]),
    ("block_kwargs", {2: "heads"}),
    ("nonlinearity", None),
    ("weight_norm", "yes"),
    ("weight_norm", 1),
    ("num_classes", 0),
    ("num_classes", 2.0),
    ("cond_dim", 0),
    ("cond_dim", True),
]


@pytest.mark.parametrize(("field", "value"), INVALID_FIELDS)
def test_config_rejects_each_invalid_field_naming_it(field, value):
    with pytest.raises(ValueError, match=field) as info:
        PixelCNNConfig(**{field: value})
    message = str(info.value)
    # What came: the value itself, the offending entry of image_shape, or the value's type.
    assert "got" in message
    shown = (repr(value), type(value).__name__, *map(repr, value if field == "image_shape" else ()))
    assert any(s in message.split("got", 1)[1] for s in shown), message


def test_config_fields_all_have_invalid_cases():
    """Every field of the config is covered by ``INVALID_FIELDS`` (a new field needs a case)."""
    covered = {field for field, _ in INVALID_FIELDS}
    assert covered == {f.name for f in dataclasses.fields(PixelCNNConfig)}


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"likelihood": "gaussian"}, "unknown likelihood 'gaussian'"),
        ({"likelihood_kwargs": {"mixtures": 3}}, "likelihood 'dmol' does not accept"),
        ({"nonlinearity": "relu"}, "unknown nonlinearity 'relu'"),
        ({"block": "nope"}, "unknown block 'nope'"),
        ({"block_kwargs": {"num_heads": 2}}, "block 'gated_resnet' does not accept 'num_heads'"),
        ({"num_filter": 4}, r"unknown PixelCNNConfig fields \['num_filter'\]"),
    ],
)
def test_model_rejects_unknown_names(override, match):
    with pytest.raises(ValueError, match=match):
        PixelCNNPP(tiny(), **override)


@pytest.mark.parametrize(
    "config",
    [
        PixelCNNConfig(),
        tiny(image_shape=(2, 5, 7), num_classes=3, cond_dim=2, likelihood="softmax", num_bits=3),
        tiny(likelihood_kwargs={"num_mixtures": 2}, weight_norm=False, nonlinearity="elu"),
    ],
)
def test_config_dict_round_trip_through_json(config):
    d = config.to_dict()
    assert json.loads(json.dumps(d)) == d
    back = PixelCNNConfig.from_dict(json.loads(json.dumps(d)))
    assert back == config
    assert isinstance(back.image_shape, tuple)


def test_config_from_dict_rejects_unknown_keys_naming_them():
    d = {**tiny().to_dict(), "num_layers": 3, "lr": 0.1}
    with pytest.raises(ValueError, match=r"unknown PixelCNNConfig fields \['lr', 'num_layers'\]"):
        PixelCNNConfig.from_dict(d)


def test_model_overrides_replace_config_fields():
    model = PixelCNNPP(tiny(), num_filters=6, image_shape=(2, 3, 3))
    assert model.config.num_filters == 6 and model.config.image_shape == (2, 3, 3)
    assert model.u_init.conv.out_channels == 6


# -- forward ------------------------------------------------------------------------------------

FORWARD_CASES = [
    (c, size, likelihood)
    for c in (1, 2, 3)
    for size in ((1, 1), (1, 5), (7, 3))
    for likelihood in list_likelihoods()
]


@pytest.mark.parametrize(("channels", "size", "likelihood"), FORWARD_CASES)
def test_forward_returns_a_distribution_over_the_image(channels, size, likelihood):
    config = tiny(image_shape=(channels, *size), likelihood=likelihood, num_bits=3, num_stages=3)
    model = PixelCNNPP(config)
    x = pixels(config, 2)
    dist = model(x)
    assert dist.batch_shape == (2,)
    assert dist.event_shape == (channels, *size)
    lp = dist.log_prob(x)
    assert lp.shape == (2,) and torch.isfinite(lp).all() and (lp < 0).all()


def test_forward_28x28():
    config = tiny(image_shape=(1, 28, 28), num_stages=3)
    model = PixelCNNPP(config)
    x = pixels(config, 2)
    dist = model(x)
    assert dist.batch_shape == (2,) and dist.event_shape == (1, 28, 28)
    assert torch.isfinite(dist.log_prob(x)).all()


def test_forward_accepts_floats_holding_whole_numbers():
    model = PixelCNNPP(tiny(num_bits=3)).eval()
    x = pixels(model.config, 2)
    torch.testing.assert_close(model(x.float()).log_prob(x), model(x).log_prob(x))


def test_forward_backward_gives_finite_gradients_everywhere():
    config = tiny(image_shape=(3, 5, 5), num_classes=3, cond_dim=2, dropout=0.5)
    model = PixelCNNPP(config).train()
    x = pixels(config, 3)
    labels, cond = conditioning(config, 3)
    (-model(x, labels, cond).log_prob(x).mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(p.grad).all(), name


def test_channels_last_model_runs_its_activations_channels_last_with_the_same_result():
    config = tiny(image_shape=(3, 5, 6), num_filters=6, num_stages=3, num_classes=2)
    reference = randomized(PixelCNNPP(config)).to(DTYPE).eval()
    model = randomized(PixelCNNPP(config)).to(DTYPE).eval()
    model = model.to(memory_format=torch.channels_last)
    layouts = []

    def record(module, args):
        layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))

    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.register_forward_pre_hook(record)
    x = pixels(config, 3)
    labels, _ = conditioning(config, 3)
    expected = reference(x, labels).log_prob(x)
    got = model(x, labels).log_prob(x)
    assert layouts and all(layouts), f"{layouts.count(False)} of {len(layouts)} not channels_last"
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


# -- causality ----------------------------------------------------------------------------------

CAUSALITY_CASES = [
    dict(image_shape=(1, 1, 1), num_stages=3),
    dict(image_shape=(3, 5, 4), num_stages=1, num_resnet=0),
    dict(image_shape=(2, 7, 3), num_stages=2, num_resnet=1, likelihood="softmax", num_bits=2),
    dict(image_shape=(3, 5, 5), num_stages=3, num_resnet=1, num_classes=3),
    dict(image_shape=(2, 3, 6), num_stages=3, num_resnet=0, cond_dim=2, likelihood="softmax"),
    dict(image_shape=(1, 6, 5), num_stages=2, num_resnet=1, num_classes=2, cond_dim=3),
]


@pytest.mark.parametrize("block", list_blocks())
@pytest.mark.parametrize("kwargs", CAUSALITY_CASES, ids=lambda k: str(k["image_shape"]))
def test_model_is_causal(kwargs, block):
    model = randomized(PixelCNNPP(tiny(**kwargs, block=block)).to(DTYPE))
    check_causality(model, batch_size=32)


@pytest.mark.parametrize("kwargs", CAUSALITY_CASES[1:4], ids=lambda k: str(k["image_shape"]))
@pytest.mark.parametrize("block", list_blocks())
def test_model_sees_its_neighbours_and_earlier_channels(block, kwargs):
    """The opposite of a leak: log p of sub-pixel ``(c, i, j)`` moves with the pixel to its left,
    the pixel above, and the earlier channels of its own pixel (a model that ignored its inputs
    would be trivially causal)."""
    model = randomized(PixelCNNPP(tiny(**kwargs, block=block)).to(DTYPE)).eval()
    config = model.config
    c, h, w = config.image_shape
    levels = 2**config.num_bits
    x0 = pixels(config, 1)
    cases = [(ch, i, j) for i in range(h) for j in range(w) for ch in range(c)]
    x = x0.repeat(len(cases) + 1, 1, 1, 1)
    for k, (ch, i, j) in enumerate(cases, start=1):
        x[k, ch, i, j] = (x0[0, ch, i, j] + 1) % levels
    labels, cond = conditioning(config, 1)
    labels = labels.expand(len(x)) if labels is not None else None
    cond = cond.expand(len(x), -1) if cond is not None else None
    with torch.no_grad():
        lpp = model(x, labels, cond).log_prob_pixels(x)
    moved = (lpp[1:] - lpp[:1]).abs() > 1e-9  # [N, C, H, W]
    for k, (ch, i, j) in enumerate(cases):
        if j + 1 < w:
            assert moved[k, :, i, j + 1].all(), f"({i}, {j + 1}) ignores its left neighbour"
        if i + 1 < h:
            assert moved[k, :, i + 1, j].all(), f"({i + 1}, {j}) ignores the pixel above"
        assert moved[k, ch + 1 :, i, j].all(), f"({i}, {j}) ignores channel {ch} of itself"


MODEL_LEAK = re.compile(
    r"output (?:log p\(pixel \((\d+), (\d+)\) channel (\d+)\)|features at \((\d+), (\d+)\)) "
    r"changes when input pixel \((\d+), (\d+)\) channel (\d+)"
)


def _assert_real_leaks(message: str) -> list[tuple]:
    """Every pair the message names is a real violation of the raster order; returns them."""
    pairs = MODEL_LEAK.findall(message)
    assert pairs, message
    for oi, oj, oc, fi, fj, ii, ij, ic in pairs:
        inp = (int(ii), int(ij))
        if oi:
            out, ch = (int(oi), int(oj)), int(oc)
            assert out < inp or (out == inp and ch < int(ic)), (out, ch, inp, ic)
        else:
            assert (int(fi), int(fj)) <= inp
    return pairs


def test_model_with_a_leaking_layer_is_caught():
    """A 3x3 convolution swapped into the last down-pass block of the ``ul`` stream."""
    model = randomized(PixelCNNPP(tiny(image_shape=(2, 4, 5))).to(DTYPE))
    block = model.down[-1]["ul"][0]
    block.conv_in = nn.Conv2d(8, 4, 3, padding=1).to(DTYPE)
    with pytest.raises(CausalityError, match="PixelCNNPP is not causal") as info:
        check_causality(model)
    _assert_real_leaks(str(info.value))


def test_model_whose_features_see_the_current_pixel_is_caught(monkeypatch):
    model = randomized(PixelCNNPP(tiny(image_shape=(1, 3, 3))).to(DTYPE))
    features = model.features

    def peeking(x, h=None):
        return features(x, h) + scale_pixels(x, model.config.num_bits, DTYPE)[:, :1]

    monkeypatch.setattr(model, "features", peeking)
    with pytest.raises(CausalityError) as info:
        check_causality(model)
    pairs = _assert_real_leaks(str(info.value))
    assert ("", "", "", "0", "0", "0", "0", "0") in pairs  # features at (0, 0) see pixel (0, 0)


def test_head_that_sees_a_later_channel_of_the_same_pixel_is_caught(monkeypatch):
    model = randomized(PixelCNNPP(tiny(image_shape=(2, 3, 3))).to(DTYPE))
    head = model.head

    class PeekingHead(nn.Module):
        def forward(self, features, x):
            return head(features + scale_pixels(x, model.config.num_bits, DTYPE)[:, 1:2], x)

    monkeypatch.setattr(model, "head", PeekingHead())
    with pytest.raises(CausalityError) as info:
        check_causality(model)
    pairs = _assert_real_leaks(str(info.value))
    assert ("0", "0", "0", "", "", "0", "0", "1") in pairs  # channel 0 sees channel 1


def test_check_causality_rejects_a_shape_other_than_the_models():
    model = PixelCNNPP(tiny())
    with pytest.raises(ValueError, match="image_shape"):
        check_causality(model, (1, 5, 5))


# -- parameter count ----------------------------------------------------------------------------


def _conv(cin, cout, kh, kw, wn):
    return cin * cout * kh * kw + cout + (cout if wn else 0)  # weight, bias, gain


def expected_parameters(cfg: PixelCNNConfig) -> int:
    """The architecture of the paper counted by hand (gated_resnet blocks)."""
    c = cfg.image_shape[0]
    f, nr, s, wn = cfg.num_filters, cfg.num_resnet, cfg.num_stages, cfg.weight_norm
    d = (cfg.num_classes or 0) + (cfg.cond_dim or 0)
    mult = 2 if cfg.nonlinearity == "concat_elu" else 1

    def gated(stream, skip):
        kh, kw = (2, 3) if stream == "u" else (2, 2)
        n = _conv(mult * f, f, kh, kw, wn) + _conv(mult * f, 2 * f, kh, kw, wn)
        n += _conv(mult * skip, f, 1, 1, wn) if skip else 0
        return n + 2 * f * d

    n = _conv(c + 1, f, 2, 3, wn) + _conv(c + 1, f, 1, 3, wn) + _conv(c + 1, f, 2, 1, wn)
    n += s * nr * (gated("u", 0) + gated("ul", f))
    n += sum((nr + (k > 0)) * (gated("u", f) + gated("ul", 2 * f)) for k in range(s))
    n += 2 * (s - 1) * (_conv(f, f, 2, 3, wn) + _conv(f, f, 2, 2, wn))  # down- and upsampling
    if cfg.likelihood == "dmol":
        k = cfg.likelihood_kwargs.get("num_mixtures", 10)
        outputs = k * (1 + 2 * c + c * (c - 1) // 2)
    else:
        outputs = (c + c * (c - 1) // 2) * 2**cfg.num_bits
    return n + _conv(f, outputs, 1, 1, wn)


@pytest.mark.parametrize(
    "config",
    [
        tiny(),
        tiny(image_shape=(3, 5, 5), num_resnet=2, num_stages=3, num_classes=10, cond_dim=2),
        tiny(likelihood="softmax", num_bits=3, weight_norm=False, nonlinearity="elu"),
        tiny(likelihood_kwargs={"num_mixtures": 3}, num_resnet=0, num_stages=1),
    ],
)
def test_parameter_count_matches_a_hand_count(config):
    assert PixelCNNPP(config).num_parameters == expected_parameters(config)


def test_default_model_has_the_papers_size():
    model = PixelCNNPP(PixelCNNConfig())
    assert model.num_parameters == expected_parameters(PixelCNNConfig())
    assert 53e6 < model.num_parameters < 54e6  # "53M" in the paper's CIFAR-10 setup


# -- data-dependent initialisation --------------------------------------------------------------


def _weight_normed(model):
    return {
        name: m
        for name, m in model.named_modules()
        if parametrize.is_parametrized(m, "weight") and m.bias is not None
    }


def _layer_outputs(model, x, labels, cond):
    outputs = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o, name=name: outputs.setdefault(name, o))
        for name, m in _weight_normed(model).items()
    ]
    try:
        with torch.no_grad():
            model.eval()(x, labels, cond)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


def _channel_stats(out):
    dims = [d for d in range(out.dim()) if d != 1]
    return out.mean(dims), out.var(dims, unbiased=False).sqrt()


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(image_shape=(1, 5, 7), num_stages=2),
        dict(image_shape=(3, 6, 6), num_stages=3, num_classes=3, cond_dim=2, likelihood="softmax"),
    ],
)
def test_initialize_normalizes_every_weight_normed_layer(kwargs, training):
    config = tiny(**kwargs, dropout=0.5)
    torch.manual_seed(0)
    model = PixelCNNPP(config).to(DTYPE)
    x = pixels(config, 16)
    labels, cond = conditioning(config, 16)
    cond = cond.to(DTYPE) if cond is not None else None
    layers = _weight_normed(model)
    before = _layer_outputs(model, x, labels, cond)
    assert any(
        (_channel_stats(out)[1] - layers[name].init_scale).abs().max() > 0.1
        for name, out in before.items()
    ), "the layers are already normalized; the test would prove nothing"

    model.train(training)
    assert model.initialize(x, labels, cond) is model
    assert all(m.training is training for m in model.modules())

    after = _layer_outputs(model, x, labels, cond)
    assert set(after) == set(layers)  # every weight-normed layer ran
    assert {getattr(m, "init_scale", 1.0) for m in layers.values()} == {0.1, 1.0}
    for name, out in after.items():
        mean, std = _channel_stats(out)
        target = getattr(layers[name], "init_scale", 1.0)
        torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-9, rtol=0, msg=name)
        torch.testing.assert_close(std, torch.full_like(std, target), atol=0, rtol=1e-6, msg=name)


def test_initialize_validates_its_inputs():
    model = PixelCNNPP(tiny(num_classes=2))
    with pytest.raises(ValueError, match="labels"):
        model.initialize(pixels(model.config, 2))


# -- save and rebuild ---------------------------------------------------------------------------


def test_state_dict_and_config_rebuild_an_identical_model():
    config = tiny(image_shape=(2, 5, 3), num_classes=3, cond_dim=2, num_resnet=1)
    torch.manual_seed(0)
    model = randomized(PixelCNNPP(config)).eval()
    buffer = io.BytesIO()
    torch.save({"config": config.to_dict(), "model": model.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    torch.manual_seed(1)
    rebuilt = PixelCNNPP(PixelCNNConfig.from_dict(checkpoint["config"])).eval()
    x = pixels(config, 4)
    labels, cond = conditioning(config, 4)
    with torch.no_grad():
        assert not torch.equal(
            rebuilt(x, labels, cond).log_prob(x), model(x, labels, cond).log_prob(x)
        )
        rebuilt.load_state_dict(checkpoint["model"])
        assert torch.equal(rebuilt(x, labels, cond).log_prob(x), model(x, labels, cond).log_prob(x))


# -- bad input ----------------------------------------------------------------------------------

BAD_INPUTS = [
    # (what changes, argument named, patterns the message must contain)
    ({"x": torch.zeros(2, 1, 3, 4, dtype=torch.long)}, [r"^x ", r"1, 3, 3", r"\(2, 1, 3, 4\)"]),
    ({"x": torch.zeros(2, 2, 3, 3, dtype=torch.long)}, [r"^x ", r"1, 3, 3", r"\(2, 2, 3, 3\)"]),
    ({"x": torch.zeros(1, 3, 3, dtype=torch.long)}, [r"^x ", r"\[B, 1, 3, 3\]", r"\(1, 3, 3\)"]),
    ({"x": [[0]]}, [r"^x ", r"\[B, 1, 3, 3\]", "list"]),
    ({"x": torch.zeros(2, 1, 3, 3, dtype=torch.bool)}, [r"^x ", r"\[0, 3\]", "torch.bool"]),
    ({"x": torch.full((2, 1, 3, 3), 0.5)}, [r"^x ", r"\[0, 3\]", "0.5"]),
    ({"x": torch.full((2, 1, 3, 3), float("nan"))}, [r"^x ", r"\[0, 3\]", "NaN"]),
    ({"x": torch.full((2, 1, 3, 3), -1)}, [r"^x ", r"\[0, 3\]", r"\[-1, -1\]"]),
    ({"x": torch.full((2, 1, 3, 3), 4)}, [r"^x ", r"\[0, 3\]", r"\[4, 4\]"]),
    ({"labels": None}, [r"^labels ", "required", "num_classes=3"]),
    ({"labels": torch.tensor([0, 3])}, [r"^labels ", r"\[0, 2\]", r"\[0, 3\]"]),
    ({"labels": torch.tensor([-1, 0])}, [r"^labels ", r"\[0, 2\]", r"\[-1, 0\]"]),
    ({"labels": torch.tensor([[0], [1]])}, [r"^labels ", r"\(2,\)", r"\(2, 1\)"]),
    ({"labels": torch.tensor([0, 1, 2])}, [r"^labels ", r"\(2,\)", r"\(3,\)"]),
    ({"labels": torch.tensor([0.0, 1.0])}, [r"^labels ", "integer", "float32"]),
    ({"labels": [0, 1]}, [r"^labels ", r"\(2,\)", "list"]),
    ({"cond": None}, [r"^cond ", r"\(2, 2\)", "None"]),
    ({"cond": torch.randn(2, 3)}, [r"^cond ", r"\(2, 2\)", r"\(2, 3\)"]),
    ({"cond": torch.randn(2)}, [r"^cond ", r"\(2, 2\)", r"\(2,\)"]),
    ({"cond": torch.ones(2, 2, dtype=torch.long)}, [r"^cond ", "float", "int64"]),
]


@pytest.mark.parametrize(("change", "patterns"), BAD_INPUTS)
def test_bad_input_names_the_argument_expected_and_received(change, patterns):
    config = tiny(image_shape=(1, 3, 3), num_bits=2, num_classes=3, cond_dim=2, num_resnet=0)
    model = PixelCNNPP(config)
    args = {"x": pixels(config, 2), "labels": torch.tensor([0, 2]), "cond": torch.randn(2, 2)}
    args.update(change)
    with pytest.raises(ValueError) as info:
        model(args["x"], labels=args["labels"], cond=args["cond"])
    for pattern in patterns:
        assert re.search(pattern, str(info.value)), (pattern, str(info.value))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": torch.tensor([0, 1])}, r"labels were given .* \(num_classes=None\)"),
        ({"cond": torch.randn(2, 2)}, r"cond was given .* \(cond_dim=None\)"),
    ],
)
def test_conditioning_given_to_an_unconditional_model(kwargs, match):
    config = tiny(image_shape=(1, 3, 3), num_bits=2, num_resnet=0)
    with pytest.raises(ValueError, match=match):
        PixelCNNPP(config)(pixels(config, 2), **kwargs)
