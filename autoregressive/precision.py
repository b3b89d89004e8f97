"""Exact float32 on CUDA: TF32 off for the duration of a block.

On Ampere and later GPUs, cuDNN convolutions (and matmuls, when enabled) may round their
inputs to TF32's 10-bit mantissa. That is a fine trade for training, but "float32"
evaluation must give float32 bits/dim, and float32 cached and naive sampling must agree:
one sub-pixel that lands in a different bin changes every later pixel. ``exact_float32``
turns both TF32 switches off and restores what was set before, so a user's own choice for
training is left as they made it. On CPU the switches have no effect.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """Run the block with TF32 allowed (or not) for cuDNN convolutions and CUDA matmuls, and
    restore the switches as they were afterwards."""
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    set_tf32(enabled)
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn
        torch.backends.cuda.matmul.allow_tf32 = matmul


def exact_float32() -> contextlib.AbstractContextManager[None]:
    """Run the block with TF32 off for cuDNN convolutions and CUDA matmuls."""
    return tf32(False)


def set_tf32(enabled: bool) -> None:
    """Allow (or forbid) TF32 for cuDNN convolutions and CUDA matmuls from now on."""
    torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cuda.matmul.allow_tf32 = enabled
