"""The CLI reference as Markdown, rendered from the Typer app itself so it cannot go stale.

``python -m pixelcnnpp.cli docs > docs/cli.md`` regenerates ``docs/cli.md``; a test checks
that the file equals this rendering.
"""

from __future__ import annotations

import inspect
import textwrap
from typing import Any

import typer
from typer.core import TyperGroup

PROG = "pixelcnn"

HEADER = f"""# Command line: `{PROG}`

<!-- Generated from the Typer app by `python -m pixelcnnpp.cli docs > docs/cli.md`;
     do not edit by hand (tests/test_cli.py checks that this file is up to date). -->

Installing the package puts `{PROG}` on the path (`python -m pixelcnnpp.cli` is the same
program, and `torchrun --nproc_per_node N -m pixelcnnpp.cli train ...` trains on N processes).
"""


def render(app: typer.Typer) -> str:
    """Every visible command's help, usage and options, as one Markdown page."""
    group = typer.main.get_command(app)
    root = typer.Context(group, info_name=PROG)
    parts = [HEADER, _section(group, root)]
    for name in group.list_commands(root):
        command = group.get_command(root, name)
        if command is not None and not command.hidden:
            parts.append(_section(command, typer.Context(command, info_name=name, parent=root)))
    return "\n".join(parts)


def _section(command: Any, ctx: typer.Context) -> str:
    path = ctx.command_path
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    usage = " ".join(
        [path, "[OPTIONS]"]
        + (["COMMAND [ARGS]..."] if isinstance(command, TyperGroup) else [])
        + [a.name.upper() for a in arguments]
    )
    lines = [f"## `{path}`", "", _markdown(command.help or ""), ""]
    lines += ["```text", usage, "```", ""]
    if arguments:
        lines += ["| argument | description |", "|---|---|"]
        lines += [
            f"| `{a.name.upper()}` | {_cell(getattr(a, 'help', '') or '')} |" for a in arguments
        ]
        lines.append("")
    records = [
        p.get_help_record(ctx)
        for p in command.params
        if p.param_type_name == "option" and not p.hidden
    ]
    records.append(("--help", "Show the help and exit."))
    lines += ["| option | description |", "|---|---|"]
    lines += [f"| `{_cell(names)}` | {_cell(text)} |" for names, text in filter(None, records)]
    lines.append("")
    return "\n".join(lines)


def _markdown(help_text: str) -> str:
    """Help text with its indented paragraphs (examples) as fenced shell blocks."""
    paragraphs = inspect.cleandoc(help_text).split("\n\n")
    return "\n\n".join(
        f"```bash\n{textwrap.dedent(p)}\n```" if p.startswith(" ") else p for p in paragraphs
    )


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")
