"""Peak memory and time of one training step with the ``attention_resnet`` block, beside
``gated_resnet``, side by side in one run.

    python benchmarks/attention_memory.py [--repeats 3] [--batch 16] [--json-only]

Model: 3x32x32, 64 filters, 2 blocks per stage, 3 stages, 10 mixtures, dropout 0.5; one step
is the loss (``model.nll``), its backward and an Adam update, on one random batch. Candidates:
``gated_resnet``; ``attention_resnet`` with the default placement (attention at 16x16 and
8x8); ``attention_resnet`` with attention at every resolution (``max_attention_size=32``).
Peak memory is ``measure.peak_bytes`` (live tensor bytes above those live before the step:
``max_memory_allocated`` on CUDA, the profiler's allocation events on CPU); time the median
of ``--repeats`` steps. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse

import torch
from measure import emit_json, environment, median_seconds, peak_bytes

from pixelcnnpp.autoregressive import AttentionResnet, PixelCNNConfig, PixelCNNPP

CANDIDATES = {
    "gated_resnet": ("gated_resnet", {}),
    "attention_resnet (default: 16x16, 8x8)": ("attention_resnet", {}),
    "attention_resnet (every resolution)": ("attention_resnet", {"max_attention_size": 32}),
}


def training_step(block: str, block_kwargs: dict, batch: int, device: torch.device):
    config = PixelCNNConfig(
        image_shape=(3, 32, 32),
        num_filters=64,
        num_resnet=2,
        likelihood_kwargs={"num_mixtures": 10},
        block=block,
        block_kwargs=block_kwargs,
    )
    torch.manual_seed(0)
    model = PixelCNNPP(config).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randint(0, 256, (batch, 3, 32, 32), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model.nll(x).mean().backward()
        optimizer.step()

    step()  # Adam's state exists before anything is measured
    attention = sum(isinstance(m, AttentionResnet) for m in model.modules())
    return step, model.num_parameters, attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    report = {"benchmark": "attention_memory", **environment(device), "batch": args.batch}
    steps, results = {}, {}
    for name, (block, kwargs) in CANDIDATES.items():
        step, parameters, attention = training_step(block, kwargs, args.batch, device)
        steps[name] = step
        results[name] = {
            "block_kwargs": kwargs,
            "parameters": parameters,
            "attention_blocks": attention,
            "peak_mib": peak_bytes(step, device) / 2**20,
        }
    for name, (wall, cpu) in median_seconds(steps, device, args.repeats, warmup=0).items():
        results[name]["step_seconds"] = wall
        results[name]["step_cpu_seconds"] = cpu
    report["results"] = results
    if not args.json_only:
        print(f"device={report['device']} threads={report['threads']} torch={report['torch']}")
        print(f"one training step, 3x32x32, 64 filters, 2 blocks per stage, batch {args.batch}")
        header = f"{'block':<40} {'attention':>9} {'params':>9} {'peak MiB':>9} {'step s':>7}"
        print(header)
        print("-" * len(header))
        for name, r in results.items():
            print(
                f"{name:<40} {r['attention_blocks']:>9} {r['parameters']:>9,} "
                f"{r['peak_mib']:>9.1f} {r['step_seconds']:>7.2f}"
            )
    emit_json(report)


if __name__ == "__main__":
    main()
