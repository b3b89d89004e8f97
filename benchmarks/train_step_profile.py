"""Where one training step of configuration (a) spends its time: a torch.profiler breakdown by
operator, in float32 and under bfloat16 autocast, for ours and the port-style reference.

    python benchmarks/train_step_profile.py [--steps 3] [--top 12] [--config a|b]
        [--compile] [--no-bf16] [--json-only]

Configuration (a) as in ``train_step.py``: C=3, 32x32, 64 filters, 2 blocks per stage, 10
mixtures, batch 16, forward + backward + Adam. Each candidate runs two untimed steps, then
``--steps`` profiled ones; times are per step, each operator's self time (in the op itself,
not in the ops it calls) summed over its calls, the backward's and the optimizer's included.

``--config b`` profiles the demo preset instead. ``--compile`` adds ``ours_compile`` (the
compiled training loss; the untimed steps compile it): inductor's generated kernels appear as
``## Call CompiledFxGraph ...`` rows, counted with everything else. ``--no-bf16`` leaves out
``ours_bf16`` (on a CPU without native bfloat16 its step takes about 11x as long).

Convolutions are the kernels of every 2-d convolution and transposed convolution, forward and
backward (aten ops named ``*conv*``), and the batched matrix products through which our 1x1
convolutions run on CPU (``aten::bmm``, ``aten::baddbmm``). Their sum is
the **convolutions-only floor**: what a step would cost if nothing else ran. Prints, per
candidate, the step time, the share of convolutions and the top operators; then one JSON line.
"""

from __future__ import annotations

import argparse
import time

import torch
from measure import emit_json, environment
from torch.profiler import ProfilerActivity, profile
from train_step import candidates, configurations

PROFILED = ("port", "ours", "ours_bf16")


def is_convolution(op: str) -> bool:
    """A 2-d (transposed) convolution's forward or backward kernel, or a batched matrix
    product (our 1x1 convolutions on CPU)."""
    return op.startswith("aten::") and ("conv" in op or op in ("aten::bmm", "aten::baddbmm"))


def profile_step(step, steps: int) -> tuple[float, dict[str, float]]:
    """Wall milliseconds per step, and each operator's self time per step in milliseconds
    (time in the op itself, not in the ops it calls: they sum to the step without overlap)."""
    for _ in range(2):
        step()
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    wall = (time.perf_counter() - start) / steps * 1e3
    ops = {e.key: e.self_cpu_time_total / steps / 1e3 for e in prof.key_averages()}
    return wall, {k: v for k, v in sorted(ops.items(), key=lambda kv: -kv[1]) if v > 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", choices=("a", "b"), default="a")
    parser.add_argument("--compile", action="store_true", help="profile ours_compile too")
    parser.add_argument("--no-bf16", action="store_true", help="leave out ours_bf16")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    label = next(k for k in configurations() if k.startswith(args.config))
    config, batch = configurations()[label]
    profiled = [n for n in PROFILED if not (args.no_bf16 and "bf16" in n)]
    profiled += ["ours_compile"] if args.compile else []
    steps, _ = candidates(config, batch, device, use_compile=args.compile, keep=set(profiled))
    report = {
        "benchmark": "train_step_profile",
        **environment(device),
        "config": label,
        "candidates": {},
    }
    for name in profiled:
        wall, ops = profile_step(steps[name], args.steps)
        total = sum(ops.values())
        conv = sum(v for k, v in ops.items() if is_convolution(k))
        report["candidates"][name] = {
            "wall_ms_per_step": wall,
            "profiled_ms_per_step": total,
            "convolution_ms": conv,
            "convolution_share": conv / total,
            "self_ms": ops,
        }
    if not args.json_only:
        print(f"device={report['device']} threads={report['threads']} torch={report['torch']}")
        for name, r in report["candidates"].items():
            total = r["profiled_ms_per_step"]
            print(
                f"\n{name}: {total:.1f} ms/step of op self time ({r['wall_ms_per_step']:.1f} ms "
                f"wall, profiler included); convolutions {r['convolution_ms']:.1f} ms = "
                f"{100 * r['convolution_share']:.0f}% (the convolutions-only floor), everything "
                f"else {total - r['convolution_ms']:.1f} ms"
            )
            for op, v in list(r["self_ms"].items())[: args.top]:
                mark = "conv" if is_convolution(op) else ""
                print(f"  {op:<44} {v:>8.1f} ms {100 * v / total:>5.1f}%  {mark}")
    emit_json(report)


if __name__ == "__main__":
    main()
