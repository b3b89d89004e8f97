"""The ``pixelcnn`` command line, through ``typer.testing.CliRunner`` on tiny data written into
temporary folders: every command, resume, Ctrl-C, and every error path (exit code 2 for bad
input, 1 for failures, 130 for an interrupt; one red line, a traceback only with --debug)."""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from pixelcnnpp.autoregressive import GatedResnet, list_blocks
from pixelcnnpp.autoregressive.blocks import BLOCKS
from pixelcnnpp.cli import app, reference
from pixelcnnpp.cli import describe as describe_command
from pixelcnnpp.cli.options import SHARED_OPTIONS
from pixelcnnpp.training import PRESETS, list_datasets, load_checkpoint
from pixelcnnpp.training import loop as loop_module
from pixelcnnpp.training.data import locations

REPO = Path(__file__).resolve().parents[1]

# A model of a few thousand parameters, a couple of steps, a handful of test images.
TINY = [
    "--set", "model.num_filters=4", "--num-resnet", "0", "--num-stages", "2",
    "--num-mixtures", "2", "--batch-size", "8", "--validation-size", "10",
    "--set", "test_max_images=16", "--set", "num_samples=2",
    "--set", "init_batch_size=16", "--set", "eval_batch_size=64",
]  # fmt: skip


def invoke(*args, code: int = 0, env: dict[str, str] | None = None):
    """Run ``pixelcnn ARGS`` in this process and check its exit code."""
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert result.exit_code == code, result.output
    return result


def assert_one_error_line(result, *expected: str) -> str:
    """The run failed with exactly one ``Error:`` line naming ``expected``, no traceback."""
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if "Error:" in line]
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def table_value(output: str, key: str) -> str:
    """The value in a printed key/value table's row ``key``."""
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if len(cells) >= 2 and cells[0] == key:
            return cells[1]
    raise AssertionError(f"no row {key!r} in:\n{output}")


# -- tiny data ----------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """``<root>/npz``: 8x8 grey images in 3 classes (60 train, 20 test);
    ``<root>/fashion-mnist``: the four IDX files of a 28x28 Fashion-MNIST (40 train, 16 test)."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 8)[None, None, :, None] * np.ones((80, 1, 8, 8))
    images = (ramp + rng.normal(0, 25, ramp.shape)).clip(0, 255).astype(np.uint8)
    labels = np.arange(80) % 3
    (root / "npz").mkdir()
    np.savez(root / "npz" / "train.npz", images=images[:60], labels=labels[:60])
    np.savez(root / "npz" / "test.npz", images=images[60:], labels=labels[60:])
    fashion = root / "fashion-mnist"
    fashion.mkdir()
    for prefix, n in (("train", 40), ("t10k", 16)):
        pixels = rng.integers(0, 256, (n, 28, 28))
        (fashion / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(pixels)))
        classes = rng.integers(0, 10, (n,))
        (fashion / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(classes)))
    return root


