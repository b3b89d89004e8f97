"""Cached against naive sampling of PixelCNN++, side by side in one run.

    python benchmarks/sampling.py [--n 16] [--configs a,b] [--json-only]

Configurations: (a) 1x28x28 with the CPU ``demo`` preset's architecture, (b) 3x32x32 with 64
filters and 2 blocks per stage (10 mixtures). Each method draws ``n`` images from the same
untrained model (sampling costs the same whatever the weights) with the same generator seed.
Reported: wall time, pixels per second (``n * H * W / time``), peak memory, and whether both
methods returned the same images.

Each measurement runs in a fresh worker process, so that peak memory is clean: on CPU it is the
growth of the process's peak resident set while sampling (``ru_maxrss`` after minus the resident
set before), which includes the allocator's caching; on CUDA ``max_memory_allocated`` above
what was allocated before. Prints a table, then one JSON line. The issue's target on CPU:
cached at least 20x faster than naive for both configurations.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from measure import emit_json, environment

from pixelcnnpp.autoregressive import PixelCNNConfig, PixelCNNPP
from pixelcnnpp.training import preset

TARGET_SPEEDUP = 20.0


def configurations() -> dict[str, PixelCNNConfig]:
    return {
        "a": preset("demo").model,
        "b": PixelCNNConfig(
            image_shape=(3, 32, 32),
            num_filters=64,
            num_resnet=2,
            likelihood_kwargs={"num_mixtures": 10},
        ),
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def worker(config_name: str, method: str, n: int, device: str, out: Path) -> None:
    """Sample once and write time, memory and the images to ``out``."""
    dev = torch.device(device)
    torch.manual_seed(0)
    model = PixelCNNPP(configurations()[config_name]).to(dev).eval()
    generator = torch.Generator(device=dev).manual_seed(1)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    else:
        base = _rss_bytes()
    start = time.perf_counter()
    images = model.sample(n, method=method, generator=generator)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    torch.save({"seconds": seconds, "peak_bytes": max(peak, 0), "images": images.cpu()}, out)


def measure(config_name: str, method: str, n: int, device: str, scratch: Path) -> dict:
    out = scratch / f"{config_name}-{method}.pt"
    cmd = [sys.executable, __file__, "--worker", config_name, method, str(n), device, str(out)]
    subprocess.run(cmd, check=True)
    return torch.load(out, weights_only=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=16, help="images per batch")
    parser.add_argument("--configs", default="a,b")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scratch", default="/tmp/pixelcnnpp-sampling-benchmark")
    parser.add_argument("--json-only", action="store_true")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, method, n, device, out = args.worker
        worker(name, method, int(n), device, Path(out))
        return
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "sampling",
        **environment(torch.device(args.device)),
        "n": args.n,
        "configs": {},
    }
    for name in args.configs.split(","):
        config = configurations()[name]
        _, h, w = config.image_shape
        runs = {
            method: measure(name, method, args.n, args.device, scratch)
            for method in ("cached", "naive")
        }
        rows = {
            method: {
                "seconds": r["seconds"],
                "pixels_per_sec": args.n * h * w / r["seconds"],
                "peak_mib": r["peak_bytes"] / 2**20,
            }
            for method, r in runs.items()
        }
        report["configs"][name] = {
            "model": config.to_dict(),
            "results": rows,
            "speedup": runs["naive"]["seconds"] / runs["cached"]["seconds"],
            "identical_images": bool(
                torch.equal(runs["cached"]["images"], runs["naive"]["images"])
            ),
            "differing_subpixels": int((runs["cached"]["images"] != runs["naive"]["images"]).sum()),
        }
    if not args.json_only:
        print(
            f"device={report['device']} threads={report['threads']} torch={report['torch']} n={args.n}"
        )
        header = f"{'config':<34} {'method':<7} {'seconds':>9} {'pixels/s':>10} {'peak MiB':>9} {'speedup':>8}"
        print(header)
        print("-" * len(header))
        for name, entry in report["configs"].items():
            m = entry["model"]
            label = f"{name}: {'x'.join(map(str, m['image_shape']))} F{m['num_filters']} R{m['num_resnet']}"
            for method, r in entry["results"].items():
                speed = f"{entry['speedup']:.1f}x" if method == "cached" else "1.0x"
                print(
                    f"{label:<34} {method:<7} {r['seconds']:>9.2f} {r['pixels_per_sec']:>10.1f} {r['peak_mib']:>9.1f} {speed:>8}"
                )
            same = (
                "identical"
                if entry["identical_images"]
                else f"{entry['differing_subpixels']} sub-pixels differ"
            )
            print(f"{'':<34} cached vs naive images: {same}")
        print(f"target: cached >= {TARGET_SPEEDUP:g}x faster than naive for every configuration")
    emit_json(report)


if __name__ == "__main__":
    main()
