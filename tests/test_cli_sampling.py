"""``pixelcnn sample`` and ``pixelcnn complete`` on the tiny runs of ``test_cli.py``: scaled
grids, ``--scale``/``--nrow``, batches, output paths checked before any work (exit 2) and the
paths actually written printed; completions from files and from the run's dataset."""

from __future__ import annotations

import numpy as np
import pytest
import test_cli
import torch
from PIL import Image
from test_cli import assert_one_error_line, invoke, table_value

from pixelcnnpp.autoregressive import PixelCNNPP
from pixelcnnpp.autoregressive.replay import Tape
from pixelcnnpp.cli import app, reference
from pixelcnnpp.training import load_dataset
from pixelcnnpp.training.images import default_scale, image_grid, side_by_side

# The tiny data and runs of test_cli.py (module-scoped there, built again for this module).
data_root, run_dir, conditional_run = test_cli.data_root, test_cli.run_dir, test_cli.conditional_run
isolated_locations = test_cli.isolated_locations


def grid_size(rows: int, columns: int, side: int = 8, scale: int = 14) -> tuple[int, int]:
    """(width, height) of a grid of ``side``-pixel tiles 2 pixels apart, scaled."""
    return ((columns * (side + 2) - 2) * scale, (rows * (side + 2) - 2) * scale)


@pytest.fixture
def calls(monkeypatch):
    """The batch sizes the model is asked to sample or complete."""
    seen = []
    for name in ("sample", "complete"):
        method = getattr(PixelCNNPP, name)

        def recording(self, *args, _method=method, _name=name, **kwargs):
            first = args[0]
            seen.append((_name, first if isinstance(first, int) else len(first)))
            return _method(self, *args, **kwargs)

        monkeypatch.setattr(PixelCNNPP, name, recording)
    return seen


# -- grids ---------------------------------------------------------------------------------------


def test_default_scale_makes_tiles_comfortable():
    assert [default_scale(s, s) for s in (8, 28, 32, 64, 112, 300)] == [14, 4, 4, 2, 1, 1]
    assert default_scale(28, 100) == 2


def test_image_grid_scales_every_pixel_and_takes_nrow():
    images = torch.arange(6).view(6, 1, 1, 1) * 51
    grid = image_grid(images, nrow=3, padding=1, scale=2)
    assert grid.shape == ((2 * 2 - 1) * 2, (3 * 2 - 1) * 2, 1)
    assert (grid[:2, :2] == 0).all() and (grid[:2, 4:6] == 51).all() and (grid[4:, 8:] == 255).all()
    with pytest.raises(ValueError, match="scale must be a positive integer"):
        image_grid(images, scale=0)


def test_side_by_side_writes_each_label_above_its_grid():
    grids = [np.full((20, 30, 3), 80, np.uint8), np.full((20, 40, 3), 80, np.uint8)]
    canvas = side_by_side(grids, gap=8, labels=["dmol", "softmax"])
    header, body = canvas[:22], canvas[22:]
    assert (body[:20, :30] == 80).all() and (body[:20, 38:78] == 80).all()
    for start, stop in ((0, 30), (38, 78)):  # white text over each grid's columns
        assert (header[:, start:stop] == 255).any()
    assert (side_by_side(grids)[:20, :30] == 80).all()  # no labels: no header
    with pytest.raises(ValueError, match="labels must name each of the 2 grids"):
        side_by_side(grids, labels=["one"])


# -- sample --------------------------------------------------------------------------------------