@pytest.fixture(autouse=True)
def isolated_locations(tmp_path, monkeypatch):
    """No test sees the system's datasets, $PIXELCNNPP_DATA or ~/.cache unless it asks."""
    monkeypatch.delenv("PIXELCNNPP_DATA", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(locations, "SYSTEM_DATA_DIRS", [tmp_path / "system"])


@pytest.fixture(scope="module")
def run_dir(data_root, tmp_path_factory) -> Path:
    """An unconditional run of 2 steps on the 8x8 arrays."""
    folder = tmp_path_factory.mktemp("runs") / "plain"
    invoke(
        "train", "--dataset", "npz", "--data-dir", data_root / "npz", *TINY,
        "--max-steps", 2, "--run-dir", folder,
    )  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def conditional_run(data_root, tmp_path_factory) -> Path:
    """A class-conditional run (3 classes) of 1 step on the 8x8 arrays."""
    folder = tmp_path_factory.mktemp("runs") / "conditional"
    invoke(
        "-q", "train", "--dataset", "npz", "--data-dir", data_root / "npz", *TINY,
        "--conditional", "--max-steps", 1, "--run-dir", folder,
    )  # fmt: skip
    return folder


# -- train ---------------------------------------------------------------------------------------


def test_train_with_no_options_trains_the_demo_preset_on_fashion_mnist(
    data_root, tmp_path, monkeypatch, registries
):
    demo = PRESETS.get("demo")

    def tiny_demo():  # the demo preset, shrunk to seconds; everything else as shipped
        return demo().replace(
            **{
                "model.num_filters": 4,
                "model.num_resnet": 0,
                "model.num_stages": 2,
                "batch_size": 8,
                "validation_size": 10,
                "max_steps": 2,
                "max_minutes": None,
                "test_max_images": 16,
                "num_samples": 1,
                "init_batch_size": 16,
            }
        )

    PRESETS.register("demo", tiny_demo, override=True)
    monkeypatch.setenv("PIXELCNNPP_DATA", str(data_root))
    monkeypatch.chdir(tmp_path)
    result = invoke("train")

    (run,) = (tmp_path / "runs").iterdir()
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == "fashion-mnist"
    assert config["model"]["likelihood"] == "dmol"
    assert config["model"]["likelihood_kwargs"] == {"num_mixtures": 5}  # the preset's
    assert config["model"]["image_shape"] == [1, 28, 28]
    test = json.loads((run / "results.json").read_text())["test"]
    printed = float(table_value(result.stdout, "test bits/dim (EMA)"))
    assert math.isfinite(printed) and printed == pytest.approx(test["bits_per_dim"], abs=1e-4)
    low, high = map(float, table_value(result.stdout, "95% CI").strip("[]").split(","))
    assert low <= printed <= high
    assert table_value(result.stdout, "steps") == "2"
    for key, name in (("samples", "samples.png"), ("learning curve", "learning_curve.png")):
        assert table_value(result.stdout, key) == str(Path("runs") / run.name / name)
        assert (run / name).is_file()
    assert f"run folder runs/{run.name}" in result.stderr  # the note, on stderr


def test_train_writes_the_run_folder(run_dir, conditional_run):
    for folder in (run_dir, conditional_run):
        for name in ("config.json", "metrics.jsonl", "results.json", "samples.png"):
            assert (folder / name).is_file()
    assert load_checkpoint(run_dir)["step"] == 2
    config = json.loads((conditional_run / "config.json").read_text())
    assert config["model"]["num_classes"] == 3  # from the dataset's labels


def test_every_config_field_can_be_set(data_root, tmp_path):
    result = invoke(
        "--quiet", "train", "--dataset", "npz", "--data-dir", data_root / "npz", *TINY,
        "--max-steps", 1, "--run-dir", tmp_path / "r", "--lr", "0.01", "--grad-clip", "1",
        "--set", "betas=[0.9, 0.99]", "--set", "model.likelihood_kwargs={\"num_mixtures\": 3}",
        "--set", "model.dropout=0.1", "--set", "validation_size=0", "--set", "keep_checkpoints=1",
    )  # fmt: skip
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["betas"] == [0.9, 0.99] and config["lr"] == 0.01 and config["grad_clip"] == 1
    assert config["model"]["likelihood_kwargs"] == {"num_mixtures": 3}  # --set wins
    assert config["model"]["dropout"] == 0.1 and config["validation_size"] == 0
    assert result.stderr == ""  # --quiet: no notes


def test_resume_continues_to_the_new_step_count(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    result = invoke("train", "--resume", copy, "--max-steps", 4)
    assert table_value(result.stdout, "steps") == "4"
    assert load_checkpoint(copy)["step"] == 4
    assert load_checkpoint(run_dir)["step"] == 2  # the original folder is untouched
    steps = [json.loads(line)["step"] for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 4


def test_resume_refuses_config_changes_and_presets(run_dir):
    result = invoke("train", "--resume", run_dir, "--lr", "0.1", code=2)
    assert_one_error_line(result, "cannot change", "lr")
    result = invoke("train", "--resume", run_dir, "--preset", "demo", code=2)
    assert_one_error_line(result, "--preset", "--resume")


def test_a_used_run_folder_is_not_overwritten(run_dir, data_root):
    result = invoke("train", "--dataset", "npz", "--data-dir", data_root / "npz", "--run-dir", run_dir, code=2)  # fmt: skip
    assert_one_error_line(result, str(run_dir), "--resume")


def test_ctrl_c_checkpoints_and_prints_a_resume_command_that_works(data_root, tmp_path):
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "pixelcnnpp.cli", "train", "--dataset", "npz",
        "--data-dir", str(data_root / "npz"), *TINY, "--max-steps", "100000",
        "--set", "log_every=1", "--set", "checkpoint_minutes=null", "--run-dir", str(run),
    ]  # fmt: skip
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.time() + 120
    metrics = run / "metrics.jsonl"
    while not (metrics.exists() and metrics.read_text().strip()):
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "no metrics line within 120 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out + err
    assert "Traceback" not in err
    step = load_checkpoint(run)["step"]
    assert step >= 1 and f"Interrupted at step {step}" in err
    (line,) = [line for line in err.splitlines() if line.startswith("Resume with: ")]
    words = shlex.split(line.removeprefix("Resume with: "))
    assert words == ["pixelcnn", "train", "--resume", str(run)]
    invoke(*words[1:], "--max-steps", step + 1)
    assert load_checkpoint(run)["step"] == step + 1


def test_a_training_error_exits_1_naming_the_intact_run_folder(data_root, tmp_path, monkeypatch):
    def nan_loss(self, x, labels=None):
        return self.model.nll(x, labels) * float("nan")

    monkeypatch.setattr(loop_module._NegativeLogLikelihood, "forward", nan_loss)
    run = tmp_path / "r"
    result = invoke(
        "train", "--dataset", "npz", "--data-dir", data_root / "npz", *TINY,
        "--max-steps", 5, "--set", "max_bad_steps=1", "--run-dir", run, code=1,
    )  # fmt: skip
    assert_one_error_line(result, "non-finite", str(run), "intact")
    assert (run / "config.json").is_file()


# -- evaluate, sample, info ------------------------------------------------------------------------


def test_evaluate_prints_bits_per_dim_that_match_the_run(run_dir, tmp_path):
    per_image = tmp_path / "out" / "bpd.npy"
    result = invoke("evaluate", run_dir, "--max-images", 16, "--save-per-image", per_image)
    printed = float(table_value(result.stdout, "bits/dim"))
    test = json.loads((run_dir / "results.json").read_text())["test"]
    assert printed == pytest.approx(test["bits_per_dim"], abs=1e-4)
    values = np.load(per_image)
    assert values.shape == (16,) and values.mean() == pytest.approx(printed, abs=1e-4)
    assert table_value(result.stdout, "dataset") == "npz (test)"
    assert "Read npz test:" in result.output and "test.npz" in result.output

    checkpoint = load_checkpoint(run_dir)  # a checkpoint file works as well as its folder
    assert checkpoint["step"] == 2
    raw = invoke("evaluate", run_dir / "checkpoints" / "step-00000002.pt", "--no-ema", "--split", "validation")  # fmt: skip
    assert table_value(raw.stdout, "weights") == "raw"
    assert table_value(raw.stdout, "images") == "10"


def test_evaluate_refuses_a_dataset_of_another_shape(run_dir, data_root):
    result = invoke("evaluate", run_dir, "--dataset", "fashion-mnist", "--data-dir", data_root / "fashion-mnist", code=2)  # fmt: skip
    assert_one_error_line(result, "(1, 28, 28)", "(1, 8, 8)")


def test_sample_writes_a_grid_and_the_raw_pixels(run_dir, tmp_path):
    grid, raw = tmp_path / "grid.png", tmp_path / "pixels" / "samples.npy"
    result = invoke("sample", run_dir, "--n", 3, "--out", grid, "--npy", raw, "--seed", 1)
    assert table_value(result.stdout, "grid") == str(grid)
    with Image.open(grid) as image:  # 2x2 tiles of 8 pixels, 2 apart, scaled 14x
        assert image.size == ((2 * 10 - 2) * 14, (2 * 10 - 2) * 14)
    pixels = np.load(raw)
    assert pixels.shape == (3, 1, 8, 8) and pixels.dtype == np.uint8
    again = tmp_path / "again.npy"
    invoke("sample", run_dir, "--n", 3, "--out", tmp_path / "b.png", "--npy", again, "--seed", 1, "--method", "naive")  # fmt: skip
    assert np.array_equal(np.load(again), pixels)  # naive and cached draw the same images


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([], "class-conditional (3 classes)"),
        (["--labels", "0,1"], "1 label or one per image (3)"),
        (["--labels", "a,b"], "comma-separated integers"),
        (["--labels", "0", "--label", "1"], "not both"),
        (["--label", "7"], "[0, 2]"),
    ],
)
def test_sample_labels_must_fit_a_conditional_model(conditional_run, tmp_path, labels, message):
    result = invoke("sample", conditional_run, "--n", 3, "--out", tmp_path / "g.png", *labels, code=2)  # fmt: skip
    assert_one_error_line(result, message)


