"""End to end on the real Fashion-MNIST: ``train`` -> ``evaluate`` -> ``sample`` -> ``compare``,
with the printed numbers checked against the files each command wrote."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pixelcnnpp.cli import app
from pixelcnnpp.training.data import locations

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

# A small model on 128 training images: seconds per run, still the real data and shapes.
SMALL = [
    "--set", "model.num_filters=8", "--num-resnet", "0", "--num-stages", "2",
    "--num-mixtures", "3", "--batch-size", "16", "--subset", "128", "--validation-size", "32",
    "--set", "eval_max_images=32", "--set", "test_max_images=64", "--set", "num_samples=4",
    "--set", "init_batch_size=32",
]  # fmt: skip

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (FASHION_MNIST / "t10k-images-idx3-ubyte.gz").exists(),
        reason=f"the real Fashion-MNIST is not installed in {FASHION_MNIST} "
        "(apt-get install dataset-fashion-mnist)",
    ),
]


@pytest.fixture(autouse=True)
def only_the_system_copy(tmp_path, monkeypatch):
    monkeypatch.delenv("PIXELCNNPP_DATA", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(locations, "SYSTEM_DATA_DIRS", [FASHION_MNIST.parent])


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def table_value(output: str, key: str) -> str:
    """The value in a printed key/value table's row ``key``."""
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if len(cells) >= 2 and cells[0] == key:
            return cells[1]
    raise AssertionError(f"no row {key!r} in:\n{output}")


def grid_side(n: int, size: int = 28, padding: int = 2, scale: int = 4) -> int:
    """Side of the square grid of ``n`` (a square number) tiles, scaled (28x28: 4x)."""
    per_row = math.isqrt(n)
    return (per_row * (size + padding) - padding) * scale


def test_train_evaluate_sample_compare(tmp_path):
    run = tmp_path / "run"
    trained = invoke("train", *SMALL, "--max-steps", 4, "--run-dir", run)
    results = json.loads((run / "results.json").read_text())
    test_bpd = float(table_value(trained.stdout, "test bits/dim (EMA)"))
    assert math.isfinite(test_bpd) and test_bpd > 0
    assert test_bpd == pytest.approx(results["test"]["bits_per_dim"], abs=1e-4)
    assert results["test"]["num_images"] == 64 and results["step"] == 4
    with Image.open(run / "samples.png") as grid:
        assert grid.size == (grid_side(4), grid_side(4))
    assert (run / "learning_curve.png").stat().st_size > 0
    assert json.loads((run / "config.json").read_text())["dataset"] == "fashion-mnist"

    evaluated = invoke("evaluate", run, "--max-images", 64, "--save-per-image", tmp_path / "b.npy")
    assert float(table_value(evaluated.stdout, "bits/dim")) == pytest.approx(test_bpd, abs=1e-4)
    assert table_value(evaluated.stdout, "dataset") == "fashion-mnist (test)"
    per_image = np.load(tmp_path / "b.npy")
    assert per_image.shape == (64,) and np.isfinite(per_image).all()
    low, high = map(float, table_value(evaluated.stdout, "95% CI").strip("[]").split(","))
    assert low < per_image.mean() < high

    sampled = invoke(
        "sample", run, "--n", 9, "--out", tmp_path / "grid.png", "--npy", tmp_path / "s.npy"
    )
    assert table_value(sampled.stdout, "grid") == str(tmp_path / "grid.png")
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (grid_side(9), grid_side(9)) and grid.mode == "L"
    pixels = np.load(tmp_path / "s.npy")
    assert pixels.shape == (9, 1, 28, 28) and pixels.dtype == np.uint8
    assert pixels.min() >= 0 and pixels.max() <= 255 and pixels.std() > 0

    compared = invoke("compare", *SMALL, "--steps", 2, "--out-dir", tmp_path / "compare")
    (folder,) = (tmp_path / "compare").iterdir()
    report = json.loads((folder / "report.json").read_text())
    markdown = (folder / "report.md").read_text()
    runs = report["datasets"]["fashion-mnist"]["runs"]
    assert list(runs) == ["dmol", "softmax"]
    for name, result in runs.items():
        bpd = result["test"]["bits_per_dim"]
        assert math.isfinite(bpd) and result["steps"] == 2 and result["test"]["num_images"] == 64
        assert f"| {name} | {bpd:.4f} |" in markdown
        row = next(
            line for line in compared.stdout.splitlines() if line.strip("│ ").startswith(name)
        )
        assert f"{bpd:.4f}" in row
    (paired,) = report["datasets"]["fashion-mnist"]["paired"]
    assert paired["baseline"] == "dmol" and paired["other"] == "softmax"
    assert math.isfinite(paired["mean_difference"]) and paired["num_images"] == 64
    assert f"{paired['mean_difference']:+.4f}" in markdown
    assert f"{paired['mean_difference']:+.4f}" in compared.stdout
    for key in (
        "report",
        "report (JSON)",
        "fashion-mnist learning curves",
        "fashion-mnist samples",
    ):
        assert Path(table_value(compared.stdout, key)).is_file()
