"""Shared test settings.

The tests use tiny models whose cost is per-operation overhead, which intra-op threads only
add to (and on a loaded machine OpenMP threads spin against each other): one thread, also in
the subprocesses tests start. Benchmarks, not tests, measure speed.
"""

import contextlib
import os

import pytest
import torch

from pixelcnnpp.autoregressive import BLOCKS, NONLINEARITIES
from pixelcnnpp.likelihoods import LIKELIHOODS
from pixelcnnpp.training import DATASETS, PRESETS

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture
def registries():
    """Every registry as it was before the test: what a test registers, replaces or discovers
    from entry points is forgotten when it ends."""
    with contextlib.ExitStack() as stack:
        for registry in (BLOCKS, LIKELIHOODS, DATASETS, NONLINEARITIES, PRESETS):
            stack.enter_context(registry.snapshot())
        yield