@pytest.mark.parametrize("labels", [["--labels", "0,1,2"], ["--label", "2"], ["--labels", "1"]])
def test_sample_a_conditional_model(conditional_run, tmp_path, labels):
    invoke("sample", conditional_run, "--n", 3, "--out", tmp_path / "g.png", "--npy", tmp_path / "s.npy", *labels)  # fmt: skip
    assert np.load(tmp_path / "s.npy").shape == (3, 1, 8, 8)


def test_evaluate_a_conditional_model_with_the_dataset_labels(conditional_run):
    result = invoke("evaluate", conditional_run)
    assert math.isfinite(float(table_value(result.stdout, "bits/dim")))
    assert table_value(result.stdout, "images") == "20"


def test_labels_on_an_unconditional_model_are_refused(run_dir, tmp_path):
    result = invoke("sample", run_dir, "--n", 2, "--out", tmp_path / "g.png", "--label", 1, code=2)
    assert_one_error_line(result, "not class-conditional")


def test_info_shows_the_checkpoint_config_and_test_result(run_dir):
    result = invoke("info", run_dir)
    assert table_value(result.stdout, "step") == "2"
    assert table_value(result.stdout, "dataset") == "npz"
    assert table_value(result.stdout, "model.num_filters") == "4"
    test = json.loads((run_dir / "results.json").read_text())["test"]
    printed = float(table_value(result.stdout, "test bits/dim (EMA)"))
    assert printed == pytest.approx(test["bits_per_dim"], abs=1e-4)


