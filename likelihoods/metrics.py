"""Conversions of log-likelihoods."""

from __future__ import annotations

import math

import torch

from pixelcnnpp.checks import check_int


def bits_per_dim(log_prob: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """Negative log-likelihood in bits per dimension: ``-log_prob / (num_dims * ln 2)``.

    ``log_prob`` is in nats, summed over the ``num_dims = C * H * W`` sub-pixels of an image
    (any shape, converted elementwise).
    """
    check_int("num_dims", num_dims, 1, expected="a positive integer (C * H * W)")
    return -log_prob / (num_dims * math.log(2.0))
