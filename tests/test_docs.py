"""The documentation is tested: README.md and every page under docs/.

Fences, by their tag (the word after the opening backticks):

- ``python``: runs. A page's ``python`` blocks are executed in order, in one namespace, in a
  fresh temporary working directory (files a block writes land there). Keep them fast: tiny
  models, a few steps, small subsets. Registered blocks, likelihoods and datasets and the
  torch random state are restored after each page. Pages whose code trains on Fashion-MNIST
  are skipped, with that reason, where it is not installed (``apt-get install
  dataset-fashion-mnist``); pages whose code imports Pyro, where it is not installed (the
  ``pyro`` extra, part of ``dev``).
- ``python-no-run``: Python that cannot run here: it needs a GPU, several processes, hours,
  or files the temporary folder lacks (docs/vae.md imports the example script; its own test
  runs it). Shown, never executed; use it sparingly and say on the page why.
- ``bash``: shell commands, not run (the CLI tests run the commands). Every ``pixelcnn ...``
  line in them (also ``python -m pixelcnnpp.cli ...`` and ``torchrun ... -m pixelcnnpp.cli
  ...``) is checked against the Typer app: the command exists and every ``--option`` on the
  line is one of that command's options, with a value when it takes one.
- ``text`` (output, file trees, formulas), ``toml``, ``yaml``, ``json``, ...: not run.

Nothing is skipped silently: a fence without a tag, a Python-looking tag other than the two
above (``py``, ``python3``, ``pycon``, ...) and a shell tag other than ``bash`` (``sh``,
``console``, ...) fail ``test_every_fence_has_a_known_tag``.

The site itself is built with ``mkdocs build --strict``, which also fails on a page left out
of the nav and on a broken link or anchor (see ``validation`` in mkdocs.yml).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")], key=str)
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
RUN, NO_RUN, SHELL = "python", "python-no-run", "bash"
PYTHON_LOOKALIKE = re.compile(r"^(py|python|pycon|ipython)", re.IGNORECASE)
SHELL_LOOKALIKE = {"sh", "shell", "console", "zsh", "shell-session", "terminal"}
SEPARATORS = {"|", "||", "&&", ";", "&"}
REDIRECTION = re.compile(r"^\d*[<>]")


@dataclass
class Fence:
    page: Path
    line: int  # line of the first line of code
    tag: str
    source: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def fences(page: Path) -> list[Fence]:
    """Every fenced block of ``page`` that starts at the beginning of a line, in order."""
    text = page.read_text()
    return [
        Fence(page, text.count("\n", 0, m.start()) + 2, m.group(1).strip(), m.group(2))
        for m in FENCE.finditer(text)
    ]


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.fixture
def isolated(tmp_path, monkeypatch, registries):
    """A temporary working directory; registries and the torch random state restored after."""
    monkeypatch.chdir(tmp_path)
    with torch.random.fork_rng():
        yield tmp_path


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_python_blocks_run(page, isolated):
    blocks = [f for f in fences(page) if f.tag == RUN]
    if any('"fashion-mnist"' in b.source for b in blocks) and not FASHION.exists():
        pytest.skip(f"{page.name} trains on Fashion-MNIST, which is not installed ({FASHION})")
    if any("import pyro" in b.source for b in blocks) and importlib.util.find_spec("pyro") is None:
        pytest.skip(f"{page.name} uses Pyro, which is not installed (the pyro extra)")
    name = "docs_page_" + re.sub(r"\W", "_", page.stem)
    module = types.ModuleType(name)  # a real module, so classes defined in a block pickle
    sys.modules[name] = module
    try:
        for block in blocks:
            code = compile(block.source, block.where, "exec")
            exec(code, module.__dict__)
    finally:
        del sys.modules[name]


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_fence_has_a_known_tag(page):
    problems = []
    for f in fences(page):
        if not f.tag:
            problems.append(
                f"{f.where}: a fence without a tag (python, python-no-run, bash, text, ...)"
            )
        elif PYTHON_LOOKALIKE.match(f.tag) and f.tag not in (RUN, NO_RUN):
            problems.append(f"{f.where}: tag {f.tag!r}; Python is tagged {RUN!r} or {NO_RUN!r}")
        elif f.tag.lower() in SHELL_LOOKALIKE:
            problems.append(f"{f.where}: tag {f.tag!r}; shell commands are tagged {SHELL!r}")
    assert not problems, "\n".join(problems)


# -- command lines -------------------------------------------------------------------------------


def command_lines(fence: Fence) -> list[tuple[int, list[str]]]:
    """``(line, arguments after "pixelcnn")`` for each CLI invocation in a bash block."""
    found = []
    for offset, line in _logical_lines(fence.source):
        if "pixelcnn" not in line:
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as error:
            raise AssertionError(f"{fence.page}:{fence.line + offset}: {error}: {line}") from None
        segment: list[str] = []
        for word in [*words, ";"]:
            if word not in SEPARATORS:
                segment.append(word)
                continue
            args = _cli_arguments(segment)
            if args is not None:
                found.append((fence.line + offset, args))
            segment = []
    return found


def _logical_lines(source: str) -> list[tuple[int, str]]:
    """``(offset of the first line, line)`` with backslash continuations joined."""
    joined, start, parts = [], 0, []
    for offset, line in enumerate(source.splitlines()):
        if not parts:
            start = offset
        parts.append(line.removesuffix("\\"))
        if not line.endswith("\\"):
            joined.append((start, " ".join(parts)))
            parts = []
    if parts:
        joined.append((start, " ".join(parts)))
    return joined


def _cli_arguments(words: list[str]) -> list[str] | None:
    for i, word in enumerate(words):
        if word == "pixelcnn" or word.endswith("/pixelcnn"):
            args = words[i + 1 :]
        elif word == "-m" and words[i + 1 : i + 2] == ["pixelcnnpp.cli"]:
            args = words[i + 2 :]
        else:
            continue
        end = next((j for j, a in enumerate(args) if REDIRECTION.match(a)), len(args))
        return args[:end]
    return None


def _options(command) -> dict[str, object]:
    """Option name -> its click parameter (Typer carries its own copy of click: duck-typed)."""
    names: dict[str, object] = {"--help": None}
    for param in command.params:
        if param.param_type_name == "option":
            for opt in (*param.opts, *param.secondary_opts):
                names[opt] = param
    return names


def _takes_value(param) -> bool:
    return param is not None and not param.is_flag and not param.count


def check_command(group, args: list[str]) -> list[str]:
    """What is wrong with ``pixelcnn <args>``: unknown command, unknown or valueless options."""
    problems = []
    root = _options(group)
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] not in root:
            problems.append(f"unknown global option {args[i]!r} (known: {sorted(root)})")
        i += 1
    if i == len(args):
        return problems
    name = args[i]
    command = group.commands.get(name)
    if command is None:
        return [*problems, f"unknown command {name!r} (known: {sorted(group.commands)})"]
    options = _options(command)
    j = i + 1
    while j < len(args):
        word = args[j]
        if word == "--":
            break
        if word.startswith("-") and len(word) > 1 and not re.fullmatch(r"-\d+(\.\d*)?", word):
            option, equals, _ = word.partition("=")
            if option not in options:
                problems.append(
                    f"{name}: unknown option {option!r} (known: {', '.join(sorted(options))})"
                )
            elif _takes_value(options[option]) and not equals:
                if j + 1 >= len(args) or args[j + 1].startswith("--"):
                    problems.append(f"{name}: option {option!r} needs a value")
                j += 1
        j += 1
    return problems


def _bash_fences() -> list[Fence]:
    return [f for page in PAGES for f in fences(page) if f.tag == SHELL]


@pytest.fixture(scope="module")
def cli_group():
    import typer

    from pixelcnnpp.cli.app import app

    return typer.main.get_command(app)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_cli_commands_in_bash_blocks_parse(page, cli_group):
    problems = []
    for fence in (f for f in fences(page) if f.tag == SHELL):
        for line, args in command_lines(fence):
            for problem in check_command(cli_group, args):
                problems.append(
                    f"{page.relative_to(ROOT)}:{line}: pixelcnn {shlex.join(args)}: {problem}"
                )
    assert not problems, "\n".join(problems)


def test_the_docs_show_commands_to_check(cli_group):
    commands = [args for fence in _bash_fences() for _, args in command_lines(fence)]
    used = {args[0] for args in commands if args and not args[0].startswith("-")}
    assert len(commands) >= 20, commands
    assert {"train", "evaluate", "sample", "compare"} <= used, sorted(used)


def test_the_command_checker_catches_mistakes(cli_group):
    fence = Fence(
        ROOT / "docs" / "index.md",
        1,
        SHELL,
        "pixelcnn train --max-steps 10 --no-such-option  # comment\n"
        "torchrun --nproc_per_node 2 -m pixelcnnpp.cli trian\n"
        "pixelcnn sample run --n --out x.png && pixelcnn --quiet evaluate run --max-images=5 \\\n"
        "  --split test > out.txt\n",
    )
    found = command_lines(fence)
    assert [args[:2] for _, args in found] == [
        ["train", "--max-steps"],
        ["trian"],
        ["sample", "run"],
        ["--quiet", "evaluate"],
    ]
    problems = [check_command(cli_group, args) for _, args in found]
    assert "unknown option '--no-such-option'" in problems[0][0]
    assert "unknown command 'trian'" in problems[1][0]
    assert "option '--n' needs a value" in problems[2][0]
    assert problems[3] == []
    assert found[3][1][-2:] == ["--split", "test"]


# -- the site ------------------------------------------------------------------------------------


def test_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is a dev dependency: pip install -e '.[dev]'")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr + result.stdout


@pytest.mark.parametrize("with_sudo", [True, False])
def test_the_readme_set_up_line_runs_as_root_and_with_sudo(tmp_path, with_sudo):
    """The README's first command, run by bash exactly as written, with the programs it calls
    replaced by stand-ins that log their arguments: with sudo on the PATH, and as root on a
    fresh machine without it (where ``sudo`` would be "command not found")."""
    text = (ROOT / "README.md").read_text()
    (line,) = [ln for ln in text.splitlines() if "apt-get install" in ln and ln.startswith("pip ")]
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    names = ["pip", "apt-get", "pixelcnn"] + (["sudo"] if with_sudo else [])
    for name in names:
        script = bin_dir / name
        run_rest = '"$@"' if name == "sudo" else ""
        script.write_text(f'#!/bin/sh\necho "${{0##*/}} $*" >> {log}\n{run_rest}\n')
        script.chmod(0o755)
    done = subprocess.run(
        ["/bin/bash", "-c", line], env={"PATH": str(bin_dir)}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    apt = [
        "apt-get update",
        "apt-get install -y dataset-fashion-mnist",
    ]
    if with_sudo:  # the stand-in sudo logs itself, then runs the command after it
        apt = [call for command in apt for call in (f"sudo {command}", command)]
    assert log.read_text().splitlines() == [
        "pip install torch==2.13.0",
        "pip install -e .[dev]",
        *apt,
        "pixelcnn train",
    ]
