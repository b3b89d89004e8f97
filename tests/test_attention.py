"""What is particular to the ``attention_resnet`` block; the contract (shape, backward, causality,
incremental state, normalization, sampling, one compiled graph) is tested for every registered
block elsewhere.

- the mask is exact: a key or value at ``p`` moves the attention output at exactly the
  positions strictly after ``p`` (``ul``), or at the rows strictly below ``p``'s (``u``);
- a query with no key gets zeros, not NaN, and finite gradients;
- attention runs where the block's resolution is at most ``max_attention_size``;
- ``block_kwargs`` survive a checkpoint and bad ones are refused naming the keywords.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from pixelcnnpp.autoregressive import (
    AttentionResnet,
    GatedResnet,
    PixelCNNConfig,
    PixelCNNPP,
    build_block,
    check_causality,
)
from pixelcnnpp.autoregressive.attention import attention_mask
from pixelcnnpp.training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

DTYPE = torch.float64
H, W = 4, 5


def block(stream: str, skip: int = 0, **kwargs) -> AttentionResnet:
    torch.manual_seed(0)
    b = build_block("attention_resnet", 6, stream, skip, 0.0, block_kwargs=kwargs)
    assert isinstance(b, AttentionResnet)
    return b.to(DTYPE).eval()


def inputs(skip: int = 0, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 6, H, W, generator=gen, dtype=DTYPE)
    return x, (torch.randn(1, skip, H, W, generator=gen, dtype=DTYPE) if skip else None)


@pytest.mark.parametrize(("stream", "skip"), [("u", 0), ("u", 6), ("ul", 6), ("ul", 12)])
def test_a_key_moves_the_output_exactly_where_the_mask_allows(stream, skip):
    """Perturb the keys and values of one position (a hook on their projection, so the residual
    block's own view of ``p`` is left out): the block's output moves at every position that may
    attend to ``p`` and nowhere else, so ``p`` never sees itself or anything after it."""
    b = block(stream, skip)
    x, s = inputs(skip)
    with torch.no_grad():
        base = b(x, s)
        for p in range(H * W):

            def perturb(module, args, out, p=p):
                out = out.clone()
                out[:, :, p // W, p % W] += 1.0
                return out

            handle = b.keys_values.register_forward_hook(perturb)
            moved = (b(x, s) - base).abs().amax(1)[0] > 1e-12  # [H, W]
            handle.remove()
            order = torch.arange(H * W).view(H, W)
            expected = order > p if stream == "ul" else order // W > p // W
            assert torch.equal(moved, expected), (p, moved.int().tolist())


@pytest.mark.parametrize("stream", ["u", "ul"])
def test_queries_without_keys_get_zeros_and_finite_gradients(stream):
    b = block(stream, 6)
    x, s = inputs(6)
    x.requires_grad_(True)
    y = b.resnet(x, s)
    q, k, v = b.project(x, s, y)
    positions = torch.arange(H * W)
    a = b.attend(q, k, v, positions, positions, W)  # [B, h, N, d]
    alone = slice(0, W) if stream == "u" else slice(0, 1)  # row 0 on u, pixel 0 on ul
    assert torch.equal(a[:, :, alone], torch.zeros_like(a[:, :, alone]))
    assert torch.isfinite(a).all() and (a[:, :, alone.stop :] != 0).any()
    a.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_attention_mask_by_stream():
    positions = torch.arange(6)  # a 2x3 image
    allowed, has_key = attention_mask("ul", positions, positions, 3)
    assert has_key.tolist() == [False, True, True, True, True, True]
    assert allowed[0].tolist() == [True, False, False, False, False, False]  # itself, zeroed
    assert allowed[4].tolist() == [True, True, True, True, False, False]
    allowed, has_key = attention_mask("u", positions, positions, 3)
    assert has_key.tolist() == [False, False, False, True, True, True]
    assert allowed[1].tolist() == [False, True, False, False, False, False]
    assert allowed[5].tolist() == [True, True, True, False, False, False]


def kinds(model: PixelCNNPP) -> list[list[str]]:
    """Block types per resolution, highest first (the down pass runs from the lowest)."""
    stages = len(model.up)
    names = []
    for s in range(stages):
        up, down = model.up[s], model.down[stages - 1 - s]
        names.append(
            sorted({type(b).__name__ for b in (*up["u"], *up["ul"], *down["u"], *down["ul"])})
        )
    return names


@pytest.mark.parametrize(
    ("shape", "kwargs", "expected"),
    [
        # the default: attention at 16x16 and 8x8 of a 32x32 image, at 14x14 and 7x7 of 28x28
        ((3, 32, 32), {}, [False, True, True]),
        ((1, 28, 28), {}, [False, True, True]),
        ((1, 28, 28), {"max_attention_size": 28}, [True, True, True]),
        ((1, 28, 28), {"max_attention_size": 7}, [False, False, True]),
        ((1, 9, 17), {"max_attention_size": 16}, [False, True, True]),  # the larger side decides
    ],
)
def test_attention_runs_at_the_resolutions_the_config_names(shape, kwargs, expected):
    config = PixelCNNConfig(
        image_shape=shape,
        num_filters=4,
        num_resnet=1,
        block="attention_resnet",
        block_kwargs=kwargs,
    )
    got = kinds(PixelCNNPP(config))
    assert got == [["AttentionResnet"] if e else ["GatedResnet"] for e in expected]


def test_a_model_with_attention_is_causal():
    config = PixelCNNConfig(
        image_shape=(2, 5, 6),
        num_bits=4,
        num_filters=6,
        num_resnet=1,
        num_stages=3,
        block="attention_resnet",
        block_kwargs={"num_heads": 3, "key_channels": 4, "max_attention_size": 3},
        likelihood_kwargs={"num_mixtures": 2},
    )
    model = PixelCNNPP(config).to(DTYPE)
    assert kinds(model) == [["GatedResnet"], ["AttentionResnet"], ["AttentionResnet"]]
    check_causality(model)


def test_block_kwargs_round_trip_through_a_checkpoint(tmp_path):
    kwargs = {"num_heads": 3, "key_channels": 5, "max_attention_size": 4}
    config = PixelCNNConfig(
        image_shape=(1, 8, 8),
        num_filters=6,
        num_resnet=1,
        block="attention_resnet",
        block_kwargs=kwargs,
    )
    torch.manual_seed(0)
    model = PixelCNNPP(config)
    path = save_checkpoint(
        {"model_config": config.to_dict(), "model": model.state_dict()}, tmp_path / "c.pt"
    )
    loaded = model_from_checkpoint(load_checkpoint(path), use_ema=False)
    assert loaded.config == config and loaded.config.block_kwargs == kwargs
    attention = [m for m in loaded.modules() if isinstance(m, AttentionResnet)]
    assert attention and all((m.num_heads, m.key_channels) == (3, 5) for m in attention)
    x = torch.randint(0, 256, (2, 1, 8, 8))
    torch.testing.assert_close(loaded(x).log_prob(x), model.eval()(x).log_prob(x), rtol=0, atol=0)


def test_configs_saved_before_block_kwargs_still_load():
    saved = PixelCNNConfig(image_shape=(1, 4, 4), num_filters=4).to_dict()
    del saved["block_kwargs"]
    assert PixelCNNConfig.from_dict(saved).block_kwargs == {}


@pytest.mark.parametrize(
    ("block_name", "kwargs", "match"),
    [
        (
            "attention_resnet",
            {"heads": 2},
            r"block 'attention_resnet' does not accept 'heads'; it accepts .*'key_channels', "
            r"'max_attention_size', .*'num_heads'",
        ),
        ("gated_resnet", {"num_heads": 2}, r"block 'gated_resnet' does not accept 'num_heads'"),
        ("attention_resnet", {"num_heads": 0}, r"num_heads must be an integer >= 1, got 0"),
        (
            "attention_resnet",
            {"key_channels": 2.5},
            r"key_channels must be an integer >= 1, got 2.5",
        ),
        (
            "attention_resnet",
            {"max_attention_size": True},
            r"max_attention_size must be an integer >= 1, got True",
        ),
        ("attention_resnet", {"channels": 8}, r"block_kwargs must not set .*'channels'"),
        ("attention_resnet", {"resolution": (2, 2)}, r"block_kwargs must not set .*'resolution'"),
    ],
)
def test_bad_block_kwargs_are_refused_naming_the_keywords(block_name, kwargs, match):
    config = PixelCNNConfig(
        image_shape=(1, 4, 4), num_filters=4, block=block_name, block_kwargs=kwargs
    )
    with pytest.raises(ValueError, match=match):
        PixelCNNPP(config)


def test_resolution_is_passed_only_to_factories_that_name_it(registries):
    """``resolution`` reaches a factory that declares it, and not one that takes ``**kwargs``
    (blocks written before the keyword existed forward ``**kwargs`` to their class)."""
    from pixelcnnpp.autoregressive import register_block

    seen = []

    @register_block("test_resolution_named")
    def named(channels, stream, skip_channels=0, cond_dim=None, resolution=None):
        seen.append(resolution)
        return GatedResnet(channels, stream, skip_channels, cond_dim=cond_dim)

    @register_block("test_resolution_forwarded")
    def forwarded(**kwargs):
        assert "resolution" not in kwargs, kwargs
        return GatedResnet(**kwargs)

    PixelCNNPP(
        PixelCNNConfig(
            image_shape=(1, 7, 5), num_filters=4, num_resnet=1, block="test_resolution_named"
        )
    )
    assert sorted(set(seen), key=str) == sorted({None, (7, 5), (4, 3), (2, 2)}, key=str)
    PixelCNNPP(
        PixelCNNConfig(image_shape=(1, 7, 5), num_filters=4, block="test_resolution_forwarded")
    )


def test_cached_sampling_feeds_the_attention_blocks_their_cache(monkeypatch):
    """The sampler takes the incremental-state path for the attention blocks (one cache per
    block, holding every position of its level) and the fast path for the others."""
    from pixelcnnpp.autoregressive import attention

    caches = []
    init = attention.AttentionCache.__init__

    def recording(self, *args, **kwargs):
        init(self, *args, **kwargs)
        caches.append(self)

    monkeypatch.setattr(attention.AttentionCache, "__init__", recording)
    config = PixelCNNConfig(
        image_shape=(1, 6, 5),
        num_filters=4,
        num_resnet=1,
        num_stages=2,
        block="attention_resnet",
        block_kwargs={"max_attention_size": 3},
    )
    model = PixelCNNPP(config).double()
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to naive sampling
        cached = model.sample(2, method="cached", generator=gen())
    assert torch.equal(cached, model.sample(2, method="naive", generator=gen()))
    blocks = sum(len(s["u"]) + len(s["ul"]) for s in (model.up[1], model.down[0]))
    assert len(caches) == blocks
    assert {tuple(c.keys.shape[2:3]) for c in caches} == {(3 * 3,)}
