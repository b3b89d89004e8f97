"""Comparing models: variants of one config (likelihoods, blocks, numbers of mixtures) trained
with the same budget and seed on each dataset, evaluated on the test split, with a paired
comparison of the per-image bits/dim.

This is how the paper's claim that the mixture trains faster than the 256-way softmax gets
checked on any dataset: ``compare(["dmol", "softmax"], ["fashion-mnist"], base, out_dir)``;
``variant_grid`` crosses likelihoods with blocks and numbers of mixtures.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import stats

from pixelcnnpp.autoregressive import BLOCKS
from pixelcnnpp.likelihoods import LIKELIHOODS

from .config import TrainConfig
from .data import get_dataset_spec, load_dataset
from .evaluation import confidence_interval
from .images import plot_learning_curves, side_by_side
from .loop import TrainResult, train
from .metrics import read_metrics
from .reporting import Reporter
from .run_folder import unique_path


@dataclass(frozen=True)
class Variant:
    """One model of a comparison: its name (its row in the report and its run folder's name)
    and the config fields it sets (``TrainConfig.replace`` keys)."""

    name: str
    changes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "changes": dict(self.changes)}


def variant_grid(
    base: TrainConfig,
    likelihoods: list[str] | None = None,
    blocks: list[str] | None = None,
    num_mixtures: list[int] | None = None,
) -> list[Variant]:
    """Every likelihood crossed with every block and every number of mixtures, in the order
    given (the first variant is the baseline). ``None`` keeps ``base``'s choice. A number of
    mixtures applies to the likelihoods that take ``num_mixtures`` (``dmol``), the others
    are trained once; ``base``'s likelihood keeps its other arguments.

    A variant is named by what varies: ``dmol``, ``softmax``; ``dmol-gated_resnet``;
    ``dmol-k5``.
    """
    likelihoods = _distinct("likelihoods", likelihoods or [base.model.likelihood])
    blocks = _distinct("blocks", blocks or [base.model.block])
    mixtures = _distinct("numbers of mixtures", num_mixtures or [None])
    for name in likelihoods:
        LIKELIHOODS.get(name)
    for name in blocks:
        BLOCKS.get(name)
    takes = [name for name in likelihoods if LIKELIHOODS.accepts(name, "num_mixtures")]
    if num_mixtures and not takes:
        raise ValueError(
            f"--num-mixtures applies to likelihoods that take num_mixtures (e.g. dmol); "
            f"{', '.join(likelihoods)} take none"
        )
    variants = []
    for likelihood in likelihoods:
        kwargs = dict(base.model.likelihood_kwargs) if likelihood == base.model.likelihood else {}
        for block in blocks:
            for k in mixtures if likelihood in takes else [None]:
                parts = [likelihood] if len(likelihoods) > 1 or len(mixtures) > 1 else []
                parts += [block] if len(blocks) > 1 else []
                parts += [f"k{k}"] if k is not None and len(mixtures) > 1 else []
                changes = {
                    "model.likelihood": likelihood,
                    "model.block": block,
                    "model.likelihood_kwargs": kwargs
                    if k is None
                    else {**kwargs, "num_mixtures": k},
                }
                variants.append(Variant("-".join(parts) or likelihood, changes))
    return variants


def _distinct(what: str, values: list) -> list:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must be distinct, got {values}")
    return list(values)


def new_comparison_dir(root: str | os.PathLike, variants: list[Variant | str]) -> Path:
    """``root/<date>-<time>-<first>-vs-<second>...``, made unique."""
    names = [v.name if isinstance(v, Variant) else v for v in variants]
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return unique_path(Path(root) / f"{stamp}-{'-vs-'.join(names)}")


@dataclass
class PairedComparison:
    """Per-image bits/dim of ``other`` minus ``baseline`` on the same test images."""

    baseline: str
    other: str
    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float  # two-sided paired t-test
    num_images: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DatasetComparison:
    dataset: str
    runs: dict[str, TrainResult]  # by variant name, the baseline first
    paired: list[PairedComparison] = field(default_factory=list)
    learning_curves: Path | None = None
    samples: Path | None = None


@dataclass
class ComparisonReport:
    out_dir: Path
    datasets: list[DatasetComparison]
    report_md: Path
    report_json: Path


def paired_comparison(baseline: str, a: np.ndarray, other: str, b: np.ndarray) -> PairedComparison:
    """``b - a`` per image: mean, 95% t-interval and the paired t-test's p-value."""
    if a.shape != b.shape:
        raise ValueError(
            f"paired comparison needs the same test images, got {a.shape} and {b.shape}"
        )
    diff = b.astype(np.float64) - a.astype(np.float64)
    low, high = confidence_interval(diff)
    p = float(stats.ttest_rel(b, a).pvalue) if len(diff) > 1 and diff.std() > 0 else float("nan")
    return PairedComparison(baseline, other, float(diff.mean()), low, high, p, len(diff))


def config_for_dataset(base: TrainConfig, dataset: str) -> TrainConfig:
    """``base`` with the dataset and the model's image shape set from it (and the number of
    classes when the model is class-conditional)."""
    spec = get_dataset_spec(dataset)
    shape, classes = spec.image_shape, spec.num_classes
    if shape is None:
        probe = load_dataset(
            dataset,
            "train",
            data_dir=base.data_dir,
            validation_size=0,
            subset=1,
            **base.dataset_options,
        )
        shape, classes = probe.image_shape, probe.num_classes
    changes: dict[str, Any] = {"dataset": dataset, "model.image_shape": tuple(shape)}
    if base.model.num_classes is not None:
        if classes is None:
            raise ValueError(f"dataset {dataset!r} has no labels for a class-conditional model")
        changes["model.num_classes"] = classes
    return base.replace(**changes)


def compare(
    variants: list[Variant | str],
    datasets: list[str],
    base: TrainConfig,
    out_dir: str | os.PathLike,
    likelihood_kwargs: dict[str, dict[str, Any]] | None = None,
    reporter: Reporter | None = None,
) -> ComparisonReport:
    """Train every variant on every dataset with ``base``'s budget (``max_steps`` /
    ``max_minutes``) and seed; evaluate each on the whole test split (capped by
    ``base.test_max_images``); write ``report.md``, ``report.json``, one learning-curve plot and
    one side-by-side sample grid per dataset under ``out_dir``.

    A variant is a ``Variant`` (see ``variant_grid``) or a likelihood name, which trains
    ``base`` with that likelihood and its ``likelihood_kwargs`` entry. The first variant is
    the baseline of the paired comparisons.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            "compare runs in one process (it trains one run after another); under torchrun, "
            "train each variant with `pixelcnn train` and compare the runs' eval/ folders"
        )
    kwargs = likelihood_kwargs or {}
    variants = [
        v
        if isinstance(v, Variant)
        else Variant(v, {"model.likelihood": v, "model.likelihood_kwargs": kwargs.get(v, {})})
        for v in variants
    ]
    names = [v.name for v in variants]
    if not variants or len(set(names)) != len(names):
        raise ValueError(f"variants must have distinct names, got {names}")
    if not datasets:
        raise ValueError("name at least one dataset")
    reporter = reporter or Reporter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for dataset in datasets:
        dataset_base = config_for_dataset(base, dataset)
        runs: dict[str, TrainResult] = {}
        for variant in variants:
            cfg = dataset_base.replace(**variant.changes)
            reporter.message(f"[bold]{dataset}[/bold]: training {_describe(cfg)}")
            run = runs[variant.name] = train(cfg, out / dataset / variant.name, reporter=reporter)
            if run.status == "interrupted":
                raise KeyboardInterrupt(
                    f"comparison interrupted while training {variant.name} on {dataset}; its "
                    f"last checkpoint is in {run.run_dir / 'checkpoints'}"
                )
        comparison = DatasetComparison(dataset, runs)
        first = names[0]
        for name in names[1:]:
            comparison.paired.append(
                paired_comparison(
                    first, runs[first].test.per_image, name, runs[name].test.per_image
                )
            )
        comparison.learning_curves = plot_learning_curves(
            {name: read_metrics(r.run_dir / "metrics.jsonl") for name, r in runs.items()},
            out / dataset / "learning_curves.png",
            title=f"{dataset}: " + " vs ".join(names),
        )
        shown = {name: r.samples for name, r in runs.items() if r.samples}
        if shown:
            grids = [np.asarray(Image.open(path).convert("RGB")) for path in shown.values()]
            comparison.samples = out / dataset / "samples.png"
            Image.fromarray(side_by_side(grids, labels=list(shown))).save(comparison.samples)
        results.append(comparison)
    report_json = out / "report.json"
    report_json.write_text(json.dumps(_report_dict(variants, base, results), indent=2) + "\n")
    report_md = out / "report.md"
    report_md.write_text(_report_markdown(names, base, results))
    return ComparisonReport(out, results, report_md, report_json)


def _describe(config: TrainConfig) -> str:
    """``the dmol likelihood (num_mixtures=5) and the gated_resnet block``."""
    model = config.model
    kwargs = ", ".join(f"{k}={v}" for k, v in model.likelihood_kwargs.items())
    return (
        f"the {model.likelihood} likelihood{f' ({kwargs})' if kwargs else ''} and the "
        f"{model.block} block"
    )


def _run_dict(r: TrainResult) -> dict[str, Any]:
    return {
        "run_dir": str(r.run_dir),
        "status": r.status,
        "steps": r.step,
        "train_seconds": r.train_seconds,
        "train_images_per_sec": r.images_per_sec,
        "num_parameters": r.num_parameters,
        "test": r.test.to_dict() if r.test else None,
    }


def _report_dict(
    variants: list[Variant], base: TrainConfig, results: list[DatasetComparison]
) -> dict[str, Any]:
    return {
        "variants": [v.to_dict() for v in variants],
        "budget": {"max_steps": base.max_steps, "max_minutes": base.max_minutes},
        "seed": base.seed,
        "base_config": base.to_dict(),
        "datasets": {
            c.dataset: {
                "runs": {name: _run_dict(r) for name, r in c.runs.items()},
                "paired": [p.to_dict() for p in c.paired],
                "learning_curves": str(c.learning_curves) if c.learning_curves else None,
                "samples": str(c.samples) if c.samples else None,
            }
            for c in results
        },
    }


def _report_markdown(names: list[str], base: TrainConfig, results: list[DatasetComparison]) -> str:
    budget = (
        f"{base.max_steps} steps" if base.max_steps is not None else f"{base.max_minutes} minutes"
    )
    lines = [
        "# Comparison",
        "",
        f"Variants: {', '.join(names)} (the first is the baseline). Same budget ({budget}) and "
        f"seed ({base.seed}) for each; test bits/dim with the EMA weights; 95% confidence "
        "intervals over test images.",
        "",
    ]
    for c in results:
        lines += [
            f"## {c.dataset}",
            "",
            "| variant | test bits/dim | 95% CI | parameters | train images/s | train time (s) | steps |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in c.runs.items():
            t = r.test
            lines.append(
                f"| {name} | {t.bits_per_dim:.4f} | [{t.ci_low:.4f}, {t.ci_high:.4f}] | {r.num_parameters:,} | "
                f"{r.images_per_sec:.1f} | {r.train_seconds:.0f} | {r.step} |"
            )
        if c.paired:
            lines += [
                "",
                "Paired per-image difference (other minus baseline; negative: the other is better):",
                "",
                "| comparison | mean difference (bits/dim) | 95% CI | p-value | images |",
                "|---|---|---|---|---|",
            ]
            for p in c.paired:
                pv = "n/a" if math.isnan(p.p_value) else f"{p.p_value:.3g}"
                lines.append(
                    f"| {p.other} - {p.baseline} | {p.mean_difference:+.4f} | [{p.ci_low:+.4f}, {p.ci_high:+.4f}] | "
                    f"{pv} | {p.num_images} |"
                )
        lines += [""]
        if c.learning_curves:
            lines += [
                f"![learning curves]({c.learning_curves.relative_to(c.learning_curves.parents[1])})",
                "",
            ]
        if c.samples:
            lines += [
                f"![samples, left to right: {', '.join(c.runs)}]({c.samples.relative_to(c.samples.parents[1])})",
                "",
            ]
    return "\n".join(lines)
