"""Shared test settings.

The tests use tiny models whose cost is per-operation overhead, which intra-op threads only
add to (and on a loaded machine OpenMP threads spin against each other): one thread, also in
the subprocesses tests start. Benchmarks, not tests, measure speed.
"""

import os

import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
