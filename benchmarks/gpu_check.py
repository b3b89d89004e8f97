"""The GPU check: run once on a machine with a GPU, after installing the CUDA build of torch.

    python benchmarks/gpu_check.py                  # all checks and the throughput table
    python benchmarks/gpu_check.py --quick          # the checks only (about a minute)
    python benchmarks/gpu_check.py --device cpu --quick --compile-backend eager   # the CPU part

Prints one ``PASS``/``FAIL``/``SKIP`` line per check, then a throughput table (images/s of a
training step of the demo, small and paper models at fp32, bf16 and bf16 + compile, and
cached-sampling pixels/s, rows run eagerly and replayed), then one JSON line with everything.
Exits 1 if any check failed.
The checks use a tiny model on synthetic data written to a temporary folder, so no dataset
is needed. A check that needs CUDA is skipped (and says so) on ``--device cpu``; the test
suite runs this script that way.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from pixelcnnpp.autoregressive import PixelCNNConfig, PixelCNNPP, exact_float32, list_blocks
from pixelcnnpp.training import (
    TrainConfig,
    evaluate,
    load_dataset,
    load_model,
    preset,
    read_metrics,
    train,
)
from pixelcnnpp.training.optim import Adam

RESULTS: list[dict] = []


def check(name: str, needs_cuda: bool = False):
    """Run the decorated check, print its line, keep its result."""

    def wrap(fn):
        def run(args):
            if args.checks and fn.__name__.removeprefix("check_") not in args.checks:
                return
            if needs_cuda and args.device != "cuda":
                print(f"SKIP  {name}: needs CUDA (--device cpu)", flush=True)
                RESULTS.append({"check": name, "result": "SKIP"})
                return
            start = time.perf_counter()
            try:
                detail = fn(args) or ""
                outcome = "PASS"
            except Exception as error:  # a failed check is reported, the others still run
                detail = f"{type(error).__name__}: {error}"
                if args.verbose:
                    traceback.print_exc()
                outcome = "FAIL"
            seconds = time.perf_counter() - start
            print(
                f"{outcome}  {name} ({seconds:.1f} s){': ' + detail if detail else ''}", flush=True
            )
            RESULTS.append({"check": name, "result": outcome, "detail": detail, "seconds": seconds})

        return run

    return wrap


# -- a tiny run on synthetic data -------------------------------------------------------------


def synthetic_data(folder: Path, size: int = 12, n: int = 320) -> Path:
    """Images with structure (gradients plus noise) in the npz format, labels 0..9."""
    g = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size)
    base = ramp[None, :, None] * g.uniform(0.5, 1.0, (n, 1, 1)) + ramp[None, None, :] * 0.3
    images = (base + g.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
    labels = np.arange(n) % 10
    cut = n * 3 // 4
    np.savez(folder / "train.npz", images=images[:cut], labels=labels[:cut])
    np.savez(folder / "test.npz", images=images[cut:], labels=labels[cut:])
    return folder


def tiny_config(args, data: Path, **changes) -> TrainConfig:
    config = TrainConfig(
        model=PixelCNNConfig(
            image_shape=(1, 12, 12),
            num_filters=16,
            num_resnet=1,
            num_stages=2,
            dropout=0.0,
            likelihood_kwargs={"num_mixtures": 3},
        ),
        dataset="npz",
        data_dir=str(data),
        device=args.device,
        validation_size=32,
        batch_size=16,
        max_steps=8,
        log_every=2,
        checkpoint_every=4,
        checkpoint_minutes=None,
        num_samples=4,
        init_batch_size=32,
        eval_batch_size=64,
        compile_backend=args.compile_backend,
    )
    return config.replace(**changes)


def train_losses(run: Path) -> dict[int, float]:
    return {
        r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"
    }


@check("bf16 + channels_last: training, validation, test evaluation, samples")
def check_bf16(args):
    run = args.work / "bf16"
    result = train(tiny_config(args, args.data, precision="bf16", channels_last=True), run)
    assert result.status == "completed" and result.step == 8, result.status
    assert result.validation and result.test and result.samples and result.samples.exists()
    losses = train_losses(run)
    assert all(math.isfinite(v) for v in losses.values()) and len(losses) == 4, losses
    return f"test {result.test.bits_per_dim:.3f} bits/dim"


@check("torch.compile training (a few steps)")
def check_compile(args):
    run = args.work / "compiled"
    result = train(
        tiny_config(args, args.data, compile=True, max_steps=4), run, evaluate_test=False
    )
    assert result.status == "completed" and result.step == 4
    return f"backend {args.compile_backend}"


@check("resume reproduces the uninterrupted run's losses")
def check_resume(args):
    config = tiny_config(args, args.data, validation_size=0, log_every=2, checkpoint_every=3)
    deterministic = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True  # the same kernels in both runs
    try:
        train(config, args.work / "whole", evaluate_test=False)
        train(config.replace(max_steps=3), args.work / "split", evaluate_test=False)
        train(resume=args.work / "split", overrides={"max_steps": 8}, evaluate_test=False)
    finally:
        torch.backends.cudnn.deterministic = deterministic
    whole, split = train_losses(args.work / "whole"), train_losses(args.work / "split")
    assert sorted(whole) == sorted(split) == [2, 4, 6, 8], (whole, split)
    worst = max(abs(whole[s] - split[s]) / abs(whole[s]) for s in whole)
    assert worst <= 1e-6, f"relative difference {worst:.2e}"
    return f"largest relative difference {worst:.1e}"


def tiny_model(device, dtype=torch.float32, block: str = "gated_resnet") -> PixelCNNPP:
    torch.manual_seed(0)
    config = PixelCNNConfig(
        image_shape=(1, 8, 8), num_filters=16, num_resnet=1, num_stages=2, dropout=0.0,
        likelihood_kwargs={"num_mixtures": 3}, block=block,
    )  # fmt: skip
    return PixelCNNPP(config).to(device=device, dtype=dtype).eval()


@check("cached == naive sampling, rows replayed or not (float64, and float32 with TF32 off)")
def check_sampling(args):
    device = torch.device(args.device)
    for dtype in (torch.float64, torch.float32):
        model = tiny_model(device, dtype)
        images = {}
        for name, options in SAMPLERS.items():
            g = torch.Generator(device=device).manual_seed(1)
            images[name] = model.sample(4, generator=g, **options)
        for name in ("cached", "replayed"):
            differ = int((images[name] != images["naive"]).sum())
            assert not differ, f"{dtype}: {name} and naive differ in {differ} pixels"
    return "4 images each, identical"


# How each way of sampling is asked for; "replayed" is a CUDA graph per pattern of rows on a
# GPU, a tape of ATen operations on CPU.
SAMPLERS = {
    "naive": {"method": "naive"},
    "cached": {"replay": False},
    "replayed": {"replay": True},
}


@check("every registered block: cached == replayed == naive sampling (float64), one compiled graph")
def check_blocks(args):
    device = torch.device(args.device)
    for name in list_blocks():
        model = tiny_model(device, torch.float64, name)
        images = [
            model.sample(2, generator=torch.Generator(device=device).manual_seed(1), **options)
            for options in SAMPLERS.values()
        ]
        assert torch.equal(images[0], images[1]), f"{name}: cached and naive sampling differ"
        assert torch.equal(images[1], images[2]), f"{name}: replayed rows differ from eager ones"
        model = tiny_model(device, torch.float32, name).train()
        x = torch.randint(0, 256, (2, 1, 8, 8), device=device)
        model.compiled_nll(backend=args.compile_backend)(x).mean().backward()
    return ", ".join(list_blocks())


@check("evaluation on CUDA equals evaluation on CPU (float32, TF32 off) to 1e-4 bits/dim", True)
def check_eval_devices(args):
    model = load_model(args.work / "bf16")
    test = load_dataset("npz", "test", data_dir=str(args.data))
    cpu = evaluate(model.cpu(), test, batch_size=64, precision="fp32")
    gpu = evaluate(model.cuda(), test, batch_size=64, precision="fp32")
    worst = float(np.abs(cpu.per_image - gpu.per_image).max())
    assert worst <= 1e-4, f"largest per-image difference {worst:.2e}"
    return f"mean {gpu.bits_per_dim:.5f} vs {cpu.bits_per_dim:.5f}; largest per-image difference {worst:.1e}"


@check("DDP over a real process group of one process: training, checkpoint, evaluation")
def check_ddp(args):
    import torch.distributed as dist

    backend = "nccl" if args.device == "cuda" else "gloo"
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29400 + os.getpid() % 1000))
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        run = args.work / "ddp"
        result = train(tiny_config(args, args.data, max_steps=4), run)
    finally:
        dist.destroy_process_group()
    assert result.status == "completed" and result.checkpoint and result.checkpoint.exists()
    assert result.test is not None
    return f"{backend}: test {result.test.bits_per_dim:.3f} bits/dim"


def pixelcnn(*words: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pixelcnnpp.cli", *words]
    return subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


@check("the CLI: train, evaluate, sample on the device")
def check_cli(args):
    run = args.work / "cli"
    tiny = [
        "--dataset", "npz", "--data-dir", str(args.data), "--device", args.device,
        "--set", "model.num_filters=8", "--num-resnet", "0", "--num-stages", "2",
        "--num-mixtures", "2", "--batch-size", "16", "--validation-size", "16",
        "--set", "init_batch_size=16", "--set", "num_samples=2", "--max-steps", "2",
        "--set", f"compile_backend={args.compile_backend}",
    ]  # fmt: skip
    for words in (
        ["train", *tiny, "--run-dir", str(run)],
        ["evaluate", str(run), "--device", args.device, "--max-images", "16"],
        [
            "sample",
            str(run),
            "--device",
            args.device,
            "--n",
            "2",
            "--out",
            str(args.work / "s.png"),
        ],
    ):
        done = pixelcnn(*words)
        assert done.returncode == 0, f"pixelcnn {words[0]}: {done.stderr.strip()[-300:]}"
    return "train, evaluate, sample"


@check("--device cuda with no GPU visible exits 2 with one clear line")
def check_no_gpu(args):
    hidden = pixelcnn(
        "train", "--dataset", "npz", "--data-dir", str(args.data), "--device", "cuda",
        "--max-steps", "1", "--run-dir", str(args.work / "no-gpu"),
        env={"CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    errors = [line for line in hidden.stderr.splitlines() if "Error:" in line]
    assert hidden.returncode == 2, f"exit {hidden.returncode}: {hidden.stderr[-300:]}"
    assert len(errors) == 1 and "CUDA is not available" in errors[0], hidden.stderr
    assert "Traceback" not in hidden.stderr
    return errors[0].strip()


# -- throughput -------------------------------------------------------------------------------


def model_of(name: str) -> PixelCNNConfig:
    """The preset's model, shaped for its dataset (demo: Fashion-MNIST; others: CIFAR-10)."""
    shape = (1, 28, 28) if name == "demo" else (3, 32, 32)
    return PixelCNNConfig.from_dict({**preset(name).model.to_dict(), "image_shape": shape})


