"""Comparing likelihoods: the same architecture, budget and seed per likelihood and dataset,
evaluated on the test split, with a paired comparison of the per-image bits/dim.

This is how the paper's claim that the mixture trains faster than the 256-way softmax gets
checked on any dataset: ``compare(["dmol", "softmax"], ["fashion-mnist"], base, max_steps=...)``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import stats

from .config import TrainConfig
from .data import get_dataset_spec, load_dataset
from .evaluation import confidence_interval
from .images import plot_learning_curves, side_by_side
from .loop import TrainResult, train
from .metrics import read_metrics
from .reporting import Reporter


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
    runs: dict[str, TrainResult]
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
    likelihoods: list[str],
    datasets: list[str],
    base: TrainConfig,
    out_dir: str | os.PathLike,
    likelihood_kwargs: dict[str, dict[str, Any]] | None = None,
    reporter: Reporter | None = None,
) -> ComparisonReport:
    """Train every likelihood on every dataset with ``base``'s architecture, budget
    (``max_steps``/``max_minutes``) and seed; evaluate each on the whole test split (capped by
    ``base.test_max_images``); write ``report.md``, ``report.json``, one learning-curve plot and
    one side-by-side sample grid per dataset under ``out_dir``.

    The first likelihood is the baseline of the paired comparisons.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            "compare runs in one process (it trains one run after another); under torchrun, "
            "train each likelihood with `pixelcnn train` and compare the runs' eval/ folders"
        )
    if len(likelihoods) < 1 or len(set(likelihoods)) != len(likelihoods):
        raise ValueError(f"likelihoods must be distinct names, got {likelihoods}")
    if not datasets:
        raise ValueError("name at least one dataset")
    reporter = reporter or Reporter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kwargs = likelihood_kwargs or {}
    results = []
    for dataset in datasets:
        dataset_base = config_for_dataset(base, dataset)
        runs: dict[str, TrainResult] = {}
        for name in likelihoods:
            cfg = dataset_base.replace(
                **{"model.likelihood": name, "model.likelihood_kwargs": kwargs.get(name, {})}
            )
            reporter.message(f"[bold]{dataset}[/bold]: training with the {name} likelihood")
            runs[name] = train(cfg, out / dataset / name, reporter=reporter)
            if runs[name].status == "interrupted":
                raise KeyboardInterrupt(
                    f"comparison interrupted while training {name} on {dataset}; its last "
                    f"checkpoint is in {runs[name].run_dir / 'checkpoints'}"
                )
        comparison = DatasetComparison(dataset, runs)
        first = likelihoods[0]
        for name in likelihoods[1:]:
            comparison.paired.append(
                paired_comparison(
                    first, runs[first].test.per_image, name, runs[name].test.per_image
                )
            )
        comparison.learning_curves = plot_learning_curves(
            {name: read_metrics(r.run_dir / "metrics.jsonl") for name, r in runs.items()},
            out / dataset / "learning_curves.png",
            title=f"{dataset}: " + " vs ".join(likelihoods),
        )
        shown = {name: r.samples for name, r in runs.items() if r.samples}
        if shown:
            grids = [np.asarray(Image.open(path).convert("RGB")) for path in shown.values()]
            comparison.samples = out / dataset / "samples.png"
            Image.fromarray(side_by_side(grids, labels=list(shown))).save(comparison.samples)
        results.append(comparison)
    report_json = out / "report.json"
    report_json.write_text(json.dumps(_report_dict(likelihoods, base, results), indent=2) + "\n")
    report_md = out / "report.md"
    report_md.write_text(_report_markdown(likelihoods, base, results))
    return ComparisonReport(out, results, report_md, report_json)


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
    likelihoods, base: TrainConfig, results: list[DatasetComparison]
) -> dict[str, Any]:
    return {
        "likelihoods": likelihoods,
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


def _report_markdown(likelihoods, base: TrainConfig, results: list[DatasetComparison]) -> str:
    budget = (
        f"{base.max_steps} steps" if base.max_steps is not None else f"{base.max_minutes} minutes"
    )
    lines = [
        "# Likelihood comparison",
        "",
        f"Likelihoods: {', '.join(likelihoods)}. Same architecture, budget ({budget}) and seed ({base.seed}) "
        "for each; test bits/dim with the EMA weights; 95% confidence intervals over test images.",
        "",
    ]
    for c in results:
        lines += [
            f"## {c.dataset}",
            "",
            "| likelihood | test bits/dim | 95% CI | parameters | train images/s | train time (s) | steps |",
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
