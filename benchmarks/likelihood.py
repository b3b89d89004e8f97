"""Forward + backward of the DMoL negative log-likelihood: ours vs the straightforward port.

    python benchmarks/likelihood.py [--repeats 20] [--warmup 3] [--threads N] [--device cuda]
                                    [--second-order] [--json-only]

For each shape ``(B, C, H, W, K)`` it times ``-log_prob(x).mean()`` plus its backward (median
over ``--repeats`` after ``--warmup`` untimed runs) and measures the peak memory of one such
step, for

* ``ours``: ``DiscretizedLogisticMixture.from_params(params, C).log_prob(x)``, with the default
  argument validation and with ``validate_args=False``;
* ``straightforward``: the paper's formulas written the way the popular PyTorch ports write
  ``discretized_mix_logistic_loss`` (NHWC, RGB coupling hard-coded, a separate path for one
  channel, sigmoid CDF differences and a density approximation for bins below 1e-5).

With ``--second-order`` it also times a Hessian-vector product of the same loss (the gradient
with ``create_graph=True``, then the backward pass of ``gradient . v``), ours against the
straightforward formula differentiated twice by autograd (rows ``*_hvp``, speedups against
``straightforward_hvp``).

Both see the same parameters and pixels (the port takes them pre-scaled to ``[-1, 1]``, as
its callers hold them). It prints a table, then one JSON line with every number and the ratios
``speedup = t_straightforward / t_ours`` and ``memory_ratio = peak_ours / peak_straightforward``.
The issue's target at the first shape: speedup >= 3 and memory_ratio <= 0.5.

Times are medians of wall time (CUDA events on a GPU) and, on CPU, also of the process's CPU
time (all threads, spin-waits included): on a machine shared with other work the CPU time is
the steadier of the two, and with ``--threads 1`` it is the single-core cost.

Peak memory is the peak of live tensor bytes allocated during one forward + backward, above
what was live before it (inputs, parameters and the gradient buffer of earlier steps
excluded). On CUDA it is ``torch.cuda.max_memory_allocated`` minus the bytes allocated before
the step. On CPU it is the same quantity rebuilt from the profiler's memory events
(``profile_memory=True``): every allocation and free of the step in time order, summed, and
the maximum of the running sum taken. Neither counts allocator caching or fragmentation.
"""

from __future__ import annotations

import argparse
import json
import math

import torch
import torch.nn.functional as F
from measure import median_seconds, peak_bytes

from pixelcnnpp.likelihoods import DiscretizedLogisticMixture

SHAPES = [  # (B, C, H, W, K)
    (16, 3, 32, 32, 10),
    (64, 1, 28, 28, 10),
]
SPEEDUP_TARGET = 3.0
MEMORY_RATIO_TARGET = 0.5


# -- the straightforward implementation --------------------------------------------------------


