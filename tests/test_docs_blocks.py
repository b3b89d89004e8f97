"""The block-writer's guide runs: every fenced ``python`` block of ``docs/blocks.md``, in order,
in one namespace; and its plugin package (the ``toml`` entry points and the module they point
to) really is discovered once installed.

Blocks the page registers are removed afterwards.
"""

from __future__ import annotations

import importlib
import re
import sys
import warnings
from pathlib import Path

import pytest

from pixelcnnpp.autoregressive import PixelCNNConfig, PixelCNNPP, check_causality, list_blocks
from pixelcnnpp.autoregressive.blocks import BLOCKS

DOCS = Path(__file__).resolve().parent.parent / "docs"
FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def fenced_blocks(path: Path, language: str) -> list[tuple[int, str]]:
    """``(line number, source)`` of each fenced block tagged ``language``, in order."""
    text = path.read_text()
    return [
        (text.count("\n", 0, m.start()) + 2, m.group(2))
        for m in FENCE.finditer(text)
        if m.group(1) == language
    ]


@pytest.fixture
def restored_registry(registries):
    BLOCKS.names()


def test_every_fence_is_tagged():
    """An untagged fence would be skipped silently; every block says what it is."""
    text = (DOCS / "blocks.md").read_text()
    opening = [m.group(1) for m in FENCE.finditer(text)]
    assert opening and all(opening), "every ``` fence in docs/blocks.md needs a language"


@pytest.mark.parametrize("page", ["blocks.md"])
def test_python_blocks_run_in_order(page, restored_registry):
    path = DOCS / page
    blocks = fenced_blocks(path, "python")
    assert len(blocks) >= 5, f"{page} has only {len(blocks)} python blocks"
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the page's code must run without warnings
        for line, source in blocks:
            exec(compile(source, f"{path}:{line}", "exec"), namespace)
    assert "tanh_resnet" in list_blocks()


def test_plugin_package_from_the_page_is_discovered(tmp_path, monkeypatch, restored_registry):
    """Install the page's package for real: its module under ``src/``, a ``dist-info`` with the
    entry points its ``pyproject.toml`` declares; then discovery must find the block."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    path = DOCS / "blocks.md"
    pyprojects = [tomllib.loads(src) for _, src in fenced_blocks(path, "toml")]
    pyproject = next(p for p in pyprojects if "entry-points" in p.get("project", {}))
    entry_points = pyproject["project"]["entry-points"]["pixelcnnpp.blocks"]
    assert entry_points, "the page's pyproject.toml declares no block"

    files = {}
    for _, source in fenced_blocks(path, "python"):
        first = source.splitlines()[0]
        if first.startswith("# src/"):
            files[first.removeprefix("# src/")] = source
    dist = pyproject["project"]["name"].replace("-", "_")
    for target in entry_points.values():
        module = target.split(":")[0]
        relative = module.replace(".", "/") + ".py"
        assert relative in files, f"the page shows no src/{relative} for entry point {target}"
        package = tmp_path / relative.split("/")[0]
        package.mkdir(exist_ok=True)
        (package / "__init__.py").touch()
        (tmp_path / relative).write_text(files[relative])
    info = tmp_path / f"{dist}-{pyproject['project']['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {pyproject['project']['name']}\n"
        f"Version: {pyproject['project']['version']}\n"
    )
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[pixelcnnpp.blocks]\n{lines}")

    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.setattr(BLOCKS, "_discovered", False)
    packages = {target.split(".")[0] for target in entry_points.values()}
    try:
        names = list_blocks()
        for name in entry_points:
            assert name in names
            config = PixelCNNConfig(image_shape=(1, 3, 4), num_filters=4, num_resnet=1)
            check_causality(PixelCNNPP(config, block=name).double())
    finally:
        for module in list(sys.modules):
            if module.split(".")[0] in packages:
                del sys.modules[module]
