"""What is there: ``datasets``, ``blocks``, ``likelihoods`` and ``info CHECKPOINT``."""

from __future__ import annotations

import inspect
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import torch
import typer
from rich.table import Table
from rich.text import Text

from pixelcnnpp.autoregressive import build_block, get_block, list_blocks
from pixelcnnpp.likelihoods import LIKELIHOODS, list_likelihoods
from pixelcnnpp.training import (
    CheckpointError,
    dataset_status,
    get_dataset_spec,
    list_datasets,
    load_checkpoint,
    model_config_of,
    resolve_checkpoint,
)

from .evaluate import Checkpoint
from .options import Plugins
from .output import Session, bits, duration, interval, key_value_table
from .plugins import load_plugins


def datasets(ctx: typer.Context, plugins: Plugins = None) -> None:
    """The known datasets: image shape, classes, and whether and where their files are found;
    below the table, how to get each one that is not."""
    session: Session = ctx.obj
    load_plugins(plugins)
    table = Table(title="Datasets", title_justify="left")
    for column in ("name", "image", "classes", "on disk"):
        table.add_column(column, overflow="fold")
    missing: list[tuple[str, str]] = []
    for name in list_datasets():
        spec, status = get_dataset_spec(name), dataset_status(name)
        shape = "x".join(map(str, spec.image_shape)) if spec.image_shape else "any"
        if spec.data_dir_required:
            found = Text("needs --data-dir")
            missing.append((name, spec.how_to_get))
        elif status["found"]:
            found = Text.assemble(("yes", "green"), f" {status['path']}")
        elif status["problem"]:
            found = Text("incomplete (below)", style="yellow")
            missing.append((name, f"{status['path']}: {status['problem']}"))
        else:
            found = Text("no (below)", style="red")
            missing.append((name, status["how_to_get"]))
        table.add_row(name, shape, str(spec.num_classes or "-"), found)
    session.show(table)
    # Paragraphs, not a table column: at 80 columns a column is too narrow for the URLs, and
    # textwrap breaks lines at spaces only, so no URL or path is cut.
    width = session.out.width

    def paragraph(text: str, indent: str = "") -> Text:
        return Text(
            textwrap.fill(
                text,
                width,
                initial_indent=indent,
                subsequent_indent=indent,
                break_long_words=False,
                break_on_hyphens=False,
            )
        )

    for name, text in missing:
        session.show(Text(""), Text(name, style="bold"), paragraph(text, "  "))
    where = (
        "Without --data-dir, files are looked for in $PIXELCNNPP_DATA/<name>, $PIXELCNNPP_DATA, "
        "/usr/share/datasets/<name> and ~/.cache/pixelcnnpp/<name>; with --data-dir, only there."
    )
    session.show(Text(""), paragraph(where))


def blocks(ctx: typer.Context, plugins: Plugins = None) -> None:
    """The registered blocks, where each comes from, and whether it supports cached (fast)
    sampling."""
    session: Session = ctx.obj
    load_plugins(plugins)
    table = Table(title="Blocks", title_justify="left")
    for column in ("name", "defined in", "cached sampling"):
        table.add_column(column, overflow="fold")
    for name in list_blocks():
        table.add_row(name, _origin(get_block(name)), Text(_incremental(name)))
    session.show(table)


def likelihoods(ctx: typer.Context, plugins: Plugins = None) -> None:
    """The registered likelihood heads and where each comes from."""
    session: Session = ctx.obj
    load_plugins(plugins)
    table = Table(title="Likelihoods", title_justify="left")
    for column in ("name", "defined in", "description"):
        table.add_column(column, overflow="fold")
    for name in list_likelihoods():
        factory = LIKELIHOODS.get(name)
        summary = _plain(inspect.getdoc(factory) or "").split("\n\n")[0].replace("\n", " ")
        table.add_row(name, _origin(factory), Text(summary))
    session.show(table)


