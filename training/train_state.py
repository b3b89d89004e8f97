"""What a training checkpoint holds, and the only code that knows its keys.

A checkpoint is ``TrainState.to_dict()`` saved with ``save_checkpoint``. Version 2 (this one)
names the run it belongs to (``run_id``), keeps the model config once (inside
``train_config``), the learning rate beside Adam's state, one random state per process with
only that process's GPU, and the open logging window, so that the first record after a
resume is the record an uninterrupted run writes. Version-1 checkpoints are read too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .checkpoint import CheckpointError


@dataclass
class LogWindow:
    """Sums since the last logged record (good steps only), and the current streak of bad
    steps: plain numbers here, tensors on the device in the loop."""

    loss_sum: float = 0.0
    good_steps: int = 0
    bad_streak: int = 0


@dataclass
class TrainState:
    train_config: dict[str, Any]
    model: dict[str, Any]
    ema: dict[str, Any]
    ema_updates: int
    optimizer: dict[str, Any]  # {"adam": torch Adam state, "lr": float64 tensor}
    rng: list[dict[str, Any]]  # one per process, rank order
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    train_seconds: float = 0.0
    images_seen: int = 0
    bad_steps: int = 0
    best_validation_bits_per_dim: float = math.inf
    run_id: str | None = None
    run_dir: str | None = None
    world_size: int = 1
    window: LogWindow = field(default_factory=LogWindow)

    @property
    def model_config(self) -> dict[str, Any]:
        return self.train_config["model"]

    def to_dict(self) -> dict[str, Any]:
        state = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "window"}
        state["window"] = asdict(self.window)
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any], source: str = "checkpoint") -> TrainState:
        """From a loaded checkpoint of version 1 or 2; missing keys raise ``CheckpointError``."""
        try:
            if state.get("version", 1) < 2:
                return cls._from_version1(state)
            # the keys without defaults must be there; the others may be missing
            fields = {k: state[k] for k in cls.__dataclass_fields__ if k in state and k != "window"}
            window = LogWindow(**state["window"]) if "window" in state else LogWindow()
            return cls(**fields, window=window)
        except (KeyError, TypeError) as error:
            raise CheckpointError(
                f"{source} is a pixelcnnpp checkpoint without the training state "
                f"(missing {error}); it can be evaluated or sampled but not resumed"
            ) from None

    @classmethod
    def _from_version1(cls, state: dict[str, Any]) -> TrainState:
        adam = state["optimizer"]
        return cls(
            train_config=state["train_config"],
            model=state["model"],
            ema=state["ema"],
            ema_updates=int(state["ema_updates"]),
            optimizer={"adam": adam, "lr": float(adam["param_groups"][0]["lr"])},
            rng=state["rng"],
            step=state["step"],
            epoch=state["epoch"],
            batch_in_epoch=state["batch_in_epoch"],
            train_seconds=state["train_seconds"],
            bad_steps=state["bad_steps"],
            best_validation_bits_per_dim=state["best_validation_bits_per_dim"],
            run_dir=state.get("run_dir"),
            world_size=state.get("world_size", 1),
        )