@pytest.mark.parametrize("command", ["evaluate", "sample", "info"])
def test_bad_checkpoints_are_exit_2_naming_the_file(command, run_dir, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(512))
    truncated = tmp_path / "truncated.pt"
    whole = (run_dir / "checkpoints" / "step-00000002.pt").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    (tmp_path / "empty-run").mkdir()
    text = tmp_path / "notes.pt"
    text.write_text("e" * 101)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "pixelcnnpp-checkpoint", "x": _Opaque()}, pickled)
    resized = tmp_path / "resized.pt"
    state = load_checkpoint(run_dir)
    state["train_config"]["model"]["num_filters"] += 1
    torch.save(state, resized)
    cases = [
        (text, "not a readable checkpoint: checkpoints are zip archives; this is a text file"),
        (pickled, "objects other than tensors and plain values"),
        (tmp_path / "missing.pt", "not found"),
        (garbage, "not a readable checkpoint: checkpoints are zip archives; this is 512 bytes"),
        (truncated, "not a readable checkpoint: it begins as a zip archive"),
        (foreign, "not a pixelcnnpp checkpoint"),
        (tmp_path / "empty-run", "no checkpoint"),
    ]
    if command != "info":  # info reads the config, not the weights
        cases.append(
            (
                resized,
                "weights do not fit its model config: 40 of another shape (u_init.conv.bias is (4,) in the file, (5,) in the model",
            )
        )
    for path, message in cases:
        result = invoke(command, path, code=2)
        line = assert_one_error_line(result, message, path.name)
        assert "weights_only" not in line and not line.rstrip().endswith(":"), line


