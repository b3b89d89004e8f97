"""Checkpoints: written atomically, read without executing code, the last N and the best kept."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from pixelcnnpp.autoregressive import PixelCNNConfig, PixelCNNPP

CHECKPOINT_FORMAT = "pixelcnnpp-checkpoint"
CHECKPOINT_VERSION = 1
_NAME = re.compile(r"^step-(\d{8,})\.pt$")


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupt or not one of ours; names the file."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` through a temporary file and a rename: a reader sees the old
    file or the complete new one, never half of one (also after ``kill -9``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` (no code from the file runs).

    A folder means its latest checkpoint (``<run>/checkpoints/step-*.pt``). Missing, truncated,
    corrupt or foreign files raise ``CheckpointError`` naming the file.
    """
    path = resolve_checkpoint(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # whatever garbage makes the unpickler or zip reader raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt?): {first}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a pixelcnnpp checkpoint (no format marker {CHECKPOINT_FORMAT!r})"
        )
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {state['version']}; this pixelcnnpp reads up to {CHECKPOINT_VERSION}"
        )
    return state


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or the latest checkpoint of a run folder or checkpoints folder."""
    path = Path(path)
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        latest = CheckpointManager(folder).latest()
        if latest is None:
            raise CheckpointError(f"no checkpoint (step-*.pt) found in {folder}")
        return latest
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def model_from_checkpoint(
    state: dict[str, Any], use_ema: bool = True, device: str | torch.device = "cpu"
) -> PixelCNNPP:
    """Rebuild the model a checkpoint was saved from (its config is inside), in eval mode,
    with the EMA (Polyak-averaged) weights unless ``use_ema=False``."""
    try:
        config = PixelCNNConfig.from_dict(state["model_config"])
        weights = state["ema"] if use_ema and state.get("ema") is not None else state["model"]
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint lacks the model config or weights: {error}") from None
    model = PixelCNNPP(config)
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise CheckpointError(
            f"checkpoint weights do not fit its model config: {str(error).splitlines()[0]}"
        ) from None
    return model.to(device).eval()


def load_model(
    path: str | os.PathLike, use_ema: bool = True, device: str | torch.device = "cpu"
) -> PixelCNNPP:
    """The model of a checkpoint file or run folder, ready to evaluate or sample."""
    return model_from_checkpoint(load_checkpoint(path), use_ema, device)


class CheckpointManager:
    """``step-XXXXXXXX.pt`` files in one folder: keeps the last ``keep`` and ``best.pt``."""

    def __init__(self, folder: str | os.PathLike, keep: int = 3):
        self.folder = Path(folder)
        self.keep = keep

    def steps(self) -> list[tuple[int, Path]]:
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := _NAME.match(p.name))]
        return sorted(found)

    def latest(self) -> Path | None:
        steps = self.steps()
        return steps[-1][1] if steps else None

    @property
    def best_path(self) -> Path:
        return self.folder / "best.pt"

    def save(self, state: dict[str, Any], step: int) -> Path:
        path = save_checkpoint(state, self.folder / f"step-{step:08d}.pt")
        for _, old in self.steps()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def save_best(self, state: dict[str, Any]) -> Path:
        return save_checkpoint(state, self.best_path)
