"""One training step (forward + backward + Adam) of PixelCNN++: ours against the widely used
port's way of writing it, side by side, and the data loader against the step.

    python benchmarks/train_step.py [--repeats 10] [--warmup 2] [--no-compile] [--json-only]

Configurations: (a) C=3, 32x32, 64 filters, 2 blocks per stage, 10 mixtures, batch 16;
(b) the CPU ``demo`` preset (Fashion-MNIST 28x28x1, its own width, depth and batch size).
Candidates: ``port`` (benchmarks/reference_port.py: same architecture and parameter count),
``ours`` (eager, NCHW), ``ours_channels_last``, ``ours_compile`` (``torch.compile`` with
inductor; compile time reported apart from the steady-state step time), and in bfloat16
autocast ``ours_bf16``, ``ours_bf16_channels_last``, ``ours_bf16_compile`` (native on CPUs
with AVX512-BF16 or AMX and on GPUs; the likelihood stays float32). Every candidate trains
with dropout as configured, the paper's Adam settings, on the same batch (the port with
``torch.optim.Adam``'s default implementation, ours with the fused one the training loop
uses).

The loader line times what the training loop does per step for the demo preset on the real
Fashion-MNIST (an index gather of a uint8 batch from the in-memory dataset and the copy to the
device) and reports it as images/s next to the training images/s.

Prints a table, then one JSON line. The issue's target: (a) at least 2x the port's throughput.
"""

from __future__ import annotations

import argparse
import time

import torch
from likelihood import straightforward_nll
from measure import emit_json, environment, median_seconds, peak_bytes
from reference_port import PortPixelCNN

from pixelcnnpp.autoregressive import PixelCNNConfig, PixelCNNPP
from pixelcnnpp.training import load_dataset, preset
from pixelcnnpp.training.loop import adam

TARGET_SPEEDUP = 2.0


def configurations() -> dict[str, tuple[PixelCNNConfig, int]]:
    demo = preset("demo")
    a = PixelCNNConfig(
        image_shape=(3, 32, 32),
        num_filters=64,
        num_resnet=2,
        likelihood_kwargs={"num_mixtures": 10},
    )
    return {"a: 3x32x32 F64 R2": (a, 16), "b: demo preset 1x28x28": (demo.model, demo.batch_size)}


def make_step(model: torch.nn.Module, loss_fn, optimizer=None):
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.95, 0.9995))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        return loss

    return step


def candidates(config: PixelCNNConfig, batch: int, device: torch.device, use_compile: bool):
    c, h, w = config.image_shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2**config.num_bits, (batch, c, h, w), generator=gen).to(device)
    x_scaled = x.float() * (2.0 / (2**config.num_bits - 1)) - 1.0
    out, info = {}, {}

    torch.manual_seed(0)
    port = PortPixelCNN(
        config.num_resnet,
        config.num_filters,
        config.likelihood_kwargs.get("num_mixtures", 10),
        c,
        config.dropout,
    )
    port = port.to(device).train()
    out["port"] = make_step(port, lambda: straightforward_nll(x_scaled, port(x_scaled), c))
    info["port"] = sum(p.numel() for p in port.parameters())

    for name, channels_last, compiled, bf16 in (
        ("ours", False, False, False),
        ("ours_channels_last", True, False, False),
        ("ours_compile", False, True, False),
        ("ours_bf16", False, False, True),
        ("ours_bf16_channels_last", True, False, True),
        ("ours_bf16_compile", False, True, True),
    ):
        if compiled and not use_compile:
            continue
        torch.manual_seed(0)
        model = PixelCNNPP(config).to(device).train()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        if compiled:  # as the training loop's --compile: the network, not the likelihood
            model.features = torch.compile(model.features)
        nll = model.nll

        def loss(nll=nll, bf16=bf16):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                return nll(x).float().mean()

        out[name] = make_step(model, loss, adam(model.parameters(), lr=1e-3, betas=(0.95, 0.9995)))
        info[name] = model.num_parameters
    return out, info


def loader_images_per_sec(batch: int, device: torch.device, repeats: int = 200) -> float:
    ds = load_dataset("fashion-mnist", "train", validation_size=0)
    order = torch.randperm(len(ds))
    start = time.perf_counter()
    for k in range(repeats):
        x, labels = ds.batch(order[k * batch : (k + 1) * batch])
        x.to(device, non_blocking=True), labels.to(device, non_blocking=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return repeats * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--no-compile", action="store_true", help="skip the torch.compile candidate"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    report = {
        "benchmark": "train_step",
        **environment(device),
        "repeats": args.repeats,
        "configs": {},
    }
    for label, (config, batch) in configurations().items():
        steps, params = candidates(config, batch, device, not args.no_compile)
        compile_seconds = {}
        for name in [n for n in steps if n.endswith("_compile")]:
            start = time.perf_counter()
            steps[name]()  # the first call compiles
            compile_seconds[name] = time.perf_counter() - start
        times = median_seconds(steps, device, args.repeats, args.warmup)
        rows = {}
        for name, step in steps.items():
            rows[name] = {
                "seconds": times[name][0],
                "cpu_seconds": times[name][1],
                "images_per_sec": batch / times[name][0],
                "peak_mib": peak_bytes(step, device) / 2**20,
                "parameters": params[name],
                "speedup_vs_port": times["port"][0] / times[name][0],
            }
        entry = {
            "batch": batch,
            "model": config.to_dict(),
            "results": rows,
            "compile_seconds": compile_seconds,
        }
        if label.startswith("b"):
            entry["loader_images_per_sec"] = loader_images_per_sec(batch, device)
        report["configs"][label] = entry
    if not args.json_only:
        print(
            f"device={report['device']} threads={report['threads']} torch={report['torch']} median of {args.repeats}"
        )
        header = f"{'config':<26} {'candidate':<24} {'s/step':>8} {'img/s':>8} {'peak MiB':>9} {'params':>10} {'vs port':>8}"
        print(header)
        print("-" * len(header))
        for label, entry in report["configs"].items():
            for name, r in entry["results"].items():
                print(
                    f"{label:<26} {name:<24} {r['seconds']:>8.3f} {r['images_per_sec']:>8.1f} {r['peak_mib']:>9.1f} "
                    f"{r['parameters']:>10,} {r['speedup_vs_port']:>7.2f}x"
                )
            for name, seconds in entry["compile_seconds"].items():
                print(f"{'':<26} ({name}: the first call, which compiles, took {seconds:.0f} s)")
            if "loader_images_per_sec" in entry:
                print(f"{'':<26} loader: {entry['loader_images_per_sec']:,.0f} images/s")
        best = max(
            r["speedup_vs_port"] for r in report["configs"]["a: 3x32x32 F64 R2"]["results"].values()
        )
        print(
            f"target (a): >= {TARGET_SPEEDUP:g}x the port's throughput; best candidate {best:.2f}x"
        )
    emit_json(report)


if __name__ == "__main__":
    main()