class _Opaque:
    """An object that only full unpickling could restore."""


# -- compare -----------------------------------------------------------------------------------------


def test_compare_two_likelihoods_on_tiny_arrays(data_root, tmp_path):
    result = invoke(
        "compare", "--dataset", "npz", "--data-dir", data_root / "npz", *TINY,
        "--max-steps", 1, "--subset", 16, "--out-dir", tmp_path / "out",
    )  # fmt: skip
    (folder,) = (tmp_path / "out").iterdir()
    assert folder.name.endswith("dmol-vs-softmax")
    report = json.loads((folder / "report.json").read_text())
    runs = report["datasets"]["npz"]["runs"]
    assert set(runs) == {"dmol", "softmax"} and report["budget"]["max_steps"] == 1
    for name, run in runs.items():
        row = next(line for line in result.stdout.splitlines() if line.strip("│ ").startswith(name))
        assert f"{run['test']['bits_per_dim']:.4f}" in row
    (paired,) = report["datasets"]["npz"]["paired"]
    assert f"{paired['mean_difference']:+.4f}" in result.stdout
    assert "softmax - dmol" in result.stdout
    assert table_value(result.stdout, "report") == str(folder / "report.md")


def test_compare_crosses_blocks_and_numbers_of_mixtures(data_root, tmp_path, registries):
    BLOCKS.register("gated_resnet_twin", GatedResnet)
    result = invoke(
        "compare", "--dataset", "npz", "--data-dir", data_root / "npz", *TINY,
        "--block", "gated_resnet", "--block", "gated_resnet_twin",
        "--num-mixtures", "1",  # after TINY's 2
        "--max-steps", 1, "--subset", 16, "--out-dir", tmp_path / "out",
    )  # fmt: skip
    (folder,) = (tmp_path / "out").iterdir()
    report = json.loads((folder / "report.json").read_text())
    names = ["dmol-gated_resnet-k2", "dmol-gated_resnet-k1"]
    names += ["dmol-gated_resnet_twin-k2", "dmol-gated_resnet_twin-k1"]
    assert [v["name"] for v in report["variants"]] == names
    assert folder.name.endswith("-vs-".join(names))
    cases = [(b, k) for b in ("gated_resnet", "gated_resnet_twin") for k in (2, 1)]
    for variant, (block, k) in zip(report["variants"], cases, strict=True):
        config = json.loads((folder / "npz" / variant["name"] / "config.json").read_text())
        assert config["model"]["block"] == block
        assert config["model"]["likelihood_kwargs"] == {"num_mixtures": k}
    paired = report["datasets"]["npz"]["paired"]
    assert [p["other"] for p in paired] == names[1:]
    assert {p["baseline"] for p in paired} == {names[0]}
    assert f"{names[3]} - {names[0]}" in result.stdout


# -- listings ---------------------------------------------------------------------------------------


def test_datasets_lists_names_shapes_and_where_they_are(data_root, monkeypatch):
    monkeypatch.setenv("PIXELCNNPP_DATA", str(data_root))
    result = invoke("datasets")
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 3}  # fmt: skip
    assert set(list_datasets()) <= set(rows)
    assert "1x28x28" in rows["fashion-mnist"] and "yes" in rows["fashion-mnist"]
    assert str(data_root / "fashion-mnist") in rows["fashion-mnist"]
    assert "no" in rows["cifar10"] and "--download" in result.stdout


def test_blocks_and_likelihoods_list_the_registries():
    blocks = invoke("blocks").stdout
    assert "gated_resnet" in blocks and "pixelcnnpp.autoregressive.blocks.GatedResnet" in blocks
    rows = {line.split("│")[1].strip(): line for line in blocks.splitlines() if line.count("│") > 3}  # fmt: skip
    assert set(list_blocks()) <= set(rows), blocks
    assert "yes" in rows["gated_resnet"] and "yes" in rows["gated_pixelcnn"]
    likelihoods = invoke("likelihoods").stdout
    assert "dmol" in likelihoods and "softmax" in likelihoods


