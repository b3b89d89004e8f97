"""Progress reporting for long loops: silent by default, a rich progress display on request."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Reporter:
    """Receives progress from training, evaluation and sampling; this base class ignores it."""

    def start(self, total_steps: int | None, first_step: int) -> None:
        """Training starts at ``first_step`` (resumed runs) towards ``total_steps`` (or a time limit)."""

    def step(self, step: int, metrics: dict[str, Any]) -> None:
        """A training step finished; ``metrics`` holds the latest logged values."""

    def message(self, text: str) -> None:
        """A line for the person watching."""

    @contextmanager
    def task(self, description: str, total: int):
        """A sub-task (evaluation, sampling): yields ``advance(n)``."""
        yield lambda n=1: None

    def finish(self) -> None:
        """Training ended."""


class RichReporter(Reporter):
    """Progress bars on stderr with images/s and the current bits/dim."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._train = None

    def start(self, total_steps: int | None, first_step: int) -> None:
        self.progress.start()
        self._train = self.progress.add_task(
            "train", total=total_steps, completed=first_step, info=""
        )

    def step(self, step: int, metrics: dict[str, Any]) -> None:
        info = []
        if "bits_per_dim" in metrics:
            info.append(f"{metrics['bits_per_dim']:.3f} bits/dim")
        if "images_per_sec" in metrics:
            info.append(f"{metrics['images_per_sec']:.1f} img/s")
        self.progress.update(self._train, completed=step, info="  ".join(info))

    def message(self, text: str) -> None:
        self.progress.console.print(text)

    @contextmanager
    def task(self, description: str, total: int):
        started = not self.progress.live.is_started
        if started:
            self.progress.start()
        task = self.progress.add_task(description, total=total, info="")
        try:
            yield lambda n=1: self.progress.advance(task, n)
        finally:
            self.progress.remove_task(task)
            if started:
                self.progress.stop()

    def finish(self) -> None:
        self.progress.stop()
        if self._train is not None:  # later sub-tasks must not redraw the finished bar
            self.progress.remove_task(self._train)
            self._train = None
