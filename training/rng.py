"""Random states of a training process: Python, NumPy, torch's CPU generator and the run's GPU.

A checkpoint holds one state per process. Only the run device's own CUDA generator is saved
(not every visible GPU's), so a checkpoint written by a process that saw eight GPUs resumes
in one that sees one.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(device: torch.device) -> dict[str, Any]:
    """The random states this process draws from, as tensors and plain values."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        },
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what ``rng_state`` returned. The GPU state goes to ``device``; a state saved on
    CPU leaves the GPU's generator alone. Checkpoints of version 1 held a list with every
    visible GPU's state: the entry of ``device``'s index is used when it exists, else the
    first."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if isinstance(cuda, (list, tuple)):
        cuda = (
            (cuda[device.index or 0] if (device.index or 0) < len(cuda) else cuda[0])
            if cuda
            else None
        )
    if cuda is not None and device.type == "cuda":
        torch.cuda.set_rng_state(cuda, device)
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
