"""The run folder: the one place that knows a run's files and what state they are in.

    RUN/config.json        the TrainConfig, the run's identity (``run_id``) and parameter count
    RUN/data.json          the files each split was read from, with sizes and checksum results
    RUN/metrics.jsonl      one record per logged step and per evaluation, headed by the run's id
    RUN/checkpoints/       step-XXXXXXXX.pt (the last N) and best.pt, each naming the run_id
    RUN/samples/           periodic sample grids; RUN/samples.png at the end
    RUN/eval/              per-image bits/dim of each evaluated split
    RUN/learning_curve.png, RUN/results.json

Every JSON file is written to a temporary file, flushed to disk and renamed, so a reader (or
a resumed run) sees the old file or the complete new one. Whatever a kill or a full disk left
behind, ``state`` tells what the folder holds and ``clean_temporaries`` removes the debris.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from .atomic import atomic_write
from .checkpoint import CheckpointManager
from .metrics import read_metrics

RunState = Literal["empty", "started", "checkpointed", "finished"]


class TrainingError(RuntimeError):
    """The run cannot go on (e.g. too many non-finite steps in a row); its folder is intact."""


class DiskFullError(TrainingError):
    """No space left where the run writes; names the place and the last good checkpoint."""


def new_run_id() -> str:
    return uuid.uuid4().hex


def new_run_dir(root: str | os.PathLike, config) -> Path:
    """``root/<date>-<time>-<dataset>-<likelihood>``, made unique."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return unique_path(Path(root) / f"{stamp}-{config.dataset}-{config.model.likelihood}")


def unique_path(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``, ... : the first that does not exist."""
    candidate, k = path, 1
    while candidate.exists():
        k += 1
        candidate = path.with_name(f"{path.name}-{k}")
    return candidate


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as JSON, whole or not at all (``atomic_write``)."""
    text = (json.dumps(data, indent=2) + "\n").encode()
    return atomic_write(path, lambda f: f.write(text))


class RunFolder:
    """The files of one run (see the module docstring for the layout)."""

    def __init__(self, path: str | os.PathLike, keep_checkpoints: int = 3):
        self.path = Path(path)
        self.checkpoints = CheckpointManager(self.path / "checkpoints", keep=keep_checkpoints)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- files ------------------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def results_path(self) -> Path:
        return self.path / "results.json"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    def write_json(self, name: str, data: Any) -> Path:
        return write_json_atomic(self.path / name, data)

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A JSON file of the run, or None when it is missing or unreadable."""
        try:
            data = json.loads((self.path / name).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def read_config(self) -> dict[str, Any] | None:
        return self.read_json("config.json")

    @property
    def run_id(self) -> str | None:
        config = self.read_config()
        return config.get("run_id") if config else None

    # -- state ------------------------------------------------------------------------------------

    def state(self) -> RunState:
        """``empty``: no config (nothing or only debris); ``started``: a config but no
        checkpoint; ``checkpointed``: at least one step checkpoint; ``finished``: results
        of a run that completed or reached its time limit."""
        if not self.config_path.exists():
            return "empty"
        if not self.checkpoints.steps():
            return "started"
        results = self.read_json("results.json")
        if results and results.get("status") in ("completed", "time_limit"):
            return "finished"
        return "checkpointed"

    def temporaries(self) -> list[Path]:
        """Files a killed writer left: ``.*.tmp`` here and in checkpoints/, eval/."""
        found = []
        for folder in (self.path, self.checkpoints.folder, self.eval_dir):
            if folder.is_dir():
                found += [p for p in folder.iterdir() if p.is_file() and p.name.endswith(".tmp")]
        return sorted(found)

    def clean_temporaries(self) -> list[Path]:
        """Remove what ``temporaries`` finds; returns the removed paths."""
        removed = self.temporaries()
        for p in removed:
            p.unlink(missing_ok=True)
        return removed

    # -- errors -----------------------------------------------------------------------------------

    def disk_full(self, error: BaseException, what: str) -> DiskFullError | None:
        """A ``DiskFullError`` for an error that means no space is left, else None."""
        if not _is_disk_full(error):
            return None
        latest = self.checkpoints.latest()
        good = (
            f"the last good checkpoint, {latest}, is intact"
            if latest is not None
            else "no checkpoint had been written yet"
        )
        return DiskFullError(
            f"the disk is full: writing {what} in {self.path} failed ({good}). Free space, then "
            f"resume with: pixelcnn train --resume {self.path}",
        )


def _is_disk_full(error: BaseException) -> bool:
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(error)
        # torch's zip writer reports a short write without the errno
        if "No space left on device" in text or "file write failed" in text:
            return True
        error = error.__cause__ or error.__context__
    return False


@dataclass
class RunSummary:
    """One line of ``pixelcnn runs``: what a run folder holds, read from its files."""

    path: Path
    state: RunState
    status: str  # results.json's status, or the folder's state when it has none
    dataset: str | None
    likelihood: str | None
    block: str | None
    step: int | None
    best_validation: float | None  # the lowest validation bits/dim logged
    test: float | None  # test bits/dim of the final evaluation
    started: float  # config.json's modification time (seconds since the epoch)


def summarize_run(path: str | os.PathLike) -> RunSummary:
    """What ``path`` holds, from config.json, results.json, metrics.jsonl and checkpoints/."""
    folder = RunFolder(path)
    config = folder.read_config() or {}
    model = config.get("model") or {}
    results = folder.read_json("results.json") or {}
    steps = folder.checkpoints.steps()
    step = results.get("step", steps[-1][0] if steps else None)
    validations = (
        [
            r["bits_per_dim"]
            for r in read_metrics(folder.metrics_path)
            if r.get("kind") == "validation" and isinstance(r.get("bits_per_dim"), (int, float))
        ]
        if folder.metrics_path.is_file()
        else []
    )
    state = folder.state()
    return RunSummary(
        path=folder.path,
        state=state,
        status=results.get("status") or {"started": "no checkpoint yet"}.get(state, state),
        dataset=config.get("dataset"),
        likelihood=model.get("likelihood"),
        block=model.get("block"),
        step=step,
        best_validation=min(validations) if validations else None,
        test=(results.get("test") or {}).get("bits_per_dim"),
        started=folder.config_path.stat().st_mtime if folder.config_path.exists() else 0.0,
    )


def list_runs(root: str | os.PathLike) -> list[RunSummary]:
    """The run folders directly inside ``root`` (those with a config.json), newest first."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder of runs")
    found = [summarize_run(p) for p in root.iterdir() if (p / "config.json").is_file()]
    return sorted(found, key=lambda run: run.started, reverse=True)
