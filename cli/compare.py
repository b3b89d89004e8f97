"""``pixelcnn compare``: likelihoods and blocks trained alike on each dataset, with paired test
results."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pixelcnnpp.training import get_dataset_spec
from pixelcnnpp.training.compare import (
    ComparisonReport,
    DatasetComparison,
    new_comparison_dir,
    variant_grid,
)
from pixelcnnpp.training.compare import compare as run_comparison

from .options import DATA, MODEL, SCHEDULE, SharedOptions, finite_float, shared_options
from .output import Session, bits, duration, interval, key_value_table

DEFAULT_LIKELIHOODS = ["dmol", "softmax"]
DEFAULT_DATASETS = ["fashion-mnist"]


@shared_options
def compare(
    ctx: typer.Context,
    likelihoods: Annotated[
        list[str] | None,
        typer.Option(
            "--likelihood",
            metavar="NAME",
            help="A likelihood to train; repeatable. Default: dmol and softmax; the preset's "
            "(dmol) when several --block or --num-mixtures are given.",
            rich_help_panel=MODEL,
        ),
    ] = None,
    blocks: Annotated[
        list[str] | None,
        typer.Option(
            "--block",
            metavar="NAME",
            help="A block to build the model from; repeatable. Default: the preset's "
            "(gated_resnet).",
            rich_help_panel=MODEL,
        ),
    ] = None,
    num_mixtures: Annotated[
        list[int] | None,
        typer.Option(
            "--num-mixtures",
            metavar="K",
            min=1,
            help="Logistic mixture components; repeatable (for likelihoods that take it: dmol).",
            rich_help_panel=MODEL,
        ),
    ] = None,
    datasets: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset",
            metavar="NAME",
            help="A dataset to train on; repeatable. Default: fashion-mnist.",
            rich_help_panel=DATA,
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            "--max-steps",
            "--steps",
            min=1,
            help="Train every run this many steps, as train's --max-steps (not with "
            "--max-minutes).",
            rich_help_panel=SCHEDULE,
        ),
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            parser=finite_float(0.0),
            help="Train every run this many minutes (not with --max-steps).",
            rich_help_panel=SCHEDULE,
        ),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option(help="Each comparison makes a new folder in here.")
    ] = Path("compare-runs"),
    *,
    shared: SharedOptions,
) -> None:
    """Compare likelihoods and blocks: the same budget and seed for each, on each dataset.

    Trains every --likelihood crossed with every --block and every --num-mixtures (the
    first combination is the baseline). Every run is evaluated on the test split with its
    EMA weights; the per-image bits/dim of each variant are compared with the baseline's
    (paired t-test). Writes report.md,
    report.json, learning curves and side-by-side samples into a new folder in --out-dir.
    The budget is the preset's (demo: 10 minutes per run) unless --max-steps or --max-minutes
    is given.

    Examples:

        pixelcnn compare --max-minutes 5
        pixelcnn compare --likelihood dmol --likelihood softmax --dataset mnist --max-steps 2000
        pixelcnn compare --block gated_resnet --block attention_resnet --max-minutes 10
        pixelcnn compare --likelihood dmol --num-mixtures 5 --num-mixtures 10
    """
    session: Session = ctx.obj
    if steps is not None and max_minutes is not None:
        raise ValueError(
            "--max-steps and --max-minutes are mutually exclusive: give every run one budget"
        )
    if likelihoods is None and len(blocks or ()) < 2 and len(num_mixtures or ()) < 2:
        likelihoods = DEFAULT_LIKELIHOODS  # else the comparison is of the blocks or mixtures
    datasets = datasets or DEFAULT_DATASETS
    for dataset in datasets:
        get_dataset_spec(dataset)
    budget = {}
    if steps is not None:
        budget = {"max_steps": steps, "max_minutes": None}
    elif max_minutes is not None:
        budget = {"max_minutes": max_minutes, "max_steps": None}
    likelihood = likelihoods[0] if likelihoods else None
    base = shared.config(dataset=datasets[0], model_likelihood=likelihood, **budget)
    variants = variant_grid(base, likelihoods, blocks, num_mixtures)
    names = [v.name for v in variants]
    folder = new_comparison_dir(out_dir, variants)
    session.note(f"Comparing {', '.join(names)} on {', '.join(datasets)} in {folder}")
    report = run_comparison(variants, datasets, base, folder, reporter=session.reporter())
    for comparison in report.datasets:
        session.show(*dataset_tables(comparison))
    session.show(files_table(report))


def dataset_tables(comparison: DatasetComparison) -> list[Table]:
    """One row per variant; then the paired differences from the baseline."""
    runs = Table(title=f"{comparison.dataset}: test bits/dim (EMA weights)", title_justify="left")
    for column in ("variant", "test bits/dim", "95% CI", "parameters", "train images/s"):
        runs.add_column(column, justify="left" if column == "variant" else "right")
    runs.add_column("train time", justify="right")
    runs.add_column("steps", justify="right")
    for name, result in comparison.runs.items():
        test = result.test
        runs.add_row(
            name,
            bits(test.bits_per_dim),
            interval(test.ci_low, test.ci_high),
            f"{result.num_parameters:,}",
            f"{result.images_per_sec:.1f}",
            duration(result.train_seconds),
            str(result.step),
        )
    tables = [runs]
    if comparison.paired:
        paired = Table(
            title=f"{comparison.dataset}: paired difference per test image "
            "(negative: the other is better)",
            title_justify="left",
        )
        for column in ("comparison", "mean difference", "95% CI", "p-value", "images"):
            paired.add_column(column, justify="left" if column == "comparison" else "right")
        for p in comparison.paired:
            paired.add_row(
                f"{p.other} - {p.baseline}",
                f"{p.mean_difference:+.4f}",
                interval(p.ci_low, p.ci_high, signed=True),
                "n/a" if math.isnan(p.p_value) else f"{p.p_value:.3g}",
                str(p.num_images),
            )
        tables.append(paired)
    return tables


def files_table(report: ComparisonReport) -> Table:
    rows = [("report", report.report_md), ("report (JSON)", report.report_json)]
    for c in report.datasets:
        rows += [
            (f"{c.dataset} learning curves", c.learning_curves),
            (f"{c.dataset} samples", c.samples),
        ]
        rows += [(f"{c.dataset} {name} run", r.run_dir) for name, r in c.runs.items()]
    return key_value_table("Files", rows)
