"""``pixelcnn train``: a preset, changed by options, trained into a run folder."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from pixelcnnpp.training import DiskFullError, RunFolder, TrainingError, TrainResult, new_run_dir
from pixelcnnpp.training import train as run_training

from .options import (
    DATA,
    MODEL,
    Block,
    CheckpointEvery,
    EvalEvery,
    MaxMinutes,
    MaxSteps,
    NumMixtures,
    SampleEvery,
    SharedOptions,
    shared_options,
)
from .output import EXIT_INTERRUPTED, Session, bits, duration, interval, key_value_table

RUN = "Run folder"


@shared_options
def train(
    ctx: typer.Context,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="A registered dataset (see `pixelcnn datasets`). Default: the preset's "
            "(demo: fashion-mnist).",
            rich_help_panel=DATA,
        ),
    ] = None,
    likelihood: Annotated[
        str | None,
        typer.Option(
            help="A registered likelihood: dmol (the discretized logistic mixture, the "
            "default) or softmax (see `pixelcnn likelihoods`).",
            rich_help_panel=MODEL,
        ),
    ] = None,
    num_mixtures: NumMixtures = None,
    block: Block = None,
    max_steps: MaxSteps = None,
    max_minutes: MaxMinutes = None,
    eval_every: EvalEvery = None,
    sample_every: SampleEvery = None,
    checkpoint_every: CheckpointEvery = None,
    out_dir: Annotated[
        Path, typer.Option(help="New run folders are made in here.", rich_help_panel=RUN)
    ] = Path("runs"),
    run_dir: Annotated[
        Path | None,
        typer.Option(
            help="The run folder to write (default: a new one in --out-dir).", rich_help_panel=RUN
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            metavar="RUN_DIR",
            help="Continue a run (its folder or a checkpoint) with its own config; only the "
            "length, logging, device and data-folder options may change.",
            rich_help_panel=RUN,
        ),
    ] = None,
    *,
    shared: SharedOptions,
) -> None:
    """Train a PixelCNN++ and report its test bits/dim.

    With no options: the demo preset (a small model, ~10 minutes on a CPU) on Fashion-MNIST
    with the discretized logistic mixture likelihood. Everything lands in a run folder:
    config.json, metrics.jsonl, checkpoints/, samples.png, learning_curve.png, results.json.
    Ctrl-C finishes the step, writes a checkpoint and prints the command that resumes.
    Under torchrun every process trains its share and only rank 0 prints.

    Examples:

        pixelcnn train
        pixelcnn train --likelihood softmax --max-minutes 5
        pixelcnn train --preset small --dataset cifar10 --set model.num_filters=64
        pixelcnn train --resume runs/20250101-120000-fashion-mnist-dmol --max-steps 5000
        torchrun --nproc_per_node 4 -m pixelcnnpp.cli train --preset paper
    """
    session: Session = ctx.obj
    options = dict(
        dataset=dataset,
        model_likelihood=likelihood,
        model_block=block,
        max_steps=max_steps,
        max_minutes=max_minutes,
        eval_every=eval_every,
        sample_every=sample_every,
        checkpoint_every=checkpoint_every,
    )
    if resume is None:
        config = shared.config(num_mixtures, **options)
        overrides = None
        folder = run_dir or new_run_dir(out_dir, config)
        if session.is_main:
            _check_unused(folder)
        session.note(
            f"Training {config.model.likelihood} on {config.dataset} into run folder {folder}"
        )
    else:
        config = None
        overrides = shared.resume_overrides(num_mixtures, **options)
        folder = run_dir or _run_folder_of(resume)
    try:
        result = run_training(
            config, folder, resume=resume, overrides=overrides, reporter=session.reporter()
        )
    except DiskFullError:
        raise
    except TrainingError as error:
        where = f"the run folder {folder}" if folder else "the run folder"
        raise TrainingError(f"{error} ({where} is intact)") from error
    if result.status == "interrupted":
        _report_interrupt(session, result, shared.plugins)
        raise typer.Exit(EXIT_INTERRUPTED)
    session.show(result_table(result))


def result_table(result: TrainResult):
    """The run's test bits/dim (EMA weights), speed and files."""
    test, validation = result.test, result.validation
    status = {"completed": "completed (max steps)", "time_limit": "stopped at the time limit"}
    return key_value_table(
        "Training result",
        [
            ("status", status.get(result.status, result.status)),
            ("test bits/dim (EMA)", bits(test.bits_per_dim) if test else None),
            ("95% CI", interval(test.ci_low, test.ci_high) if test else None),
            ("test images", test.num_images if test else None),
            ("validation bits/dim", bits(validation.bits_per_dim) if validation else None),
            ("steps", result.step),
            ("images/s", f"{result.images_per_sec:.1f}"),
            ("training time", duration(result.train_seconds)),
            ("parameters", f"{result.num_parameters:,}"),
            ("run folder", result.run_dir),
            ("samples", result.samples),
            ("learning curve", result.learning_curve),
            ("checkpoint", result.checkpoint),
        ],
    )


def resume_command(run_dir: Path, plugins: list[str] | None) -> str:
    """The command line that continues the run in ``run_dir``."""
    words = ["pixelcnn", "train", "--resume", str(run_dir)]
    for plugin in plugins or ():
        words += ["--plugin", plugin]
    return shlex.join(words)


def _report_interrupt(session: Session, result: TrainResult, plugins: list[str] | None) -> None:
    if result.checkpoint is None:
        session.err.print(
            Text(f"Interrupted at step {result.step}, before any checkpoint.", style="yellow")
        )
        return
    session.err.print(
        Text(
            f"Interrupted at step {result.step}; checkpoint written: {result.checkpoint}",
            style="yellow",
        ),
        soft_wrap=True,
    )
    session.err.print(
        Text(f"Resume with: {resume_command(result.run_dir, plugins)}"), soft_wrap=True
    )


def _run_folder_of(resume: Path) -> Path | None:
    """The run folder of a ``--resume`` path: the folder itself, or the run around a
    checkpoint; ``None`` lets ``train`` use the folder the checkpoint names."""
    if resume.is_dir():
        return resume.parent if resume.name == "checkpoints" else resume
    if resume.parent.name == "checkpoints":
        return resume.parent.parent
    return None


def _check_unused(folder: Path) -> None:
    # a folder whose run never checkpointed holds nothing to keep: it is started anew
    if RunFolder(folder).state() in ("checkpointed", "finished"):
        raise ValueError(
            f"run folder {folder} already holds a run; continue it with --resume {folder} "
            "or choose another --run-dir"
        )
