"""Blocks from installed packages: the entry-point group ``pixelcnnpp.blocks``.

Each test writes a real (if tiny) installed distribution into a temporary directory, a
package plus its ``*.dist-info`` folder with ``entry_points.txt``, puts the directory on
``sys.path`` and lets the block registry discover it the way it discovers a pip-installed
plugin. The registry, ``sys.path`` and ``sys.modules`` are restored afterwards.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pixelcnnpp.autoregressive import (
    CausalityError,
    GatedResnet,
    PixelCNNConfig,
    PixelCNNPP,
    check_causality,
    get_block,
    list_blocks,
)
from pixelcnnpp.autoregressive.blocks import BLOCKS

BLOCK_MODULE = '''
"""A plugin's blocks: one causal, one that leaks."""

import torch
from torch import nn

from pixelcnnpp.autoregressive import ShiftedConv2d


class MyBlock(nn.Module):
    """x + tanh(shifted conv(x)) [+ 1x1 conv(skip)] [+ linear(cond)]."""

    def __init__(self, channels, stream, skip_channels=0, dropout=0.0, cond_dim=None,
                 nonlinearity="concat_elu", weight_norm=True):
        super().__init__()
        kind, kernel = ("down", (2, 3)) if stream == "u" else ("down_right", (2, 2))
        self.conv = ShiftedConv2d(channels, channels, kernel, kind, weight_norm=weight_norm)
        self.skip = nn.Conv2d(skip_channels, channels, 1) if skip_channels else None
        self.cond = nn.Linear(cond_dim, channels) if cond_dim else None
        self.incremental_context = (1, 1, 1) if stream == "u" else (1, 1, 0)

    def forward(self, x, skip=None, cond=None):
        out = x + torch.tanh(self.conv(x))
        if self.skip is not None:
            out = out + self.skip(skip)
        if self.cond is not None:
            out = out + self.cond(cond)[:, :, None, None]
        return out


class LeakyBlock(nn.Module):
    def __init__(self, channels, stream, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, skip=None, cond=None):
        return x + self.conv(x)
'''


PLUGIN = {"my_blocks.block": BLOCK_MODULE}


def install(root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """Write an installed distribution ``dist`` 0.1 under ``root``: ``modules`` (dotted name ->
    source; packages get an ``__init__.py``) and ``dist-info`` declaring ``entry_points`` in the
    ``pixelcnnpp.blocks`` group."""
    for name, source in modules.items():
        *packages, module = name.split(".")
        folder = root.joinpath(*packages)
        for depth in range(1, len(packages) + 1):
            init = root.joinpath(*packages[:depth], "__init__.py")
            init.parent.mkdir(parents=True, exist_ok=True)
            init.touch()
        (folder / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[pixelcnnpp.blocks]\n{lines}")
    importlib.invalidate_caches()


@pytest.fixture
def site(tmp_path, monkeypatch, registries):
    """A temporary site directory on ``sys.path`` and a registry that has not yet looked for
    entry points; both restored, and the plugin modules forgotten, afterwards."""
    BLOCKS.names()  # finish any pending discovery of the real environment first
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(BLOCKS, "_discovered", False)
    yield tmp_path
    for name in list(sys.modules):
        if name.split(".")[0] in ("my_blocks", "no_such_module_for_pixelcnnpp"):
            del sys.modules[name]
    importlib.invalidate_caches()


def test_entry_point_block_is_discovered_on_first_read_and_usable(site):
    install(site, "my_blocks", {"my_block": "my_blocks.block:MyBlock"}, PLUGIN)
    assert "my_block" not in BLOCKS._entries  # nothing is loaded before the registry is read
    assert "my_blocks.block" not in sys.modules

    names = list_blocks()
    assert "my_block" in names and "gated_resnet" in names
    assert names == sorted(names)
    factory = get_block("my_block")
    assert factory is sys.modules["my_blocks.block"].MyBlock

    config = PixelCNNConfig(image_shape=(2, 4, 3), num_filters=4, num_resnet=1, num_stages=2)
    model = PixelCNNPP(config, block="my_block").double()
    assert isinstance(model.up[0]["u"][0], factory)
    x = torch.randint(0, 256, (2, 2, 4, 3))
    assert torch.isfinite(model(x).log_prob(x)).all()
    check_causality(model)
    gen_a, gen_b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    naive = model.sample(2, method="naive", generator=gen_a)
    assert torch.equal(model.sample(2, method="cached", generator=gen_b), naive)


def test_broken_entry_point_warns_naming_it_and_the_rest_still_load(site):
    install(site, "my_blocks", {"my_block": "my_blocks.block:MyBlock"}, PLUGIN)
    install(
        site,
        "broken_blocks",
        {
            "broken_block": "no_such_module_for_pixelcnnpp.block:Thing",
            "missing_attr": "my_blocks.block:NoSuchBlock",
        },
        {},
    )
    with pytest.warns(UserWarning) as record:
        names = list_blocks()
    messages = "\n".join(str(w.message) for w in record)
    assert (
        "could not load block 'broken_block' from entry point "
        "'no_such_module_for_pixelcnnpp.block:Thing' (group 'pixelcnnpp.blocks')" in messages
    )
    assert "could not load block 'missing_attr'" in messages
    assert "my_block" in names
    assert "broken_block" not in names and "missing_attr" not in names
    with pytest.raises(ValueError, match="unknown block 'broken_block'"):
        get_block("broken_block")


def test_entry_point_cannot_replace_a_registered_block(site):
    install(site, "my_blocks", {"gated_resnet": "my_blocks.block:MyBlock"}, PLUGIN)
    with pytest.warns(
        UserWarning,
        match=r"ignoring entry point 'my_blocks.block:MyBlock'.*"
        r"'gated_resnet' is already registered",
    ):
        list_blocks()
    assert get_block("gated_resnet") is GatedResnet


def test_leaky_plugin_block_is_refused_when_a_model_is_built(site):
    install(site, "my_blocks", {"leaky_plugin": "my_blocks.block:LeakyBlock"}, PLUGIN)
    assert "leaky_plugin" in list_blocks()  # discovery does not judge; building a model does
    config = PixelCNNConfig(image_shape=(1, 3, 3), num_filters=4, num_resnet=1)
    with pytest.raises(CausalityError, match="block 'leaky_plugin' breaks the autoregressive"):
        PixelCNNPP(config, block="leaky_plugin")


def test_discovery_runs_once(site):
    """Entry points are read the first time the registry is read, not on every read."""
    list_blocks()
    install(site, "my_blocks", {"my_block": "my_blocks.block:MyBlock"}, PLUGIN)
    assert "my_block" not in list_blocks()