PLUGIN = '''
"""Registers a block without incremental support and a renamed softmax head."""
from pixelcnnpp.autoregressive import GatedResnet, register_block
from pixelcnnpp.likelihoods import PixelSoftmaxHead, register_likelihood


@register_block("cli_test_block")
class PlainBlock(GatedResnet):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.incremental_context


register_likelihood("cli_test_softmax", PixelSoftmaxHead)
'''


@pytest.fixture
def plugin_in_cwd(tmp_path, monkeypatch, registries):
    """``cli_test_plugin.py`` in the current folder; registry, sys.path, modules restored."""
    (tmp_path / "cli_test_plugin.py").write_text(PLUGIN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield "cli_test_plugin"
    sys.modules.pop("cli_test_plugin", None)


def test_plugins_register_blocks_and_likelihoods(plugin_in_cwd):
    blocks = invoke("blocks", "--plugin", plugin_in_cwd).stdout
    row = next(line for line in blocks.splitlines() if "cli_test_block" in line)
    assert "cli_test_plugin.PlainBlock" in row and "no (falls back to naive)" in row
    assert "cli_test_softmax" in invoke("likelihoods", "--plugin", plugin_in_cwd).stdout
    assert issubclass(BLOCKS.get("cli_test_block"), GatedResnet)


def test_a_plugin_that_fails_to_import_is_exit_2_naming_it(tmp_path, monkeypatch):
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('half-written')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    result = invoke("blocks", "--plugin", "broken_plugin", code=2)
    assert_one_error_line(result, "broken_plugin", "half-written")
    sys.modules.pop("broken_plugin", None)


# -- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", "--preset", "large"], ["--preset", "demo", "small", "paper"]),
        (
            ["train", "--likelihood", "gaussian"],
            ["unknown likelihood 'gaussian'", "'dmol', 'softmax'"],
        ),
        (["train", "--block", "transformer"], ["unknown block 'transformer'", "gated_resnet"]),
        (
            ["train", "--dataset", "celeba"],
            ["unknown dataset 'celeba'", "fashion-mnist", "cifar10"],
        ),
        (["train", "--set", "learning_rate=0.1"], ["learning_rate", "lr"]),
        (["train", "--set", "model.width=3"], ["width", "num_filters"]),
        (["train", "--set", "batch_size=large"], ["batch_size must be an integer", "large"]),
        (["train", "--set", "batch_size"], ["FIELD=VALUE", "batch_size"]),
        (["train", "--batch-size", "0"], ["--batch-size"]),
        (["train", "--lr", "fast"], ["--lr"]),
        (["train", "--device", "tpu"], ["--device", "auto", "cpu", "cuda"]),
        (["train", "--precision", "fp8"], ["--precision", "fp32", "bf16"]),
        (["train", "--data-dir", "/no/such/folder"], ["--data-dir", "/no/such/folder"]),
        (["train", "--plugin", "no_such_plugin_module"], ["--plugin", "no_such_plugin_module"]),
        (["train", "--dataset", "mnist"], ["mnist: no train split found", "--download"]),
        (["train", "--likelihood", "softmax", "--num-mixtures", "3"], ["softmax", "num_mixtures"]),
        (["compare", "--steps", "2", "--max-minutes", "1"], ["--max-steps", "--max-minutes"]),
        (
            ["compare", "--likelihood", "dmol", "--likelihood", "beta"],
            ["unknown likelihood 'beta'"],
        ),
        (["compare", "--dataset", "celeba"], ["unknown dataset 'celeba'"]),
        (["compare", "--block", "gated_resnet", "--block", "axial"], ["unknown block 'axial'"]),
        (
            ["compare", "--block", "gated_resnet", "--block", "gated_resnet"],
            ["blocks must be distinct", "gated_resnet"],
        ),
        (
            ["compare", "--likelihood", "softmax", "--num-mixtures", "3"],
            ["--num-mixtures", "softmax"],
        ),
        (["compare", "--num-mixtures", "0"], ["--num-mixtures", "greater than or equal to 1"]),
        (["sample", "x.pt", "--method", "fast"], ["--method", "cached", "naive"]),
        (["evaluate"], ["Missing argument", "CHECKPOINT"]),
        (["fit"], ["No such command", "fit"]),
        (["--verbose"], ["--verbose"]),
    ],
)
def test_bad_input_is_exit_2_with_one_line_naming_what_was_expected(args, expected, data_root):
    if "--num-mixtures" in args:  # fails when the model is built, after the data is found
        args = [*args, "--data-dir", str(data_root / "fashion-mnist"), "--validation-size", "10"]
    result = invoke(*args, code=2)
    assert_one_error_line(result, *expected)


