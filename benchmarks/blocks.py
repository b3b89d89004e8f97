"""The registered blocks side by side in the ``demo`` preset's model: parameters and one
training step (forward + backward + fused Adam), eager, float32 and bfloat16 autocast.

    python benchmarks/blocks.py [--repeats 10] [--warmup 2] [--blocks gated_resnet gated_pixelcnn]

The model is the demo preset's (Fashion-MNIST 1x28x28, its width, depth, mixtures, dropout and
batch size) with only ``block`` changed. The candidates take turns (benchmarks/measure.py), so
a slow spell of a shared machine hits them alike. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
from measure import emit_json, environment, median_seconds
from train_step import make_step

from pixelcnnpp.autoregressive import PixelCNNPP, list_blocks
from pixelcnnpp.training import preset


def candidates(blocks: list[str], device: torch.device):
    demo = preset("demo")
    batch = demo.batch_size
    c, h, w = demo.model.image_shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2**demo.model.num_bits, (batch, c, h, w), generator=gen).to(device)
    steps, info = {}, {}
    for block in blocks:
        config = dataclasses.replace(demo.model, block=block)
        torch.manual_seed(0)
        model = PixelCNNPP(config).to(device).train()
        adam = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.95, 0.9995), fused=True)
        for precision in ("fp32", "bf16"):

            def loss(model=model, bf16=precision == "bf16"):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    return model.nll(x).float().mean()

            steps[block, precision] = make_step(model, loss, adam)
        info[block] = model.num_parameters
    return steps, info, batch, demo.model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    default = ["gated_resnet", *(b for b in list_blocks() if b != "gated_resnet")]
    parser.add_argument("--blocks", nargs="+", default=default, help="the first is the baseline")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    steps, parameters, batch, config = candidates(args.blocks, device)
    times = median_seconds(steps, device, args.repeats, args.warmup)
    first = args.blocks[0]
    rows = {}
    for (block, precision), (wall, cpu) in times.items():
        rows.setdefault(block, {"parameters": parameters[block]})[precision] = {
            "seconds": wall,
            "cpu_seconds": cpu,
            "images_per_sec": batch / wall,
            f"time_vs_{first}": wall / times[first, precision][0],
        }
    report = {
        "benchmark": "blocks",
        **environment(device),
        "repeats": args.repeats,
        "batch": batch,
        "model": config.to_dict(),
        "results": rows,
    }
    print(
        f"demo preset model (1x28x28, F{config.num_filters}, R{config.num_resnet}, "
        f"{config.num_stages} stages), batch {batch}; device={report['device']} "
        f"threads={report['threads']} torch={report['torch']}; median of {args.repeats}"
    )
    header = (
        f"{'block':<18} {'params':>9} {'fp32 s/step':>12} {'bf16 s/step':>12} "
        f"{'fp32 vs ' + first:>22} {'bf16 vs ' + first:>22}"
    )
    print(header)
    print("-" * len(header))
    for block, r in rows.items():
        print(
            f"{block:<18} {r['parameters']:>9,} {r['fp32']['seconds']:>12.4f} "
            f"{r['bf16']['seconds']:>12.4f} {r['fp32'][f'time_vs_{first}']:>21.2f}x "
            f"{r['bf16'][f'time_vs_{first}']:>21.2f}x"
        )
    emit_json(report)


if __name__ == "__main__":
    main()
