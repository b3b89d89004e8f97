"""Cached against naive sampling of PixelCNN++, side by side in one run, and cached throughput
by batch size.

    python benchmarks/sampling.py [--configs a,b,c] [--repeats 3] [--batches 16,32,64,128,256]
                                  [--throughput-n 256] [--naive-rows b=4] [--reuse] [--json-only]

Configurations (the issue's targets for cached over naive, same images):

- (a) 1x28x28, the CPU ``demo`` preset's architecture, 16 images: >= 100x;
- (b) 3x32x32, 64 filters, 2 blocks per stage, 10 mixtures, 16 images: >= 150x;
- (c) 1x16x16, 32 filters, 1 block per stage, 5 mixtures, 8 images: >= 25x;
- (d) (a) with the ``attention_resnet`` block (attention at 14x14 and 7x7), 4 images: no
  target in the issue beyond "many times faster"; its ratio is reported.

Methods: ``naive``; ``cached`` with every row run eagerly (``replay=False``); ``replayed``,
cached with each pattern's row recorded once and replayed (``replay=True``: CUDA graphs on a
GPU, a tape of ATen operations on CPU). The target is checked on what ``model.sample`` does by
default: ``replayed`` on CUDA, ``cached`` on CPU.

Each method draws the images from the same untrained float32 model (sampling costs the same
whatever the weights) with the same generator seed; naive runs once (it takes minutes; with
``--naive-rows`` over the first rows only, scaled to the image), the cached methods
``--repeats`` times (median). Reported: wall and CPU seconds, pixels per second
(``n * H * W / wall``), peak memory, whether the default and naive returned the same images,
and replayed against cached (speed, same images). Then (a) with ``--throughput-n`` images drawn
in batches of each size in ``--batches`` (as ``pixelcnn sample --batch-size`` does) by the
default method: images/s and peak memory, and the best batch size.

Each measurement runs in a fresh worker process, so that peak memory is clean: on CPU it is the
growth of the process's peak resident set while sampling (``ru_maxrss`` after minus the resident
set before), which includes the allocator's caching; on CUDA ``max_memory_allocated`` above
what was allocated before. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from measure import emit_json, environment

from pixelcnnpp.autoregressive import PixelCNNConfig, PixelCNNPP
from pixelcnnpp.training import preset

TARGETS = {"a": (16, 100.0), "b": (16, 150.0), "c": (8, 25.0), "d": (4, None)}  # images, speed-up


def configurations() -> dict[str, PixelCNNConfig]:
    demo = preset("demo").model
    return {
        "a": demo,
        "b": PixelCNNConfig(
            image_shape=(3, 32, 32),
            num_filters=64,
            num_resnet=2,
            likelihood_kwargs={"num_mixtures": 10},
        ),
        "c": PixelCNNConfig(
            image_shape=(1, 16, 16),
            num_filters=32,
            num_resnet=1,
            likelihood_kwargs={"num_mixtures": 5},
        ),
        "d": PixelCNNConfig.from_dict({**demo.to_dict(), "block": "attention_resnet"}),
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


class _RowsDone(Exception):
    """Raised by the progress callback to stop a naive run after its first rows."""


def worker(
    config_name: str,
    method: str,
    n: int,
    batch: int,
    repeats: int,
    device: str,
    out: Path,
    rows: int = 0,
) -> None:
    """Draw ``n`` images in batches of ``batch``, ``repeats`` times; write the times, the peak
    memory and the images of the first repeat to ``out``. With ``rows``, stop after that many
    rows (one batch) and write the time scaled to the whole image, without images."""
    dev = torch.device(device)
    options = {"method": "naive"} if method == "naive" else {"replay": method == "replayed"}
    torch.manual_seed(0)
    model = PixelCNNPP(configurations()[config_name]).to(dev).eval()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    else:
        base = _rss_bytes()
    walls, cpus, images = [], [], None
    if rows:
        height = model.config.image_shape[1]

        def stop(done: int, total: int) -> None:
            if done == rows:
                raise _RowsDone

        wall, cpu = time.perf_counter(), time.process_time()
        with contextlib.suppress(_RowsDone):
            model.sample(n, generator=torch.Generator(device=dev), progress=stop, **options)
        scale = height / rows  # every pixel of naive sampling costs one whole network pass
        walls.append((time.perf_counter() - wall) * scale)
        cpus.append((time.process_time() - cpu) * scale)
        repeats = 0
    for _ in range(repeats):
        generator = torch.Generator(device=dev).manual_seed(1)
        wall, cpu = time.perf_counter(), time.process_time()
        drawn = [
            model.sample(min(batch, n - first), generator=generator, **options)
            for first in range(0, n, batch)
        ]
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        images = torch.cat(drawn).cpu() if images is None else images
    if images is None:
        images = torch.zeros(0)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    torch.save(
        {
            "seconds": statistics.median(walls),
            "cpu_seconds": statistics.median(cpus),
            "peak_bytes": max(peak, 0),
            "images": images,
        },
        out,
    )


def measure(
    name: str,
    method: str,
    n: int,
    batch: int,
    repeats: int,
    device: str,
    scratch: Path,
    rows: int = 0,
    reuse: bool = False,
) -> dict:
    out = scratch / f"{name}-{method}-{n}-{batch}-{rows}.pt"
    if not (reuse and out.exists()):
        args = [name, method, n, batch, repeats, device, out, rows]
        subprocess.run([sys.executable, __file__, "--worker", *map(str, args)], check=True)
    return torch.load(out, weights_only=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="a,b,c")
    parser.add_argument("--repeats", type=int, default=3, help="cached runs (median)")
    parser.add_argument("--batches", default="16,32,64,128,256", help="'' to skip")
    parser.add_argument("--throughput-n", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scratch", default="/tmp/pixelcnnpp-sampling-benchmark")
    parser.add_argument("--json-only", action="store_true")
    parser.add_argument(
        "--naive-rows",
        default="",
        metavar="NAME=ROWS,...",
        help="time naive sampling of these configurations over their first ROWS rows only, "
        "scaled to the whole image (its every pixel costs one network pass); their images "
        "are then not compared",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="take measurements already in --scratch"
    )
    parser.add_argument("--worker", nargs=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, method, n, batch, repeats, device, out, rows = args.worker
        worker(name, method, int(n), int(batch), int(repeats), device, Path(out), int(rows))
        return
    naive_rows = {k: int(v) for k, v in (kv.split("=") for kv in args.naive_rows.split(",") if kv)}
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    report = {"benchmark": "sampling", **environment(torch.device(args.device)), "configs": {}}
    # What model.sample does by default: rows replayed on CUDA, run eagerly on CPU.
    default = "replayed" if torch.device(args.device).type == "cuda" else "cached"
    for name in args.configs.split(","):
        config, (n, target) = configurations()[name], TARGETS[name]
        _, h, w = config.image_shape
        rows = naive_rows.get(name, 0)
        runs = {
            method: measure(
                name, method, n, n, args.repeats, args.device, scratch, reuse=args.reuse
            )
            for method in ("cached", "replayed")
        }
        runs["naive"] = measure(name, "naive", n, n, 1, args.device, scratch, rows, args.reuse)
        report["configs"][name] = {
            "model": config.to_dict(),
            "n": n,
            "results": {
                method: {
                    "seconds": r["seconds"],
                    "cpu_seconds": r["cpu_seconds"],
                    "pixels_per_sec": n * h * w / r["seconds"],
                    "peak_mib": r["peak_bytes"] / 2**20,
                }
                for method, r in runs.items()
            },
            "default": default,
            "speedup": runs["naive"]["seconds"] / runs[default]["seconds"],
            "cpu_speedup": runs["naive"]["cpu_seconds"] / runs[default]["cpu_seconds"],
            "replayed_over_cached": runs["cached"]["seconds"] / runs["replayed"]["seconds"],
            "replayed_differing_subpixels": int(
                (runs["replayed"]["images"] != runs["cached"]["images"]).sum()
            ),
            "target": target,
            "naive_rows_timed": rows or h,
            "differing_subpixels": None
            if rows
            else int((runs[default]["images"] != runs["naive"]["images"]).sum()),
        }
    batches = [int(b) for b in args.batches.split(",") if b]
    if batches:
        total, throughput = args.throughput_n, {}
        for batch in batches:
            r = measure("a", default, total, batch, 1, args.device, scratch, reuse=args.reuse)
            throughput[batch] = {
                "seconds": r["seconds"],
                "images_per_sec": total / r["seconds"],
                "peak_mib": r["peak_bytes"] / 2**20,
            }
        best = max(throughput, key=lambda b: throughput[b]["images_per_sec"])
        report["throughput"] = {
            "config": "a",
            "method": default,
            "images": total,
            "by_batch": throughput,
            "best": best,
        }
    if not args.json_only:
        print_table(report)
    emit_json(report)


def print_table(report: dict) -> None:
    print(f"device={report['device']} threads={report['threads']} torch={report['torch']}")
    header = (
        f"{'config':<30} {'n':>3} {'method':<8} {'wall s':>8} {'cpu s':>8} {'pixels/s':>9} "
        f"{'peak MiB':>9} {'speed-up':>9} {'target':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, entry in report["configs"].items():
        m = entry["model"]
        label = (
            f"{name}: {'x'.join(map(str, m['image_shape']))} F{m['num_filters']} R{m['num_resnet']}"
            + (" attn" if m["block"] == "attention_resnet" else "")
        )
        naive = entry["results"]["naive"]["seconds"]
        for method, r in entry["results"].items():
            default = method == entry["default"]
            speed = f"{naive / r['seconds']:.1f}x"
            target = f">={entry['target']:g}x" if default and entry["target"] else ""
            print(
                f"{label:<30} {entry['n']:>3} {method:<8} {r['seconds']:>8.2f} "
                f"{r['cpu_seconds']:>8.2f} {r['pixels_per_sec']:>9.1f} {r['peak_mib']:>9.1f} "
                f"{speed:>9} {target:>7}"
            )
        diff = entry["differing_subpixels"]
        same = "identical" if diff == 0 else f"{diff} sub-pixels differ"
        if diff is None:
            rows = entry["naive_rows_timed"]
            same = f"not compared (naive timed over {rows} rows, scaled to the image)"
        print(
            f"{'':<30} {entry['default']} vs naive images (float32): {same}; CPU-time speed-up {entry['cpu_speedup']:.1f}x"
        )
        diff = entry["replayed_differing_subpixels"]
        same = "identical" if diff == 0 else f"{diff} sub-pixels differ"
        print(
            f"{'':<30} replayed vs cached rows: {entry['replayed_over_cached']:.2f}x, images {same}"
        )
    if "throughput" in report:
        t = report["throughput"]
        print(f"\n{t['method']} throughput, config {t['config']}, {t['images']} images")
        print(f"{'batch':>6} {'wall s':>8} {'images/s':>9} {'peak MiB':>9}")
        for batch, r in t["by_batch"].items():
            mark = "  <- best" if batch == t["best"] else ""
            print(
                f"{batch:>6} {r['seconds']:>8.2f} {r['images_per_sec']:>9.2f} {r['peak_mib']:>9.1f}{mark}"
            )


if __name__ == "__main__":
    main()
