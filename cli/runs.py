"""``pixelcnn runs``: the run folders in a folder, newest first."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pixelcnnpp.training import list_runs

from .output import Session, bits


def runs(
    ctx: typer.Context,
    folder: Annotated[
        Path, typer.Argument(help="The folder the runs are in (train's --out-dir).")
    ] = Path("runs"),
) -> None:
    """The runs in a folder, newest first: dataset, likelihood, block, steps, best validation
    and test bits/dim, and status (completed, time_limit, interrupted, or no checkpoint yet).

    Examples:

        pixelcnn runs
        pixelcnn runs /shared/runs
    """
    session: Session = ctx.obj
    found = list_runs(folder)
    table = Table(title=f"Runs in {folder}", title_justify="left")
    for column, justify in [
        ("run", "left"), ("started", "left"), ("dataset", "left"), ("likelihood", "left"),
        ("block", "left"), ("steps", "right"), ("best val.", "right"), ("test", "right"),
        ("status", "left"),
    ]:  # fmt: skip
        table.add_column(column, justify=justify, overflow="fold")
    for run in found:
        table.add_row(
            run.path.name,
            datetime.fromtimestamp(run.started).strftime("%Y-%m-%d %H:%M"),
            run.dataset or "?",
            run.likelihood or "?",
            run.block or "?",
            "" if run.step is None else f"{run.step:,}",
            bits(run.best_validation) if run.best_validation is not None else "",
            bits(run.test) if run.test is not None else "",
            run.status,
        )
    session.show(table)
    if not found:
        session.note(f"no run folders (with a config.json) in {folder}")
