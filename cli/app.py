"""The ``pixelcnn`` command: global options, the commands, and the error boundary that turns
every exception into one red line and an exit code."""

from __future__ import annotations

import inspect
import sys
import warnings
from contextlib import contextmanager
from importlib import metadata
from typing import Annotated, Any

import typer
from rich.text import Text
from typer.core import TyperGroup

from . import compare, complete, describe, evaluate, reference, runs, sample, train
from .output import Session, report_error


class _Commands(TyperGroup):
    """The app's command group: errors become one red line (a traceback first with
    ``--debug``) and an exit code: 2 bad input, 1 failure, 130 interrupted."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            _tidy_help(command)

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            code = report_error(KeyboardInterrupt("aborted"))
        except typer.TyperException as error:  # a bad global option, before any command runs
            code = report_error(error)
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code

    def invoke(self, ctx: typer.Context) -> Any:
        with _error_boundary(ctx):
            return super().invoke(ctx)


def _tidy_help(command) -> None:
    """Flags show no value type in help (they take none: typer would print ``<bool>``), and
    arguments show their name in capitals in the usage line (not ``{checkpoint}``)."""
    for param in command.params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        elif param.param_type_name == "argument" and param.metavar is None:
            param.metavar = param.name.upper()
            name = param.metavar if param.required else f"[{param.metavar}]"
            param.get_usage_pieces = lambda ctx, name=name: [name]
    help_option = command.get_help_option

    def get_help_option(ctx):
        option = help_option(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option


@contextmanager
def _error_boundary(ctx: typer.Context):
    """The session exists once the root callback has run, inside this block."""

    def session() -> Session | None:
        return ctx.obj if isinstance(ctx.obj, Session) else None

    def show_warning(message, category, filename, lineno, file=None, line=None):
        if session() is not None:
            session().note(Text(f"Warning: {message}", style="yellow"))

    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        try:
            yield
        except (typer.Exit, typer.Abort):
            raise
        except (Exception, KeyboardInterrupt) as error:
            debug = session() is not None and session().debug
            raise typer.Exit(report_error(error, debug)) from error


def flowing(doc: str | None) -> str:
    """A docstring as help text: each paragraph on one line, so it wraps to the terminal;
    indented paragraphs (examples) keep their lines."""
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(
        p if p.startswith(" ") else " ".join(line.strip() for line in p.splitlines())
        for p in paragraphs
    )


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pixelcnn (pixelcnnpp) {metadata.version('pixelcnnpp')}")
        raise typer.Exit()


app = typer.Typer(
    cls=_Commands,
    name="pixelcnn",
    rich_markup_mode="rich",
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help=flowing(
        """Train, evaluate, sample and compare PixelCNN++ models and pixel likelihoods.

        Results go to stdout, progress and notes to stderr. Exit codes: 0 success, 1 failure,
        2 bad input (unknown names, bad values, missing or corrupt files), 130 interrupted.
        """
    ),
)


@app.callback()
def _root(
    ctx: typer.Context,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="No progress bars or notes (progress is also off when stderr is not a terminal).",
        ),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    ctx.obj = Session(quiet=quiet, debug=debug)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


for _command in (
    train.train,
    evaluate.evaluate,
    sample.sample,
    complete.complete,
    compare.compare,
    describe.datasets,
    describe.blocks,
    describe.likelihoods,
    describe.info,
    runs.runs,
):
    app.command(_command.__name__, help=flowing(_command.__doc__))(_command)


@app.command("docs", hidden=True)
def _docs() -> None:
    """Print the CLI reference as Markdown (python -m pixelcnnpp.cli docs > docs/cli.md)."""
    typer.echo(reference.render(app), nl=False)


def main() -> None:
    """The ``pixelcnn`` console script (also ``python -m pixelcnnpp.cli``)."""
    app(prog_name="pixelcnn")
