"""The paper's optimiser and weight averaging, written so that a step never waits for the GPU.

A step whose loss or gradient is not finite is skipped. Deciding that on the host would mean
reading a value back from the GPU every step, which stops the CPU from queueing work ahead.
Instead the skip is a tensor on the device: fused Adam takes it as ``found_inf`` (as it does
from a gradient scaler) and leaves parameters, moments and step count untouched; the learning
rate decays only on steps taken; the average moves with weight zero on skipped steps.
Where fused Adam is missing the skip is read on the host (one sync per step, still correct).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class Adam:
    """Adam (Kingma & Ba) with the learning rate multiplied by ``decay`` after every step taken.

    ``step(skip)`` with ``skip`` a boolean scalar tensor on the parameters' device. The
    learning rate is kept in float64 (``lr``: a tensor on the device), so after a million
    steps it is ``lr0 * decay**steps`` to float64 rounding, as a Python float would be.
    """

    def __init__(
        self, params, lr: float, betas: tuple[float, float], decay: float, device: torch.device
    ):
        params = list(params)
        self.device = device
        self.lr = torch.tensor(lr, dtype=torch.float64, device=device)
        self.decay = decay
        self._factors = torch.tensor([1.0, decay], dtype=torch.float64, device=device)
        # fused CUDA kernels read a float32 learning rate on the device; the CPU kernel reads a
        # host scalar (float64 keeps it exact)
        group_lr = self.lr.to(torch.float32) if device.type == "cuda" else self.lr.clone()
        try:
            self.optimizer = torch.optim.Adam(params, lr=group_lr, betas=betas, fused=True)
            self.fused = True
        except (RuntimeError, TypeError, ValueError):
            self.optimizer = torch.optim.Adam(params, lr=lr, betas=betas)
            self.fused = False

    @property
    def params(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self, skip: torch.Tensor) -> None:
        group = self.optimizer.param_groups[0]
        if self.fused:
            group["lr"].copy_(self.lr)
            self.optimizer.found_inf = skip.to(torch.float32)
            self.optimizer.step()
        elif not bool(skip):
            group["lr"] = float(self.lr)
            self.optimizer.step()
        self.lr.mul_(self._factors[(~skip).to(torch.int64)])

    def state_dict(self) -> dict[str, Any]:
        return {"adam": self.optimizer.state_dict(), "lr": self.lr.detach().cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        group_lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.load_state_dict(state["adam"])
        self.optimizer.param_groups[0]["lr"] = group_lr
        self.lr.copy_(torch.as_tensor(state["lr"], dtype=torch.float64))

    def load_version1(self, optimizer: dict[str, Any]) -> None:
        """A version-1 checkpoint: torch's Adam state with the current rate as a float."""
        lr = float(optimizer["param_groups"][0]["lr"])
        self.load_state_dict({"adam": optimizer, "lr": lr})


class EMA:
    """Polyak averaging: ``ema <- d * ema + (1 - d) * params`` after every step taken.

    With ``warmup`` the decay after ``n`` updates is ``min(decay, (1 + n) / (10 + n))`` (as
    TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``), so that the average is
    useful early in short runs; without it ``d = decay``. The first update copies the
    weights. ``module`` is the averaged model (eval mode, no gradients).
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup = decay, warmup
        device = next(model.parameters()).device
        self.updates = torch.zeros((), dtype=torch.int64, device=device)

    def _groups(self, model: nn.Module):
        """Averaged and current tensors by dtype, and the non-float pairs: found once, since
        a step's Python overhead is paid on the host every step."""
        if getattr(self, "_cached", (None,))[0] is not model:
            mine = [*self.module.parameters(), *self.module.buffers()]
            theirs = [*model.parameters(), *model.buffers()]  # updated in place by training
            pairs = list(zip(mine, theirs, strict=True))
            floats: dict[torch.dtype, tuple[list, list]] = {}
            for a, b in pairs:
                if a.is_floating_point():
                    group = floats.setdefault(a.dtype, ([], []))
                    group[0].append(a)
                    group[1].append(b)
            others = [(a, b) for a, b in pairs if not a.is_floating_point()]
            self._cached = (model, floats, others)
        return self._cached[1], self._cached[2]

    @torch.no_grad()
    def update(self, model: nn.Module, skip: torch.Tensor) -> None:
        n = self.updates.to(torch.float64)
        d = torch.clamp((1.0 + n) / (10.0 + n), max=self.decay) if self.warmup else self.decay
        weight = torch.where(self.updates == 0, 1.0, 1.0 - d)
        weight = torch.where(skip, 0.0, weight)
        floats, others = self._groups(model)
        for dtype, (a, b) in floats.items():
            w = weight.to(dtype)
            torch._foreach_lerp_(a, b, [w] * len(a))
        for a, b in others:
            a.copy_(torch.where(skip, a, b))
        self.updates += (~skip).to(torch.int64)

    def state_dict(self) -> dict[str, Any]:
        return self.module.state_dict()

    def load_state_dict(self, weights: dict[str, Any], updates: int) -> None:
        self.module.load_state_dict(weights)
        self.updates.fill_(int(updates))
