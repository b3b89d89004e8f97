"""Timing and memory measurement shared by the benchmark scripts.

Times are medians over repeats; candidates take turns so a slow spell of the machine hits them
all alike. Peak memory is the peak of live tensor bytes allocated while a step runs, above what
was live before it: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the same quantity
rebuilt from the profiler's memory events (every allocation and free in time order, summed,
the maximum of the running sum). Neither counts allocator caching or fragmentation.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device: torch.device) -> tuple[float, float | None]:
    """Wall time of one call (the device synchronized before and after) and, on CPU, the
    process's CPU time (less sensitive to other work on a shared machine)."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    cpu_seconds = None if device.type == "cuda" else time.process_time() - cpu
    return time.perf_counter() - wall, cpu_seconds


def median_seconds(
    candidates: dict[str, Callable[[], object]], device: torch.device, repeats: int, warmup: int
) -> dict[str, tuple[float, float | None]]:
    """Median (wall, CPU) time of each candidate in a steady state, as in a training loop.

    The candidates take turns so that a slow spell of the machine hits them all alike; each
    timed call follows an untimed call of the same candidate, so that none pays for memory
    the allocator handed back to the system after another candidate's larger peak.
    """
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    times: dict[str, list[tuple[float, float | None]]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            fn()
            times[name].append(seconds(fn, device))
    medians = {}
    for name, pairs in times.items():
        wall, cpu = zip(*pairs, strict=True)
        medians[name] = (
            statistics.median(wall),
            None if cpu[0] is None else statistics.median(cpu),
        )
    return medians


def peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak live tensor bytes of one call above those live before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def environment(device: torch.device) -> dict:
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def emit_json(report: dict) -> None:
    """The one JSON line every benchmark ends with."""
    print(json.dumps(report, default=float))