def info(ctx: typer.Context, checkpoint: Checkpoint) -> None:
    """What a checkpoint holds: step, dataset, parameters, training time, best validation
    bits/dim, its full config, and the run's test result (results.json beside it)."""
    session: Session = ctx.obj
    path = resolve_checkpoint(checkpoint)
    state = load_checkpoint(path)
    trained: dict[str, Any] = dict(state.get("train_config") or {})
    model = dict(model_config_of(state))
    trained.pop("model", None)
    weights = state.get("model") or {}
    parameters = sum(t.numel() for t in weights.values() if isinstance(t, torch.Tensor))
    seconds = state.get("train_seconds")
    session.show(
        key_value_table(
            "Checkpoint",
            [
                ("file", path),
                ("step", state.get("step")),
                ("epoch", state.get("epoch")),
                ("dataset", trained.get("dataset")),
                ("likelihood", model.get("likelihood")),
                ("parameters", f"{parameters:,}"),
                ("training time", None if seconds is None else duration(seconds)),
                ("best validation bits/dim", _best_validation(path, state)),
                ("EMA updates", state.get("ema_updates")),
                ("processes", state.get("world_size")),
                ("non-finite steps skipped", state.get("bad_steps")),
            ],
        ),
        _config_table(trained, model),
    )
    results = _results_beside(path)
    if results is not None:
        session.show(_results_table(results))


def _best_validation(path: Path, state: dict[str, Any]) -> str | None:
    """The best validation bits/dim the run reached: a step checkpoint written before the
    last validation does not know it, the run's best.pt (beside it) does."""
    best = state.get("best_validation_bits_per_dim")
    where = ""
    run_best = path.parent / "best.pt"
    if path.name != "best.pt" and run_best.is_file():
        try:
            other = load_checkpoint(run_best)
        except CheckpointError:
            other = {}
        found = other.get("best_validation_bits_per_dim")
        if found is not None and (best is None or found < best):
            best, where = found, f" (best.pt, step {other.get('step')})"
    if best is None or best == float("inf"):
        return None
    return f"{bits(best)}{where}"


def _config_table(trained: dict[str, Any], model: dict[str, Any]) -> Table:
    table = Table(title="Config", title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in [*((f"model.{k}", v) for k, v in model.items()), *trained.items()]:
        table.add_row(name, Text(json.dumps(value)))
    return table


def _results_beside(path: Path) -> dict[str, Any] | None:
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    file = run / "results.json"
    if not file.is_file():
        return None
    try:
        return {**json.loads(file.read_text()), "file": file}
    except json.JSONDecodeError:
        return None


def _results_table(results: dict[str, Any]) -> Table:
    test, validation = results.get("test") or {}, results.get("validation") or {}
    ci = interval(test["ci_low"], test["ci_high"]) if {"ci_low", "ci_high"} <= set(test) else None
    return key_value_table(
        "Run result",
        [
            ("file", results["file"]),
            ("status", results.get("status")),
            ("step", results.get("step")),
            ("test bits/dim (EMA)", bits(test.get("bits_per_dim")) if test else None),
            ("95% CI", ci),
            ("test images", test.get("num_images")),
            (
                "validation bits/dim",
                bits(validation.get("bits_per_dim")) if validation else None,
            ),
        ],
    )


def _plain(docstring: str) -> str:
    """Sphinx roles and literals as plain text: ``:class:`X` `` -> ``X``."""
    return re.sub(r":\w+:`([^`]*)`", r"\1", docstring).replace("``", "")


def _origin(factory: Any) -> str:
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', '?')}"


def _incremental(name: str) -> str:
    """Whether both streams' instances declare ``incremental_context`` (tiny instances)."""
    try:
        built = [build_block(name, 4, "u"), build_block(name, 4, "ul", skip_channels=4)]
    except Exception as error:
        return f"unknown (could not build: {error})"
    supported = all(getattr(b, "incremental_context", None) is not None for b in built)
    return "yes" if supported else "no (falls back to naive)"
