"""Checkpoints: written atomically, read without executing code, the last N and the best kept."""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from pixelcnnpp.autoregressive import PixelCNNConfig, PixelCNNPP

from .atomic import atomic_write

CHECKPOINT_FORMAT = "pixelcnnpp-checkpoint"
CHECKPOINT_VERSION = 2
_NAME = re.compile(r"^step-(\d{8,})\.pt$")


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupt or not one of ours; names the file."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` through a temporary file and a rename: a reader sees the old
    file or the complete new one, never half of one (also after ``kill -9``)."""
    state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` (no code from the file runs).

    A folder means its latest checkpoint (``<run>/checkpoints/step-*.pt``). Missing, truncated,
    corrupt or foreign files raise ``CheckpointError`` naming the file.
    """
    path = resolve_checkpoint(path)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a readable checkpoint: {_what_file(path)}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # weights_only refused an object: the file holds more than tensors and plain values
        raise CheckpointError(
            f"{path} is a torch file holding objects other than tensors and plain values; "
            "pixelcnnpp reads only its own checkpoints and never unpickles such objects, "
            "since unpickling can run code from the file"
        ) from None
    except Exception:  # a damaged archive makes the zip reader or unpickler raise anything
        raise CheckpointError(
            f"{path} is a zip archive but not a readable checkpoint: it is truncated or damaged"
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
    state: dict[str, Any],
    use_ema: bool = True,
    device: str | torch.device = "cpu",
    source: str | os.PathLike | None = None,
) -> PixelCNNPP:
    """Rebuild the model a checkpoint was saved from (its config is inside), in eval mode,
    with the EMA (Polyak-averaged) weights unless ``use_ema=False``."""
    try:
        config = PixelCNNConfig.from_dict(model_config_of(state))
        weights = state["ema"] if use_ema and state.get("ema") is not None else state["model"]
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint lacks the model config or weights: {error}") from None
    model = PixelCNNPP(config)
    mismatch = _weights_mismatch(model.state_dict(), weights)
    if mismatch:
        where = f"{source}: the checkpoint's" if source is not None else "the checkpoint's"
        raise CheckpointError(f"{where} weights do not fit its model config: {mismatch}")
    model.load_state_dict(weights)
    return model.to(device).eval()


def model_config_of(state: dict[str, Any]) -> dict[str, Any]:
    """The model config inside a loaded checkpoint (version 1 kept a copy of its own)."""
    try:
        return state["model_config"] if "model_config" in state else state["train_config"]["model"]
    except (KeyError, TypeError):
        raise CheckpointError(
            "the checkpoint lacks the model config (train_config.model)"
        ) from None


def _weights_mismatch(expected: dict[str, Any], weights: dict[str, Any]) -> str:
    """What keeps ``weights`` from loading into a model with ``expected``; "" if nothing."""

    def names(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    shapes = [
        f"{k} is {tuple(weights[k].shape)} in the file, {tuple(v.shape)} in the model"
        for k, v in expected.items()
        if k in weights and getattr(weights[k], "shape", None) != v.shape
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensors missing ({names(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} tensors the model does not have ({names(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} of another shape ({'; '.join(shapes[:2])})")
    return "; ".join(parts)


def _what_file(path: Path) -> str:
    """Why a file that is not a zip archive is not a checkpoint (torch.save writes zips)."""
    head = path.open("rb").read(512)
    if not head:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04"):
        return (
            "it begins as a zip archive (as checkpoints do) but its end is missing: it was "
            "truncated, e.g. by a full disk or an interrupted copy"
        )
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return f"checkpoints are zip archives; this is {path.stat().st_size:,} bytes of other data"
    return "checkpoints are zip archives; this is a text file"


def load_model(
    path: str | os.PathLike, use_ema: bool = True, device: str | torch.device = "cpu"
) -> PixelCNNPP:
    """The model of a checkpoint file or run folder, ready to evaluate or sample."""
    return model_from_checkpoint(load_checkpoint(path), use_ema, device, source=path)


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
        """Write ``step-XXXXXXXX.pt`` and prune to the last ``keep``: only checkpoints of
        earlier steps are removed, never the one just written or any of a later step (which
        this run did not write)."""
        path = save_checkpoint(state, self.folder / f"step-{step:08d}.pt")
        earlier = [p for s, p in self.steps() if s < step]
        for old in earlier[: max(len(earlier) - (self.keep - 1), 0)]:
            old.unlink(missing_ok=True)
        return path

    def save_best(self, state: dict[str, Any]) -> Path:
        return save_checkpoint(state, self.best_path)
