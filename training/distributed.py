"""One process or many under ``torchrun``: devices, process groups, collective helpers.

Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT`` set,
``env://`` rendezvous) every process joins the default group: ``nccl`` on CUDA, ``gloo`` on
CPU. Multi-node runs are the usual torchrun invocation on every node with ``--nnodes``,
``--node_rank`` (or ``--rdzv-backend c10d``) and the same ``--rdzv-endpoint``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process runs: ``rank`` of ``world_size``, its ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {preference!r} was asked for but CUDA is not available; use --device cpu"
            )
        return torch.device(preference if ":" in preference else f"cuda:{local_rank}")
    if preference != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {preference!r}")
    return torch.device("cpu")


def has_fast_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matrix work is native here: a CUDA GPU with bf16, or a CPU with
    AVX512-BF16 or AMX (elsewhere bf16 is emulated and slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` becomes ``"bf16"`` where bf16 is native (``has_fast_bf16``), else ``"fp32"``."""
    if precision == "auto":
        return "bf16" if has_fast_bf16(device) else "fp32"
    return precision


def init_distributed(device: str = "auto") -> DistContext:
    """Join the torchrun process group if launched by torchrun, else a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", init_method="env://")
    return DistContext(rank, world_size, local_rank, dev)


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_mean(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Mean of a tensor over all processes (itself with one process)."""
    if not ctx.distributed:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / ctx.world_size


def any_true(flag: bool, ctx: DistContext) -> bool:
    """True on every process if it is true on any (e.g. a stop request)."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_gather_rows(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Concatenate 1-D tensors of possibly different lengths from all processes, rank order."""
    if not ctx.distributed:
        return values
    n = torch.tensor([values.numel()], device=ctx.device)
    sizes = [torch.zeros_like(n) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, n)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=values.dtype, device=ctx.device)
    padded[: values.numel()] = values
    gathered = [torch.zeros_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[: int(s.item())] for g, s in zip(gathered, sizes, strict=True)])


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()
