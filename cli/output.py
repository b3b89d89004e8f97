"""Where the CLI writes: results to stdout, progress and diagnostics to stderr, errors as one
red line with an exit code (2: bad input, 1: failure, 130: interrupted)."""

from __future__ import annotations

import math
import os
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pixelcnnpp.training import Reporter, RichReporter, TrainingError

# Results written to a file or a pipe are not wrapped at 80 columns, so paths stay whole.
PIPE_WIDTH = 200

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def process_rank() -> int:
    """This process's rank under ``torchrun`` (``RANK``), 0 otherwise."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _console(stderr: bool, quiet: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return Console(stderr=stderr, quiet=quiet, width=width)


@dataclass
class Session:
    """One invocation's settings and consoles; the root command's ``ctx.obj``.

    Only rank 0 prints (results, progress, notes); every rank reports its own errors.
    """

    quiet: bool = False
    debug: bool = False
    rank: int = field(default_factory=process_rank)
    out: Console = field(init=False)
    err: Console = field(init=False)

    def __post_init__(self):
        self.out = _console(stderr=False, quiet=not self.is_main)
        self.err = _console(stderr=True, quiet=not self.is_main)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shows_progress(self) -> bool:
        """Progress bars: rank 0, not ``--quiet``, and stderr is a terminal."""
        return self.is_main and not self.quiet and self.err.is_terminal

    def reporter(self) -> Reporter:
        """Progress bars when they are on; otherwise only the library's messages (none with
        ``--quiet``)."""
        if self.shows_progress:
            return RichReporter(self.err)
        if self.quiet or not self.is_main:
            return Reporter()
        return _MessageReporter(self.err)

    def note(self, text: str | Text) -> None:
        """A diagnostic line on stderr (not with ``--quiet``); a ``str`` is shown as it is
        (paths may hold brackets), not read as rich markup."""
        if not self.quiet:
            self.err.print(Text(text) if isinstance(text, str) else text, soft_wrap=True)

    def show(self, *renderables: Any) -> None:
        """Results on stdout."""
        for renderable in renderables:
            self.out.print(renderable, soft_wrap=isinstance(renderable, str | Text))


class _MessageReporter(Reporter):
    """No progress bars, but the library's messages (e.g. what a comparison is training)."""

    def __init__(self, console: Console):
        self.console = console

    def message(self, text: str) -> None:
        self.console.print(text, soft_wrap=True)


# -- errors --------------------------------------------------------------------------------------


def exit_code_for(error: BaseException) -> int:
    """2 for bad input (``ValueError`` and its subclasses: ``DatasetError``,
    ``CheckpointError``, ``CausalityError``; usage errors), 130 for an interrupt, else 1."""
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, TrainingError):
        return EXIT_FAILURE
    if isinstance(error, ValueError):
        return EXIT_BAD_INPUT
    code = getattr(error, "exit_code", None)  # usage errors of the command line itself
    if isinstance(code, int) and hasattr(error, "format_message"):
        return code
    return EXIT_FAILURE


def error_message(error: BaseException, debug: bool = False) -> str:
    """What went wrong, on one line (an unexpected error suggests ``--debug``)."""
    if isinstance(error, KeyboardInterrupt):
        text = str(error) or "interrupted"
    elif hasattr(error, "format_message") and hasattr(error, "exit_code"):
        text = error.format_message()
    else:
        text = str(error) or type(error).__name__
        if exit_code_for(error) == EXIT_FAILURE and not isinstance(error, TrainingError):
            hint = "" if debug else " (--debug shows the traceback)"
            text = f"{type(error).__name__}: {text}{hint}"
    return one_line(text)


def one_line(text: str) -> str:
    """Join a multi-line message: indented lines continue the line before them (a list, e.g.
    the folders searched), other lines become clauses separated by "; "."""
    clauses: list[str] = []
    for raw in text.strip().splitlines():
        line = raw.strip()
        if not line:
            continue
        if clauses and raw[:1].isspace():
            joiner = " " if clauses[-1].endswith((":", ",")) else ", "
            clauses[-1] += joiner + line
        else:
            clauses.append(line)
    return "; ".join(clauses)


def report_error(error: BaseException, debug: bool = False, rank: int | None = None) -> int:
    """Print ``error`` as one red line on stderr (after its traceback with ``debug``) and
    return the exit code for it."""
    rank = process_rank() if rank is None else rank
    console = Console(stderr=True)
    if debug:
        console.file.write("".join(traceback.format_exception(error)))
    prefix = f"[rank {rank}] " if rank else ""
    console.print(
        Text(f"{prefix}Error: {error_message(error, debug)}", style="bold red"),
        soft_wrap=True,
        highlight=False,
    )
    return exit_code_for(error)


# -- tables and numbers --------------------------------------------------------------------------


def key_value_table(title: str, rows: Iterable[tuple[str, Any]]) -> Table:
    """A two-column table of named results; ``None`` values are left out."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        if value is not None:
            table.add_row(key, Text(str(value)))
    return table


def bits(value: float | None) -> str:
    """Bits/dim to four decimals (``-`` for none)."""
    if value is None or (isinstance(value, float) and math.isinf(value)):
        return "-"
    return f"{value:.4f}"


def interval(low: float, high: float, signed: bool = False) -> str:
    fmt = "{:+.4f}" if signed else "{:.4f}"
    return f"[{fmt.format(low)}, {fmt.format(high)}]"


def duration(seconds: float) -> str:
    """``42.0 s``, ``12m 05s``, ``3h 07m``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


# -- output files ----------------------------------------------------------------------------------


def check_writable(path: Path, option: str) -> Path:
    """``path`` can be written (its folder exists or can be made, it is not a folder, nothing
    read-only is in the way); raises ``ValueError`` naming ``option`` otherwise. Writes nothing."""
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file name")
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{option} {path}: {ancestor} is a file, not a folder")
    writable = os.access(path, os.W_OK) if path.exists() else os.access(ancestor, os.W_OK)
    if not writable:
        raise ValueError(f"{option} {path} cannot be written: {ancestor} is read-only")
    return path


def check_image_path(path: Path, option: str) -> Path:
    """An image file name PIL can write (by its extension), in a place that can be written."""
    formats = Image.registered_extensions()
    fmt = formats.get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(
            f"{option} must be an image file name ending in .png (or .jpg, .bmp, .tif, ...), "
            f"got {str(path)!r}"
        )
    return check_writable(path, option)


def check_npy_path(path: Path, option: str) -> Path:
    """The file ``np.save`` writes for ``path`` (``.npy`` added when missing), checked."""
    if path.suffix != ".npy":
        path = path.with_name(path.name + ".npy")
    return check_writable(path, option)
