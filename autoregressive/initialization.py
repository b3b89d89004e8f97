"""The paper's data-dependent initialisation of weight-normalized layers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import parametrize


def weight_normed_modules(model: nn.Module) -> list[nn.Module]:
    """Modules weight-normalized with ``torch.nn.utils.parametrizations.weight_norm``."""
    return [
        m
        for m in model.modules()
        if parametrize.is_parametrized(m, "weight") and getattr(m, "bias", None) is not None
    ]


@contextmanager
def initialize_weight_norm(model: nn.Module) -> Iterator[None]:
    """While active, each weight-normalized layer initialises itself on its first call.

    The layer's output ``t = v x / |v|`` (gain 1, bias 0) has per-channel mean ``m`` and
    variance ``s2`` on the batch; the gain becomes ``init_scale / sqrt(s2 + 1e-10)`` and the
    bias ``-m * gain``, and the normalized output is passed on, so later layers initialise on
    the outputs of the initialised earlier ones. The model runs in evaluation mode.
    """
    modules = weight_normed_modules(model)
    done: set[int] = set()

    def hook(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        if id(module) in done:
            return output
        done.add(id(module))
        dims = [d for d in range(output.dim()) if d != 1]
        mean = output.mean(dims)
        scale = getattr(module, "init_scale", 1.0) / torch.sqrt(
            output.var(dims, unbiased=False) + 1e-10
        )
        gain = module.parametrizations.weight.original0
        gain.copy_(scale.view_as(gain))
        module.bias.copy_(-mean * scale)
        shape = [1, -1] + [1] * (output.dim() - 2)
        return (output - mean.view(shape)) * scale.view(shape)

    was_training = model.training
    model.eval()
    handles = []
    with torch.no_grad():
        for m in modules:
            m.parametrizations.weight.original0.fill_(1.0)
            m.bias.zero_()
            handles.append(m.register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