def test_debug_shows_the_traceback():
    result = invoke("--debug", "train", "--set", "learning_rate=0.1", code=2)
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("Error: unknown TrainConfig fields")


def test_errors_are_red(monkeypatch):
    result = CliRunner().invoke(app, ["train", "--block", "x"], env={"FORCE_COLOR": "1"})
    assert result.exit_code == 2
    assert "\x1b[1;31mError: unknown block 'x'" in result.stderr


def test_unexpected_failures_are_exit_1_and_interrupts_130(monkeypatch):
    def boom():
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(describe_command, "list_datasets", boom)
    result = invoke("datasets", code=1)
    assert_one_error_line(result, "RuntimeError: disk on fire", "--debug")

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(describe_command, "list_datasets", interrupted)
    assert_one_error_line(invoke("datasets", code=130), "interrupted")


def test_only_rank_0_prints(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert invoke("likelihoods").stdout == ""
    result = invoke("train", "--block", "x", code=2)
    assert_one_error_line(result, "[rank 1] Error: unknown block 'x'")


# -- the program itself ---------------------------------------------------------------------------


def test_help_version_and_no_arguments():
    assert "train" in invoke().stdout and "compare" in invoke("--help").stdout
    assert re.fullmatch(r"pixelcnn \(pixelcnnpp\) \S+\n", invoke("--version").stdout)
    for command in ("train", "evaluate", "sample", "compare", "datasets", "info"):
        assert "Usage" in invoke(command, "--help").stdout


@pytest.mark.parametrize(
    "command",
    [[sys.executable, "-m", "pixelcnnpp.cli"], [shutil.which("pixelcnn") or "pixelcnn"]],
    ids=["python -m", "console script"],
)
def test_the_program_runs_as_a_module_and_as_a_console_script(command):
    assert Path(command[0]).exists() or shutil.which(command[0]), "pixelcnn is not installed"
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Usage: pixelcnn" in done.stdout and "evaluate" in done.stdout


def test_docs_cli_md_is_the_rendered_reference():
    rendered = reference.render(app)
    assert invoke("docs").stdout == rendered
    assert (REPO / "docs" / "cli.md").read_text() == rendered, (
        "docs/cli.md is stale: python -m pixelcnnpp.cli docs > docs/cli.md"
    )
    for command in ("train", "evaluate", "sample", "compare", "datasets", "blocks", "info"):
        assert f"## `pixelcnn {command}`" in rendered
    assert "`--set FIELD=VALUE`" in rendered and "`docs`" not in rendered


def test_every_example_in_docs_cli_md_parses():
    """The examples a user would paste name real commands and options with valid values."""
    text = (REPO / "docs" / "cli.md").read_text()
    lines = [
        line
        for block in re.findall(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
        for line in block.splitlines()
    ]
    assert len(lines) >= 8
    group = typer.main.get_command(app)
    root = typer.Context(group, info_name="pixelcnn")
    for line in lines:
        words = shlex.split(line)
        words = words[words.index("pixelcnnpp.cli") + 1 :] if "torchrun" in words else words[1:]
        command = group.get_command(root, words[0])
        assert command is not None, line
        command.make_context(words[0], words[1:], parent=root)  # raises on a bad option


# -- what the CLI shows ------------------------------------------------------------------------------


def test_help_shows_no_value_type_for_flags_and_plain_argument_names():
    group = typer.main.get_command(app)
    for name in group.commands:
        result = invoke(name, "--help", env={"COLUMNS": "100"})
        assert "<bool>" not in result.stdout, name
        usage = next(line for line in result.stdout.splitlines() if "Usage:" in line)
        assert "{" not in usage, usage
    usage = invoke("info", "--help").stdout
    assert "Usage: pixelcnn info [OPTIONS] CHECKPOINT" in " ".join(usage.split())


def test_train_and_compare_take_the_shared_options_from_one_declaration():
    group = typer.main.get_command(app)
    params = {
        name: {p.name: p for p in group.commands[name].params} for name in ("train", "compare")
    }
    for name, _, default in SHARED_OPTIONS:
        train_option, compare_option = params["train"][name], params["compare"][name]
        assert train_option.opts == compare_option.opts and train_option.opts, name
        assert train_option.help == compare_option.help and train_option.help, name
        assert train_option.default == compare_option.default == default, name
    assert set(params["train"]) - set(params["compare"]) >= {"resume", "run_dir", "eval_every"}


def test_an_image_shape_the_dataset_overrides_is_refused(data_root, tmp_path):
    result = invoke(
        "train", "--dataset", "npz", "--data-dir", data_root / "npz", *TINY,
        "--set", "model.image_shape=[1,16,16]", "--run-dir", tmp_path / "r", code=2,
    )  # fmt: skip
    line = assert_one_error_line(result, "model.image_shape=[1, 16, 16]", "[1, 8, 8]")
    assert "comes from the dataset" in line


def test_more_stages_than_the_images_allow_are_refused(data_root, tmp_path):
    result = invoke(
        "train", "--dataset", "npz", "--data-dir", data_root / "npz", *TINY,
        "--num-stages", 10, "--run-dir", tmp_path / "r", code=2,
    )  # fmt: skip
    assert_one_error_line(result, "--num-stages 10", "8x8", "at most 4")
    assert not (tmp_path / "r").exists()


def test_info_of_a_run_shows_its_best_validation(run_dir):
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")["best_validation_bits_per_dim"]
    shown = table_value(invoke("info", run_dir).stdout, "best validation bits/dim")
    assert shown.startswith(f"{best:.4f}") and "best.pt" in shown


def test_resume_says_from_which_step(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    result = invoke("train", "--resume", copy, "--max-steps", 3)
    assert f"Resuming {copy} from step 2 (step-00000002.pt)" in " ".join(result.output.split())


def test_evaluate_draws_per_pixel_bits(run_dir, tmp_path):
    out = tmp_path / "maps" / "map.png"
    result = invoke("evaluate", run_dir, "--max-images", 12, "--heatmap", out, "--images", 3)
    printed = float(table_value(result.stdout, "bits/dim"))
    assert Image.open(out).size[0] > 300
    arrays = np.load(out.with_suffix(".npz"))
    assert arrays["mean"].shape == (8, 8) and arrays["per_image"].shape == (3, 8, 8)
    assert arrays["images"].shape == (3, 1, 8, 8)
    # an image's map averages to its bits/dim; the maps of the split to the printed value
    assert arrays["mean"].mean() == pytest.approx(printed, abs=1e-4)
    per_image = tmp_path / "pp.npy"
    invoke("evaluate", run_dir, "--max-images", 3, "--save-per-image", per_image)
    assert arrays["per_image"].mean((1, 2)) == pytest.approx(np.load(per_image), abs=1e-5)
    assert table_value(result.stdout, "heatmap arrays") == str(out.with_suffix(".npz"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--heatmap", "noext"], "--heatmap must be an image file name ending in .png"),
        (["--images", "2"], "--images shows images beside a heatmap"),
    ],
)
def test_evaluate_checks_its_output_paths_before_the_work(run_dir, args, message):
    assert_one_error_line(invoke("evaluate", run_dir, *args, code=2), message)


def test_evaluate_prints_the_per_image_file_it_wrote(run_dir, tmp_path):
    result = invoke("evaluate", run_dir, "--max-images", 2, "--save-per-image", tmp_path / "pp.txt")
    assert table_value(result.stdout, "per-image values") == str(tmp_path / "pp.txt.npy")
    assert np.load(tmp_path / "pp.txt.npy").shape == (2,)