def step_images_per_second(args, name: str, precision: str, compiled: bool) -> tuple[float, float]:
    """(images/s, peak GiB) of fwd + bwd + Adam of a preset's model at its batch size."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = model_of(name)
    batch = preset(name).batch_size
    model = PixelCNNPP(config).to(device)
    if precision == "bf16":
        model = model.to(memory_format=torch.channels_last)
    optimizer = Adam(model.parameters(), 1e-3, (0.95, 0.9995), 0.999995, device)
    loss_of = model.compiled_nll(backend=args.compile_backend) if compiled else model.nll
    x = torch.randint(0, 256, (batch, *config.image_shape), device=device)
    no_skip = torch.zeros((), dtype=torch.bool, device=device)

    def step():
        optimizer.zero_grad()
        with torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
            loss = loss_of(x).float().mean()
        loss.backward()
        optimizer.step(no_skip)

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return batch / statistics.median(times), peak


def sampling_pixels_per_second(args) -> dict[str, float]:
    """Pixels/s of cached sampling of 16 demo images, rows run eagerly and replayed."""
    device = torch.device(args.device)
    model = PixelCNNPP(model_of("demo")).to(device).eval()
    n, speeds = 16, {}
    for name in ("cached", "replayed"):
        g = torch.Generator(device=device).manual_seed(0)
        with exact_float32():
            start = time.perf_counter()
            model.sample(n, generator=g, **SAMPLERS[name])
            if device.type == "cuda":
                torch.cuda.synchronize()
        speeds[name] = n * 28 * 28 / (time.perf_counter() - start)
    return speeds


def throughput(args) -> list[dict]:
    rows = []
    for name in ("demo", "small", "paper"):
        for precision, compiled in (("fp32", False), ("bf16", False), ("bf16", True)):
            try:
                speed, peak = step_images_per_second(args, name, precision, compiled)
                rows.append({"model": name, "precision": precision, "compile": compiled,
                             "images_per_sec": speed, "peak_gib": peak})  # fmt: skip
            except Exception as error:
                rows.append({"model": name, "precision": precision, "compile": compiled,
                             "error": f"{type(error).__name__}: {error}"})  # fmt: skip
            print(f"  {rows[-1]}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="the checks only, no throughput")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--verbose", action="store_true", help="tracebacks of failed checks")
    parser.add_argument(
        "--checks", type=lambda text: set(text.split(",")), default=None,
        help="only these checks, e.g. resume,sampling (names: bf16, compile, resume, "
        "sampling, blocks, eval_devices, ddp, cli, no_gpu)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("FAIL  --device cuda, but torch sees no GPU (a CPU build of torch?)")
        return 1
    print(f"torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""))  # fmt: skip
    with tempfile.TemporaryDirectory() as work:
        args.work = Path(work)
        (args.work / "data").mkdir()
        args.data = synthetic_data(args.work / "data")
        for run in (check_bf16, check_compile, check_resume, check_sampling, check_blocks,
                    check_eval_devices, check_ddp, check_cli, check_no_gpu):  # fmt: skip
            run(args)
        rows = [] if args.quick else throughput(args)
        pixels = None if args.quick else sampling_pixels_per_second(args)
    if rows:
        print(f"\n{'model':<7}{'precision':<11}{'compile':<9}{'images/s':>10}{'peak GiB':>10}")
        for r in rows:
            speed = (
                f"{r['images_per_sec']:10.1f}{r['peak_gib']:10.2f}"
                if "error" not in r
                else f"  {r['error'][:60]}"
            )
            print(f"{r['model']:<7}{r['precision']:<11}{r['compile']!s:<9}{speed}")
        for name, speed in pixels.items():
            print(f"{name} sampling, demo model, 16 images: {speed:,.0f} pixels/s")
    print(json.dumps({"device": args.device, "torch": torch.__version__, "checks": RESULTS,
                      "throughput": rows, "sampling_pixels_per_sec": pixels}))  # fmt: skip
    return 1 if any(r["result"] == "FAIL" for r in RESULTS) else 0


if __name__ == "__main__":
    sys.exit(main())
