"""Forward + backward of the layers the training step spends its non-convolution time in:
ours against the plain PyTorch way of writing each, side by side in one run.

    python benchmarks/layers.py [--repeats 30] [--warmup 3] [--device cpu] [--json-only]

Layers, at the sizes of the training-step benchmark's configuration (a) (batch 16, 64
filters, 32x32):

* ``concat_elu``: ``pixelcnnpp.autoregressive.concat_elu`` against
  ``F.elu(torch.cat([x, -x], 1))``, on ``[16, 64, 32, 32]``;
* ``dropout``: ``pixelcnnpp.autoregressive.Dropout(0.5)`` against ``nn.Dropout(0.5)``, on
  ``[16, 128, 32, 32]`` (the input of a block's second convolution);
* ``nin``: ``NetworkInNetwork`` (a batched matrix product on channels-first input) against a
  weight-normalized ``nn.Conv2d`` with a 1x1 kernel, 256 -> 64 and 128 -> 64 channels (the
  skip projections of the down and up passes).

Each runs in float32, and under bfloat16 autocast on bfloat16 activations (as in training
with ``--precision bf16``).
Times are medians of wall time and of the process's CPU time over ``--repeats`` rounds in
which the candidates take turns. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from measure import emit_json, environment, median_seconds
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from pixelcnnpp.autoregressive import Dropout, NetworkInNetwork, concat_elu


def step(fn, x: torch.Tensor, grad: torch.Tensor, bf16: bool, device: torch.device):
    def run():
        x.grad = None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            y = fn(x)
        y.backward(grad.to(y.dtype))

    return run


def cases(device: torch.device) -> dict[str, tuple[dict, tuple, int]]:
    """name -> ({candidate: fn}, input shape, output channels)."""
    torch.manual_seed(0)
    out = {
        "concat_elu [16,64,32,32]": (
            {"ours": concat_elu, "plain": lambda x: F.elu(torch.cat([x, -x], dim=1))},
            (16, 64, 32, 32),
            128,
        ),
        "dropout 0.5 [16,128,32,32]": (
            {"ours": Dropout(0.5).train(), "plain": nn.Dropout(0.5).train()},
            (16, 128, 32, 32),
            128,
        ),
    }
    for c_in in (256, 128):
        ours = NetworkInNetwork(c_in, 64).to(device)
        plain = weight_norm(nn.Conv2d(c_in, 64, 1)).to(device)
        out[f"nin {c_in}->64 [16,{c_in},32,32]"] = (
            {"ours": ours, "plain": plain},
            (16, c_in, 32, 32),
            64,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    report = {"benchmark": "layers", **environment(device), "repeats": args.repeats, "cases": {}}
    for name, (candidates, shape, out_channels) in cases(device).items():
        for bf16 in (False, True):
            gen = torch.Generator().manual_seed(1)
            # under bf16 the activations arrive in bf16, as from a convolution under autocast
            dtype = torch.bfloat16 if bf16 else torch.float32
            x = torch.randn(shape, generator=gen).to(device, dtype).requires_grad_()
            grad = torch.randn(shape[0], out_channels, *shape[2:], generator=gen).to(device)
            steps = {k: step(fn, x, grad, bf16, device) for k, fn in candidates.items()}
            times = median_seconds(steps, device, args.repeats, args.warmup)
            label = f"{name} {'bf16' if bf16 else 'fp32'}"
            report["cases"][label] = {
                "ms": {k: t[0] * 1e3 for k, t in times.items()},
                "cpu_ms": {k: None if t[1] is None else t[1] * 1e3 for k, t in times.items()},
                "speedup": times["plain"][0] / times["ours"][0],
            }
    if not args.json_only:
        print(f"device={report['device']} threads={report['threads']} torch={report['torch']}")
        header = f"{'layer (forward + backward)':<38} {'ours ms':>9} {'plain ms':>9} {'speedup':>8}"
        print(header)
        print("-" * len(header))
        for label, entry in report["cases"].items():
            print(
                f"{label:<38} {entry['ms']['ours']:>9.2f} {entry['ms']['plain']:>9.2f} "
                f"{entry['speedup']:>7.2f}x"
            )
    emit_json(report)


if __name__ == "__main__":
    main()