def test_sample_grid_is_scaled_up_by_default_and_takes_scale_and_nrow(run_dir, tmp_path):
    invoke("sample", run_dir, "--n", 3, "--out", tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as image:
        assert image.size == grid_size(2, 2)  # 8x8 tiles, 14x: 112 screen pixels each
    invoke("sample", run_dir, "--n", 3, "--out", tmp_path / "b.png", "--scale", 3, "--nrow", 3)
    with Image.open(tmp_path / "b.png") as image:
        assert image.size == grid_size(1, 3, scale=3)


def test_sample_draws_large_n_in_batches(run_dir, tmp_path, calls):
    result = invoke("sample", run_dir, "--n", 5, "--batch-size", 2, "--out", tmp_path / "g.png", "--npy", tmp_path / "s.npy")  # fmt: skip
    assert calls == [("sample", 2), ("sample", 2), ("sample", 1)]
    assert np.load(tmp_path / "s.npy").shape == (5, 1, 8, 8)
    assert table_value(result.stdout, "batch size") == "2"


def test_sample_writes_npy_where_it_says(run_dir, tmp_path):
    result = invoke("sample", run_dir, "--n", 2, "--out", tmp_path / "g.png", "--npy", tmp_path / "s.dat")  # fmt: skip
    assert table_value(result.stdout, "pixels") == str(tmp_path / "s.dat.npy")
    assert np.load(tmp_path / "s.dat.npy").shape == (2, 1, 8, 8)
    assert not (tmp_path / "s.dat").exists()


@pytest.mark.parametrize("command", ["sample", "complete"])
def test_replayed_rows_give_the_same_images_from_the_cli(command, run_dir, tmp_path, monkeypatch):
    what = ["--n", 3] if command == "sample" else ["--split", "test", "--count", 2, "--keep-rows", 3]  # fmt: skip
    replays, replay = [], Tape.replay
    monkeypatch.setattr(Tape, "replay", lambda tape: replays.append(1) or replay(tape))
    drawn, counts = {}, {}
    for flag in ("--replay", "--no-replay"):
        raw = tmp_path / f"{flag}.npy"
        invoke(command, run_dir, *what, flag, "--out", tmp_path / "g.png", "--npy", raw)
        drawn[flag], counts[flag] = np.load(raw), len(replays)
        replays.clear()
    assert np.array_equal(drawn["--replay"], drawn["--no-replay"])
    assert counts["--replay"] > 0 and counts["--no-replay"] == 0, counts


@pytest.mark.parametrize("command", ["sample", "complete"])
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--out", "noext", "--out must be an image file name ending in .png"),
        ("--out", "grid.xyz", "--out must be an image file name"),
        ("--out", "blocker/grid.png", "is a file, not a folder"),
        ("--out", "folder.png", "is a folder"),
        ("--npy", "blocker/s.npy", "is a file, not a folder"),
    ],
)
def test_output_paths_are_checked_before_any_work(
    command, option, value, message, run_dir, tmp_path, calls, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    (tmp_path / "folder.png").mkdir()
    args = {"--out": "g.png", option: value}
    extra = ["--split", "test", "--keep-rows", 2] if command == "complete" else []
    result = invoke(command, run_dir, *[a for kv in args.items() for a in kv], *extra, code=2)
    assert_one_error_line(result, option, message)
    assert calls == []


def test_a_read_only_folder_is_refused_before_any_work(run_dir, tmp_path, calls, monkeypatch):
    folder = tmp_path / "read-only"
    folder.mkdir()
    real_access = __import__("os").access
    # (the tests run as root, who may write anywhere: report the folder read-only instead)
    monkeypatch.setattr(
        "os.access",
        lambda p, mode: False if str(p).startswith(str(folder)) else real_access(p, mode),
    )
    result = invoke("sample", run_dir, "--out", folder / "g.png", code=2)
    assert_one_error_line(result, "--out", "cannot be written", "read-only")
    assert calls == []


# -- complete ------------------------------------------------------------------------------------


def test_complete_images_from_the_runs_test_split(run_dir, data_root, tmp_path):
    out, raw = tmp_path / "c.png", tmp_path / "c.npy"
    result = invoke(
        "complete", run_dir, "--split", "test", "--count", 2, "--keep-rows", 3,
        "--n-per-image", 3, "--out", out, "--npy", raw, "--batch-size", 4,
    )  # fmt: skip
    assert table_value(result.stdout, "grid") == str(out)
    assert table_value(result.stdout, "pixels") == str(raw)
    assert table_value(result.stdout, "kept") == "3 of 8 rows"
    with Image.open(out) as image:
        assert image.size == grid_size(2, 2 + 3)  # original, kept part, 3 completions
        grid = np.asarray(image)
    test = load_dataset("npz", "test", data_dir=data_root / "npz").images[:2].numpy()
    completions = np.load(raw)
    assert completions.shape == (2, 3, 1, 8, 8) and completions.dtype == np.uint8
    assert (completions[:, :, :, :3] == test[:, None, :, :3]).all()  # kept rows
    assert (completions[:, :, :, 3:] != test[:, None, :, 3:]).any()
    first = grid[:112, :112]  # the first original, 14x
    assert (first == test[0, 0].repeat(14, 0).repeat(14, 1)).all()
    kept = grid[:112, 140 : 140 + 112]
    assert (kept[: 3 * 14] == first[: 3 * 14]).all() and (kept[3 * 14 :] == 127).all()


def test_complete_images_from_files(run_dir, tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, 1, 8, 8))
    np.save(tmp_path / "x.npy", pixels)
    np.savez(tmp_path / "x.npz", images=pixels[:, 0])  # [N, H, W] for one channel
    for i in range(2):
        Image.fromarray(pixels[i, 0].astype(np.uint8)).save(tmp_path / f"{i}.png")
    outputs = []
    for images in (["x.npy"], ["x.npz"], ["0.png", "1.png"]):
        raw = tmp_path / f"out-{images[0]}.npy"
        args = [a for name in images for a in ("--images", tmp_path / name)]
        invoke("complete", run_dir, *args, "--keep-rows", 4, "--n-per-image", 2, "--out", tmp_path / "g.png", "--npy", raw)  # fmt: skip
        outputs.append(np.load(raw))
    assert all(np.array_equal(o, outputs[0]) for o in outputs)  # the same images, the same draws
    assert (outputs[0][:, :, :, :4] == pixels[:, None, :, :4]).all()


