"""One process or many under ``torchrun``: devices, process groups, collective helpers.

Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT`` set,
``env://`` rendezvous) every process joins the default group: ``nccl`` on CUDA, ``gloo`` on
CPU. Multi-node runs are the usual torchrun invocation on every node with ``--nnodes``,
``--node_rank`` (or ``--rdzv-backend c10d``) and the same ``--rdzv-endpoint``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process runs: ``rank`` of ``world_size``, its ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # this context created the process group (and destroys it)
    grouped: bool = False  # a process group is in use, even of one process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether the run goes through the process group (DDP, collectives): under torchrun
        with several processes, or in a group the caller initialized (even of one)."""
        return self.world_size > 1 or self.grouped


def resolve_device(
    preference: str = "auto", local_rank: int = 0, launched: bool = False
) -> torch.device:
    """``auto``: CUDA when available, else CPU; ``cuda`` means GPU ``local_rank``.

    ``cuda:N`` picks one GPU for a single process; under torchrun (``launched``) it would put
    every process on the same GPU and is refused. A GPU index past the GPUs this process
    sees (``CUDA_VISIBLE_DEVICES``) is refused with the index and the count.
    """
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cpu":
        return torch.device("cpu")
    if preference != "cuda" and not preference.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {preference!r}")
    if not torch.cuda.is_available():
        raise ValueError(
            f"device {preference!r} was asked for but CUDA is not available; use --device cpu"
        )
    if preference.startswith("cuda:"):
        if launched:
            raise ValueError(
                f"device {preference!r} names one GPU, but under torchrun every process would "
                "use it; use --device cuda (each process takes the GPU of its LOCAL_RANK)"
            )
        text = preference.removeprefix("cuda:")
        if not text.isdigit():
            raise ValueError(
                f"device must be 'cuda' or 'cuda:N' with N a GPU index, got {preference!r}"
            )
        index, what = int(text), f"device {preference!r}"
    else:
        index, what = local_rank, f"LOCAL_RANK {local_rank}"
    count = torch.cuda.device_count()
    if index >= count:
        raise ValueError(
            f"{what} asks for GPU {index}, but this process sees {count} GPU"
            f"{'s' if count != 1 else ''} (0..{count - 1}; CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); start at most {count} "
            "processes per node"
        )
    return torch.device("cuda", index)


def has_fast_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matrix work is native here: a CUDA GPU of compute capability 8.0 or
    later (Ampere), or a CPU with AVX512-BF16 or AMX. Elsewhere bf16 is emulated and slower
    than float32 (``torch.cuda.is_bf16_supported`` counts emulation, so it is not asked)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` becomes ``"bf16"`` where bf16 is native (``has_fast_bf16``), else ``"fp32"``.
    An explicit ``"bf16"`` where it is emulated is kept, with a warning: it is slower there."""
    if precision == "auto":
        return "bf16" if has_fast_bf16(device) else "fp32"
    if precision == "bf16" and not has_fast_bf16(device):
        native = (
            "compute capability 8.0 or later" if device.type == "cuda" else "AVX512-BF16 or AMX"
        )
        warnings.warn(
            f"bfloat16 is emulated on this {device.type} device (native needs {native}), so it "
            "runs slower than float32 (a training step took about 11x as long on an AVX2 CPU); "
            "precision 'auto' picks float32 here",
            stacklevel=2,
        )
    return precision


def init_distributed(device: str = "auto", timeout_minutes: float = 30.0) -> DistContext:
    """Join the torchrun process group if launched by torchrun, else a single process.

    A group that the caller already initialized is used as it is (and left to the caller).
    ``timeout_minutes`` bounds how long a collective waits for a slow process (a download,
    a long evaluation on rank 0) before the run fails instead of hanging.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank, launched="LOCAL_RANK" in os.environ)
    if dist.is_initialized():  # the caller's group, of any size
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        rank, world_size = dist.get_rank(), dist.get_world_size()
        return DistContext(rank, world_size, local_rank, dev, owns_group=False, grouped=True)
    owns = False
    if world_size > 1 and not dist.is_initialized():
        options = {"timeout": timedelta(minutes=timeout_minutes)}
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
            options["device_id"] = dev  # binds NCCL to this GPU up front
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method="env://", **options)
        owns = True
    elif dev.type == "cuda":
        torch.cuda.set_device(dev)
    return DistContext(rank, world_size, local_rank, dev, owns, grouped=owns)


def shutdown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


T = TypeVar("T")


def on_main(ctx: DistContext, action: Callable[[], T]) -> T | None:
    """Run ``action`` (a file write) on rank 0 only, and end every process the same way:
    when it raises on rank 0, the others raise too instead of waiting in the next collective.
    Returns the action's result on rank 0, None elsewhere."""
    result, error = None, None
    if ctx.is_main:
        try:
            result = action()
        except BaseException as e:
            error = e
    if ctx.distributed:
        message = [None if error is None else f"{type(error).__name__}: {error}"]
        dist.broadcast_object_list(message, src=0)
        if message[0] is not None and not ctx.is_main:
            raise RuntimeError(f"rank 0 failed, so this process stops too: {message[0]}")
    if error is not None:
        raise error
    return result


def all_mean(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Mean of a tensor over all processes (itself with one process)."""
    if not ctx.distributed:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / ctx.world_size


def all_gather_rows(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Concatenate 1-D tensors of possibly different lengths from all processes, rank order."""
    if not ctx.distributed:
        return values
    n = torch.tensor([values.numel()], device=ctx.device)
    sizes = [torch.zeros_like(n) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, n)
    longest = max(int(max(s.item() for s in sizes)), 1)  # a rank may hold no rows
    padded = torch.zeros(longest, dtype=values.dtype, device=ctx.device)
    padded[: values.numel()] = values
    gathered = [torch.zeros_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[: int(s.item())] for g, s in zip(gathered, sizes, strict=True)])


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()
