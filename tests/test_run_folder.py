"""Run folders under real faults: kills before the first checkpoint, stale temporary files,
foreign checkpoints, an interrupted final evaluation, a full disk; resumed logs identical."""

from __future__ import annotations

import errno
import json
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
import torch
from test_training import run_in_subprocess, tiny_config, tiny_npz, train_losses, wait_for_step
from typer.testing import CliRunner

from pixelcnnpp.cli import app
from pixelcnnpp.training import (
    CheckpointError,
    CheckpointManager,
    DiskFullError,
    Reporter,
    RunFolder,
    load_checkpoint,
    read_metrics,
    train,
)
from pixelcnnpp.training import loop as loop_module

__all__ = ["tiny_npz"]  # the data fixture, shared with test_training


def cli(*args, code: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def error_line(result) -> str:
    assert "Traceback" not in result.output, result.output
    (line,) = [line for line in result.stderr.splitlines() if "Error:" in line]
    return line


def killed_before_first_checkpoint(data: Path, run: Path) -> None:
    """A real ``kill -9`` of a run that has logged steps but written no checkpoint."""
    config = tiny_config(data, max_steps=10_000, checkpoint_every=10_000, validation_size=0)
    process = run_in_subprocess(config, run)
    wait_for_step(run, 3, process)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_a_run_killed_before_its_first_checkpoint_restarts_on_resume(tiny_npz, tmp_path):
    run = tmp_path / "r"
    killed_before_first_checkpoint(tiny_npz, run)
    folder = RunFolder(run)
    assert folder.state() == "started" and not folder.checkpoints.steps()
    run_id = folder.run_id
    debris = run / "checkpoints" / ".step-00000004.pt.x1y2.tmp"
    debris.parent.mkdir(exist_ok=True)
    debris.write_bytes(b"PK\x03\x04 half a checkpoint")
    (run / ".results.json.tmp").write_text("{")

    result = cli("train", "--resume", run, "--max-steps", 4)
    assert "has no checkpoint" in result.output and "restarting it from step 0" in result.output
    assert load_checkpoint(run)["step"] == 4
    assert folder.temporaries() == []  # the debris is gone
    assert folder.run_id == run_id  # the same run, restarted
    assert sorted(train_losses(run)) == [1, 2, 3, 4]  # the dead attempt's records are replaced
    assert folder.state() == "finished"


def test_run_dir_takes_over_a_folder_whose_run_never_checkpointed(tiny_npz, tmp_path):
    run = tmp_path / "r"
    killed_before_first_checkpoint(tiny_npz, run)
    config = tiny_config(tiny_npz, max_steps=2, validation_size=0)
    train(config, run, evaluate_test=False)
    assert load_checkpoint(run)["step"] == 2
    # a folder with checkpoints is never overwritten by a new run
    with pytest.raises(ValueError, match="already holds a run with checkpoints; continue it"):
        train(config, run)


def test_a_folder_with_only_debris_can_be_started_and_says_so_on_resume(tiny_npz, tmp_path):
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / ".step-00000004.pt.abc.tmp").write_bytes(b"x")
    line = error_line(cli("train", "--resume", run, code=2))
    assert "holds no run to resume (no config.json, no checkpoint)" in line
    assert f"--run-dir {run}" in line
    train(tiny_config(tiny_npz, max_steps=1, validation_size=0), run, evaluate_test=False)
    assert RunFolder(run).temporaries() == []


@pytest.fixture
def two_runs(tiny_npz, tmp_path):
    mine, other = tmp_path / "mine", tmp_path / "other"
    train(tiny_config(tiny_npz, max_steps=4, validation_size=0), mine, evaluate_test=False)
    other_config = tiny_config(tiny_npz, max_steps=8, validation_size=0, seed=3)
    train(other_config.replace(**{"model.num_filters": 6}), other, evaluate_test=False)
    return mine, other


def test_a_foreign_checkpoint_is_refused_and_nothing_is_touched(two_runs):
    mine, other = two_runs
    shutil.copy(other / "checkpoints" / "step-00000008.pt", mine / "checkpoints")
    before = {p.name: p.read_bytes() for p in mine.iterdir() if p.is_file()}
    with pytest.raises(CheckpointError, match="belongs to another run") as error:
        train(resume=mine, overrides={"max_steps": 12})
    assert "step-00000008.pt" in str(error.value) and "move it out of" in str(error.value)
    assert {p.name: p.read_bytes() for p in mine.iterdir() if p.is_file()} == before
    line = error_line(cli("train", "--resume", mine, "--max-steps", 12, code=2))
    assert "belongs to another run" in line


