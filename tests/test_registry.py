"""The one registry mechanism: names, duplicates, entry points, snapshots, and factories
called with exactly the keywords they take."""

from __future__ import annotations

import pytest

from pixelcnnpp.autoregressive import BLOCKS, NONLINEARITIES, Nonlinearity, build_block
from pixelcnnpp.likelihoods import LIKELIHOODS, get_likelihood
from pixelcnnpp.registry import Registry
from pixelcnnpp.training import DATASETS, PRESETS, preset


def test_registry_decorator_same_factory_and_unknown_names():
    registry = Registry("widget")

    @registry.register("b")
    def b():
        return "b"

    assert registry.register("b", b) is b  # the same factory again is no conflict
    registry.register("a", lambda: "a")
    assert registry.names() == ["a", "b"] == list(registry)
    assert len(registry) == 2
    assert "a" in registry and "c" not in registry
    with pytest.raises(ValueError, match=r"unknown widget 'c'; known widgets: 'a', 'b'"):
        registry.get("c")
    with pytest.raises(ValueError, match=r"widget 'b' must be a class or function, got int"):
        registry.register("b", 3, override=True)
    with pytest.raises(ValueError, match=r"widget 'a' is already registered .*override=True"):
        registry.register("a", lambda: "other")
    with pytest.raises(ValueError, match="a widget name must be a non-empty string, got ''"):
        registry.register("", b)


def test_snapshot_forgets_what_was_registered_or_replaced_inside_it():
    registry = Registry("widget")
    registry.register("kept", lambda: 1)
    original = registry.get("kept")
    with registry.snapshot():
        registry.register("new", lambda: 2)
        registry.register("kept", lambda: 3, override=True)
        assert registry.names() == ["kept", "new"]
    assert registry.names() == ["kept"]
    assert registry.get("kept") is original


def test_create_passes_declared_optional_keywords_only():
    registry = Registry("widget")
    registry.register("plain", lambda size, colour="red": (size, colour))
    registry.register("open", lambda size, **rest: (size, rest))
    offered = {"colour": "blue", "weight": 3}
    assert registry.create("plain", {"size": 2}, offered) == (2, "blue")
    assert registry.create("open", {"size": 2}, offered) == (2, offered)


def test_accepts_reads_the_factory_signature():
    things = Registry("thing")
    things.register("plain", lambda size, colour="red": None)
    things.register("open", lambda **kwargs: None)
    assert things.accepts("plain", "colour") and not things.accepts("plain", "weight")
    assert things.accepts("open", "weight")
    with pytest.raises(ValueError, match="unknown thing 'none'"):
        things.accepts("none", "size")


def test_create_refuses_a_required_keyword_the_factory_does_not_take():
    registry = Registry("widget")
    registry.register("plain", lambda size, colour="red": (size, colour))
    with pytest.raises(
        ValueError, match=r"widget 'plain' does not accept 'shade'; it accepts 'colour', 'size'"
    ):
        registry.create("plain", {"size": 2, "shade": "dark"})


def test_create_refuses_a_misspelt_keyword_that_would_keep_its_default():
    """A factory that declares ``dropuot`` next to an offered ``dropout`` would silently train
    without the dropout asked for."""
    registry = Registry("block")
    registry.register("typo", lambda channels, dropuot=0.0: (channels, dropuot))
    with pytest.raises(
        ValueError, match=r"declares 'dropuot', which is never passed; did you mean 'dropout'"
    ):
        registry.create("typo", {"channels": 4}, {"dropout": 0.5})


def test_create_refuses_a_factory_that_needs_what_is_never_passed():
    registry = Registry("widget")
    registry.register("needy", lambda size, texture: (size, texture))
    with pytest.raises(ValueError, match=r"widget 'needy' needs 'texture', which is never passed"):
        registry.create("needy", {"size": 1}, {"colour": "red"})


def test_blocks_get_the_registry_error_for_a_misspelt_contract_keyword(registries):
    def typo_block(channels, stream, skip_channels=0, dropuot=0.5):
        raise AssertionError("never built")

    BLOCKS.register("test_typo_block", typo_block)
    with pytest.raises(ValueError, match=r"block 'test_typo_block' declares 'dropuot'.*'dropout'"):
        build_block("test_typo_block", 4, "u", dropout=0.5)


def test_get_likelihood_names_the_keywords_a_head_takes():
    with pytest.raises(
        ValueError, match=r"likelihood 'dmol' does not accept 'mixtures'; it accepts"
    ):
        get_likelihood("dmol", num_channels=1, mixtures=3)


@pytest.mark.parametrize(
    ("registry", "kind"),
    [
        (BLOCKS, "block"),
        (LIKELIHOODS, "likelihood"),
        (DATASETS, "dataset"),
        (NONLINEARITIES, "nonlinearity"),
        (PRESETS, "preset"),
    ],
)
def test_every_registry_is_the_one_mechanism(registry, kind):
    assert isinstance(registry, Registry)
    with pytest.raises(ValueError, match=rf"unknown {kind} 'no-such-name'; known {kind}s: '"):
        registry.get("no-such-name")


def test_nonlinearities_and_presets_are_registered_like_the_rest(registries):
    NONLINEARITIES.register("test_identity", Nonlinearity(lambda x: x, 1))
    assert "test_identity" in NONLINEARITIES
    with pytest.raises(ValueError, match=r"must be a Nonlinearity\(function, channel_multiplier\)"):
        NONLINEARITIES.register("test_bad", lambda x: x)
    PRESETS.register("test_preset", lambda: preset("demo").replace(seed=7))
    assert preset("test_preset").seed == 7
    assert PRESETS.names()[:3] == ["demo", "paper", "small"] or "demo" in PRESETS