def test_complete_a_conditional_model_with_the_split_labels(conditional_run, tmp_path, calls):
    invoke("complete", conditional_run, "--split", "test", "--count", 2, "--keep-rows", 2, "--n-per-image", 2, "--out", tmp_path / "g.png")  # fmt: skip
    assert calls == [("complete", 4)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give the images to complete"),
        (["--split", "test", "--images", "x.npy"], "give the images to complete"),
        (["--split", "test", "--keep-rows", 9], "--keep-rows must be at most the image height 8"),
        (["--images", "missing.npy"], "no such file"),
        (["--images", "wrong.npy"], "must hold images [N, 1, 8, 8]"),
        (["--images", "big.npy"], "pixels must lie in [0, 255]"),
        (["--images", "small.png"], "is 4x4 pixels; the model draws 8x8"),
        (["--images", "x.npy", "--images", "small.png"], "one .npy/.npz file or any number of PNG"),
    ],
)
def test_complete_refuses_bad_input(args, message, run_dir, tmp_path, monkeypatch, calls):
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", np.zeros((1, 1, 8, 8), np.uint8))
    np.save("wrong.npy", np.zeros((2, 3, 8, 8), np.uint8))
    np.save("big.npy", np.full((1, 1, 8, 8), 300))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save("small.png")
    if "--keep-rows" not in args:
        args = [*args, "--keep-rows", 2]
    result = invoke("complete", run_dir, *args, code=2)
    assert_one_error_line(result, message)
    assert calls == []


def test_complete_is_in_the_cli_reference():
    rendered = reference.render(app)
    assert "## `pixelcnn complete`" in rendered and "`--keep-rows <int range>`" in rendered
    assert "--keep-rows" in invoke("complete", "--help").stdout