def test_a_foreign_checkpoint_of_a_run_without_ids_is_refused_by_its_config(two_runs):
    """Folders written before runs had ids: the checkpoint's config must be the folder's."""
    mine, other = two_runs
    config = json.loads((mine / "config.json").read_text())
    del config["run_id"]
    (mine / "config.json").write_text(json.dumps(config))
    foreign = load_checkpoint(other)
    del foreign["run_id"]
    torch.save(foreign, mine / "checkpoints" / "step-00000008.pt")
    with pytest.raises(CheckpointError, match=r"its config differs in .*model"):
        train(resume=mine, overrides={"max_steps": 12})


def test_pruning_removes_only_earlier_checkpoints(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    for step in (1, 2, 3, 99):
        (tmp_path / f"step-{step:08d}.pt").write_bytes(b"")
    manager.save({"step": 4}, 4)
    assert [s for s, _ in manager.steps()] == [3, 4, 99]


def test_an_interrupted_final_evaluation_says_so_and_resumes(tiny_npz, tmp_path, monkeypatch):
    run = tmp_path / "r"
    evaluate = loop_module.evaluate

    def interrupted(model, dataset, *args, **kwargs):
        if dataset.split == "test":
            raise KeyboardInterrupt
        return evaluate(model, dataset, *args, **kwargs)

    monkeypatch.setattr(loop_module, "evaluate", interrupted)
    result = train(tiny_config(tiny_npz, max_steps=4), run)
    assert result.status == "interrupted" and result.step == 4
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "interrupted" and results["step"] == 4
    assert results["interrupted_in"] == "final evaluation"
    assert results["resume"] == f"pixelcnn train --resume {run}"
    monkeypatch.setattr(loop_module, "evaluate", evaluate)
    printed = cli("train", "--resume", run).stdout
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "completed" and results["test"]["num_images"] > 0
    assert results["images_per_sec"] > 0  # the run's average: no step was trained this time
    assert "images/s" in printed and " 0.0 " not in printed


def test_a_resumed_run_logs_the_records_of_an_uninterrupted_one(tiny_npz, tmp_path):
    """The checkpoint at step 6 falls inside a logging window (every 4 steps)."""
    config = tiny_config(tiny_npz, max_steps=12, log_every=4, checkpoint_every=6)
    config = config.replace(validation_size=0)
    train(config, tmp_path / "whole", evaluate_test=False)
    train(config.replace(max_steps=6), tmp_path / "split", evaluate_test=False)
    train(resume=tmp_path / "split", overrides={"max_steps": 12}, evaluate_test=False)

    def records(run):
        timing = {"images_per_sec", "train_seconds"}
        return [
            {k: v for k, v in r.items() if k not in timing}
            for r in read_metrics(run / "metrics.jsonl")
            if r["kind"] == "train"
        ]

    assert [r["step"] for r in records(tmp_path / "whole")] == [4, 8, 12]
    assert records(tmp_path / "split") == records(tmp_path / "whole")


def mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs; needs root), unmounted afterwards."""
    disk = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    if not mount_tmpfs(disk, "1m"):
        pytest.skip("mounting a tmpfs needs root; the ENOSPC test below covers the logic")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


class FillDiskAt(Reporter):
    """Fill the disk right after ``step``, as another program writing there would."""

    def __init__(self, disk: Path, step: int):
        self.disk, self.at = disk, step

    def step(self, step, metrics):
        if step == self.at:
            with (self.disk / "filler").open("wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 4096)
                        f.flush()
                except OSError as error:
                    assert error.errno == errno.ENOSPC


def assert_disk_full_reported(error: DiskFullError, run: Path) -> None:
    message = str(error)
    assert message.startswith("the disk is full: writing")
    assert str(run) in message
    assert "step-00000002.pt, is intact" in message
    assert load_checkpoint(run / "checkpoints" / "step-00000002.pt")["step"] == 2
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_is_reported_with_the_intact_checkpoint(tiny_npz, small_disk):
    run = small_disk / "r"
    config = tiny_config(tiny_npz, max_steps=6, checkpoint_every=2, validation_size=0)
    config = config.replace(**{"model.num_filters": 4})
    with pytest.raises(DiskFullError) as error:
        train(config, run, reporter=FillDiskAt(small_disk, 3), evaluate_test=False)
    assert_disk_full_reported(error.value, run)
    (small_disk / "filler").unlink()  # space again: the run resumes
    assert train(resume=run, evaluate_test=False).step == 6


def test_a_write_that_fails_with_enospc_is_reported_as_a_full_disk(tiny_npz, tmp_path, monkeypatch):
    run = tmp_path / "r"
    save, calls = torch.save, []

    def full_after_first(obj, f, *args, **kwargs):
        calls.append(obj.get("step"))
        if len(calls) > 1:  # the second checkpoint (step 4)
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_after_first)
    config = tiny_config(tiny_npz, max_steps=6, checkpoint_every=2, validation_size=0)
    with pytest.raises(DiskFullError) as error:
        train(config, run, evaluate_test=False)
    assert_disk_full_reported(error.value, run)
    line = error_line(
        cli("train", "--resume", run, "--max-steps", 6, "--checkpoint-every", 2, code=1)
    )
    assert "the disk is full" in line and "Traceback" not in line


@pytest.mark.parametrize(
    "option", ["--lr", "--lr-decay", "--grad-clip", "--ema-decay", "--dropout", "--max-minutes"]
)
def test_every_float_option_of_train_refuses_nan(option, tmp_path):
    line = error_line(cli("train", option, "nan", "--run-dir", tmp_path / "r", code=2))
    assert "NaN" in line
    assert not (tmp_path / "r").exists()


def test_the_learning_curve_of_a_short_run_shows_its_training_points(tmp_path, monkeypatch):
    import matplotlib.figure

    from pixelcnnpp.training import plot_learning_curves

    drawn = {}

    def capture(figure, path, *args, **kwargs):
        drawn["lines"] = {
            line.get_label(): (len(line.get_xdata()), line.get_marker())
            for line in figure.axes[0].lines
        }

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", capture)
    one = [{"kind": "train", "step": 2, "bits_per_dim": 5.0}]
    plot_learning_curves({"dmol": one}, tmp_path / "c.png")
    points, marker = drawn["lines"]["dmol train"]
    assert points == 1 and marker not in (None, "None", "", " ")


def test_runs_lists_the_runs_of_a_folder_newest_first(tiny_npz, tmp_path):
    import os

    root = tmp_path / "runs"
    config = tiny_config(tiny_npz, max_steps=2, eval_every=1)
    train(config, root / "first")
    train(config.replace(**{"model.likelihood": "softmax", "model.likelihood_kwargs": {}}),
          root / "second", evaluate_test=False)  # fmt: skip
    (root / "third").mkdir()
    (root / "third" / "config.json").write_text(json.dumps(config.to_dict()))
    (root / "not-a-run").mkdir()
    for age, name in enumerate(["third", "second", "first"]):  # third is the newest
        os.utime(root / name / "config.json", (1e9 - age * 60, 1e9 - age * 60))
    result = cli("runs", root)
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == ["third", "second", "first"]
    first = [cell.strip() for cell in rows[2].split("│")[1:-1]]
    results = json.loads((root / "first" / "results.json").read_text())
    best = min(r["bits_per_dim"] for r in read_metrics(root / "first" / "metrics.jsonl")
               if r["kind"] == "validation")  # fmt: skip
    assert first[2:] == [
        "npz", "dmol", "gated_resnet", "2", f"{best:.4f}", f"{results['test']['bits_per_dim']:.4f}",
        "completed",
    ]  # fmt: skip
    assert [cell.strip() for cell in rows[1].split("│")[1:-1]][3] == "softmax"
    assert [cell.strip() for cell in rows[0].split("│")[1:-1]][-1] == "no checkpoint yet"
    assert "not a folder of runs" in error_line(cli("runs", tmp_path / "missing", code=2))


@pytest.mark.parametrize("command", ["sample", "complete"])
def test_temperature_refuses_nan(command, tmp_path):
    line = error_line(cli(command, tmp_path, "--temperature", "nan", code=2))
    assert "NaN" in line
