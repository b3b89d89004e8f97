"""``pixelcnn compare``: likelihoods trained alike on each dataset, with paired test results."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pixelcnnpp.training import get_dataset_spec
from pixelcnnpp.training.compare import ComparisonReport, DatasetComparison
from pixelcnnpp.training.compare import compare as run_comparison

from .options import (
    DATA,
    MODEL,
    SCHEDULE,
    TF32,
    Assignments,
    BatchSize,
    Block,
    ChannelsLast,
    Compile,
    Conditional,
    DataDir,
    Device,
    Download,
    Dropout,
    EmaDecay,
    GradClip,
    LearningRate,
    LearningRateDecay,
    NumBits,
    NumFilters,
    NumMixtures,
    NumResnet,
    NumStages,
    Plugins,
    Precision,
    PresetName,
    Seed,
    Subset,
    ValidationSize,
    build_config,
    check_names,
    finite_float,
    option_changes,
    parse_assignments,
)
from .output import Session, bits, duration, interval, key_value_table
from .plugins import load_plugins

DEFAULT_LIKELIHOODS = ["dmol", "softmax"]
DEFAULT_DATASETS = ["fashion-mnist"]


def compare(
    ctx: typer.Context,
    likelihoods: Annotated[
        list[str] | None,
        typer.Option(
            "--likelihood",
            metavar="NAME",
            help="A likelihood to train; repeatable, the first is the baseline of the paired "
            "comparisons. Default: dmol and softmax.",
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
    preset: PresetName = None,
    data_dir: DataDir = None,
    download: Download = False,
    subset: Subset = None,
    validation_size: ValidationSize = None,
    num_mixtures: NumMixtures = None,
    num_filters: NumFilters = None,
    num_resnet: NumResnet = None,
    num_stages: NumStages = None,
    dropout: Dropout = None,
    block: Block = None,
    num_bits: NumBits = None,
    conditional: Conditional = False,
    batch_size: BatchSize = None,
    lr: LearningRate = None,
    lr_decay: LearningRateDecay = None,
    grad_clip: GradClip = None,
    ema_decay: EmaDecay = None,
    seed: Seed = None,
    device: Device = None,
    precision: Precision = None,
    compile: Compile = False,
    channels_last: ChannelsLast = False,
    tf32: TF32 = False,
    out_dir: Annotated[
        Path, typer.Option(help="Each comparison makes a new folder in here.")
    ] = Path("compare-runs"),
    assignments: Assignments = None,
    plugins: Plugins = None,
) -> None:
    """Compare likelihoods: the same architecture, budget and seed for each, on each dataset.

    Every run is evaluated on the test split with its EMA weights; the per-image bits/dim of
    each likelihood are compared with the first one's (paired t-test). Writes report.md,
    report.json, learning curves and side-by-side samples into a new folder in --out-dir.
    The budget is the preset's (demo: 10 minutes per run) unless --max-steps or --max-minutes
    is given.

    Examples:

        pixelcnn compare --max-minutes 5
        pixelcnn compare --likelihood dmol --likelihood softmax --dataset mnist --max-steps 2000
    """
    session: Session = ctx.obj
    load_plugins(plugins)
    if steps is not None and max_minutes is not None:
        raise ValueError(
            "--max-steps and --max-minutes are mutually exclusive: give every run one budget"
        )
    names = likelihoods or DEFAULT_LIKELIHOODS
    for name in names:
        check_names(likelihood=name)
    datasets = datasets or DEFAULT_DATASETS
    for dataset in datasets:
        get_dataset_spec(dataset)
    options = option_changes(
        dataset=datasets[0],
        data_dir=data_dir,
        download=download,
        subset=subset,
        validation_size=validation_size,
        model_num_filters=num_filters,
        model_num_resnet=num_resnet,
        model_num_stages=num_stages,
        model_dropout=dropout,
        model_block=block,
        model_num_bits=num_bits,
        conditional=conditional,
        batch_size=batch_size,
        lr=lr,
        lr_decay=lr_decay,
        grad_clip=grad_clip,
        ema_decay=ema_decay,
        seed=seed,
        device=device,
        precision=precision,
        compile=compile,
        channels_last=channels_last,
        tf32=tf32,
    )
    if steps is not None:
        options.update(max_steps=steps, max_minutes=None)
    elif max_minutes is not None:
        options.update(max_minutes=max_minutes, max_steps=None)
    base = build_config(preset, options, parse_assignments(assignments), num_mixtures)
    folder = _new_folder(out_dir, names)
    session.note(f"Comparing {', '.join(names)} on {', '.join(datasets)} in {folder}")
    report = run_comparison(
        names,
        datasets,
        base,
        folder,
        likelihood_kwargs={base.model.likelihood: base.model.likelihood_kwargs},
        reporter=session.reporter(),
    )
    for comparison in report.datasets:
        session.show(*dataset_tables(comparison))
    session.show(files_table(report))


def dataset_tables(comparison: DatasetComparison) -> list[Table]:
    """One row per likelihood; then the paired differences from the baseline."""
    runs = Table(title=f"{comparison.dataset}: test bits/dim (EMA weights)", title_justify="left")
    for column in ("likelihood", "test bits/dim", "95% CI", "parameters", "train images/s"):
        runs.add_column(column, justify="left" if column == "likelihood" else "right")
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


def _new_folder(root: Path, likelihoods: list[str]) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / f"{stamp}-{'-vs-'.join(likelihoods)}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path
