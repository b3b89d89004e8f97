"""The metrics log of a run: one JSON object per line (JSONL)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .atomic import atomic_write


class MetricsLog:
    """Appends records to ``metrics.jsonl``; every line is flushed as it is written.

    Records carry ``kind`` ("train", "validation", "test") and ``step``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def write(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps({k: _plain(v) for k, v in record.items()}) + "\n")

    def read(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)

    def truncate_after(self, step: int) -> None:
        """Drop records logged after ``step`` (the resumed run logs them again), atomically."""
        if not self.path.exists():
            return
        keep = [r for r in self.read() if r.get("step", 0) <= step]
        text = "".join(json.dumps(r) + "\n" for r in keep).encode()
        atomic_write(self.path, lambda f: f.write(text))


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a metrics file; a torn last line (a killed writer) is ignored."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v