def log_prob_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the last axis, written out as the ports do."""
    top = logits.max(dim=-1, keepdim=True).values
    return logits - top - torch.log(torch.exp(logits - top).sum(dim=-1, keepdim=True))


def log_sum_exp(values: torch.Tensor) -> torch.Tensor:
    """Log-sum-exp over the last axis, written out as the ports do."""
    top = values.max(dim=-1).values
    return top + torch.log(torch.exp(values - top.unsqueeze(-1)).sum(dim=-1))


def straightforward_nll(x: torch.Tensor, params: torch.Tensor, num_channels: int) -> torch.Tensor:
    """Mean over the batch of the 8-bit DMoL NLL (nats per image), the ports' way.

    ``x [B, C, H, W]`` scaled to ``[-1, 1]``; ``params [B, K*(1 + 2C + C(C-1)/2), H, W]`` in
    the ``from_params`` layout. C = 3 (RGB coupling written out) or C = 1.
    """
    if num_channels not in (1, 3):
        raise ValueError(f"the straightforward loss handles C = 1 or 3, got {num_channels}")
    c = num_channels
    x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
    params = params.permute(0, 2, 3, 1)  # (B, H, W, D)
    b, h, w, d = params.shape
    k = d // (1 + 2 * c + c * (c - 1) // 2)
    logits = params[..., :k]  # (B, H, W, K)
    means = params[..., k : k + c * k].reshape(b, h, w, c, k)
    log_scales = torch.clamp(
        params[..., k + c * k : k + 2 * c * k].reshape(b, h, w, c, k), min=-7.0
    )
    x = x.unsqueeze(-1) + torch.zeros(b, h, w, c, k, device=x.device, dtype=x.dtype)
    if c == 3:
        coeffs = torch.tanh(params[..., k + 2 * c * k :].reshape(b, h, w, 3, k))
        m1 = means[..., 0, :]
        m2 = means[..., 1, :] + coeffs[..., 0, :] * x[..., 0, :]
        m3 = means[..., 2, :] + coeffs[..., 1, :] * x[..., 0, :] + coeffs[..., 2, :] * x[..., 1, :]
        means = torch.stack([m1, m2, m3], dim=3)
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    plus_in = inv_stdv * (centered + 1.0 / 255.0)
    cdf_plus = torch.sigmoid(plus_in)
    min_in = inv_stdv * (centered - 1.0 / 255.0)
    cdf_min = torch.sigmoid(min_in)
    log_cdf_plus = plus_in - F.softplus(plus_in)  # log-mass of the lowest level
    log_one_minus_cdf_min = -F.softplus(min_in)  # log-mass of the highest level
    cdf_delta = cdf_plus - cdf_min
    mid_in = inv_stdv * centered
    log_pdf_mid = mid_in - log_scales - 2.0 * F.softplus(mid_in)
    log_probs = torch.where(
        x < -0.999,
        log_cdf_plus,
        torch.where(
            x > 0.999,
            log_one_minus_cdf_min,
            torch.where(
                cdf_delta > 1e-5,
                torch.log(torch.clamp(cdf_delta, min=1e-12)),
                log_pdf_mid - math.log(127.5),
            ),
        ),
    )
    log_probs = log_probs.sum(dim=3) + log_prob_from_logits(logits)  # (B, H, W, K)
    return -log_sum_exp(log_probs).sum() / b


def ours_nll(x: torch.Tensor, params: torch.Tensor, num_channels: int, validate: bool):
    """Mean over the batch of the NLL through the library."""
    dist = DiscretizedLogisticMixture.from_params(params, num_channels, validate_args=validate)
    return -dist.log_prob(x).mean()


# -- measurement -------------------------------------------------------------------------------


def step(loss_fn, params: torch.Tensor) -> torch.Tensor:
    params.grad = None
    loss = loss_fn(params)
    loss.backward()
    return loss.detach()


def hvp_step(loss_fn, params: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """A Hessian-vector product: ``d/dparams (d loss / d params . vector)`` into ``params.grad``."""
    params.grad = None
    (grad,) = torch.autograd.grad(loss_fn(params), params, create_graph=True)
    (grad * vector).sum().backward()
    return grad.detach()


def run_shape(shape, device, repeats: int, warmup: int, second_order: bool = False) -> dict:
    b, c, h, w, k = shape
    gen = torch.Generator(device="cpu").manual_seed(0)
    num_params = DiscretizedLogisticMixture.num_params(c, k)
    params = torch.randn(b, num_params, h, w, generator=gen).to(device).requires_grad_()
    x = torch.randint(0, 256, (b, c, h, w), generator=gen).to(device)
    x_scaled = x.float() * (2.0 / 255.0) - 1.0
    candidates = {
        "ours": lambda p: ours_nll(x, p, c, validate=True),
        "ours_no_validation": lambda p: ours_nll(x, p, c, validate=False),
        "straightforward": lambda p: straightforward_nll(x_scaled, p, c),
    }
    steps = {name: (lambda fn=fn: step(fn, params)) for name, fn in candidates.items()}
    if second_order:
        vector = torch.randn(params.shape, generator=gen).to(device)
        for name in ("ours_no_validation", "straightforward"):
            fn = candidates[name]
            steps[f"{name}_hvp"] = lambda fn=fn: hvp_step(fn, params, vector)
    timings = median_seconds(steps, device, repeats, warmup)
    results = {}
    for name, run in steps.items():
        loss = candidates[name.removesuffix("_hvp")](params).item()
        params.grad = None  # so that the step's own gradient counts towards its peak
        results[name] = {
            "loss": loss,
            "seconds": timings[name][0],
            "cpu_seconds": timings[name][1],
            "peak_bytes": peak_bytes(run, device),
        }
    ref = results["straightforward"]
    for name in ("ours", "ours_no_validation"):
        r = results[name]
        r["speedup"] = ref["seconds"] / r["seconds"]
        if r["cpu_seconds"] is not None:
            r["cpu_speedup"] = ref["cpu_seconds"] / r["cpu_seconds"]
        r["memory_ratio"] = r["peak_bytes"] / ref["peak_bytes"]
    if second_order:
        ref, r = results["straightforward_hvp"], results["ours_no_validation_hvp"]
        r["speedup"] = ref["seconds"] / r["seconds"]
        if r["cpu_seconds"] is not None:
            r["cpu_speedup"] = ref["cpu_seconds"] / r["cpu_seconds"]
        r["memory_ratio"] = r["peak_bytes"] / ref["peak_bytes"]
    return {"shape": dict(zip("BCHWK", shape, strict=True)), "results": results}


def print_table(report: dict) -> None:
    print(
        f"device={report['device']} threads={report['threads']} torch={report['torch']} "
        f"repeats={report['repeats']} (median) warmup={report['warmup']}"
    )
    header = (
        f"{'shape (B,C,H,W,K)':<18} {'impl':<22} {'loss':>9} {'wall ms':>8} {'speedup':>7} "
        f"{'cpu ms':>8} {'speedup':>7} {'peak MiB':>8} {'mem ratio':>9}"
    )
    print(header)
    print("-" * len(header))
    for entry in report["shapes"]:
        label = ",".join(str(v) for v in entry["shape"].values())
        for name, r in entry["results"].items():
            cpu = "-" if r["cpu_seconds"] is None else f"{r['cpu_seconds'] * 1e3:.2f}"
            print(
                f"{label:<18} {name:<22} {r['loss']:>9.1f} {r['seconds'] * 1e3:>8.2f} "
                f"{r.get('speedup', 1.0):>6.2f}x {cpu:>8} {r.get('cpu_speedup', 1.0):>6.2f}x "
                f"{r['peak_bytes'] / 2**20:>8.2f} {r.get('memory_ratio', 1.0):>9.2f}"
            )
    first = report["shapes"][0]["results"]["ours"]
    print(
        f"target at the first shape: speedup >= {SPEEDUP_TARGET:g} (got {first['speedup']:.2f}), "
        f"memory ratio <= {MEMORY_RATIO_TARGET:g} (got {first['memory_ratio']:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs before timing")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (default: torch's default, the core count)",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument(
        "--second-order", action="store_true", help="also time Hessian-vector products"
    )
    parser.add_argument("--json-only", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.set_num_threads(args.threads or torch.get_num_threads())
    report = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "shapes": [
            run_shape(s, device, args.repeats, args.warmup, args.second_order) for s in SHAPES
        ],
    }
    first = report["shapes"][0]["results"]["ours"]
    report["meets_target"] = (
        first["speedup"] >= SPEEDUP_TARGET and first["memory_ratio"] <= MEMORY_RATIO_TARGET
    )
    if not args.json_only:
        print_table(report)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
