"""The one error the data package raises, and the integer check every part of it uses
(``pixelcnnpp.checks.check_int`` raising it)."""

from __future__ import annotations

from typing import Any

from pixelcnnpp import checks


class DatasetError(ValueError):
    """A dataset could not be found, downloaded or read; the message names the file and why."""


def check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """``value`` if it is an integer in ``lo..hi`` (no upper bound when ``hi`` is ``None``),
    else a :class:`DatasetError` naming ``name``, the range and what came."""
    return checks.check_int(name, value, lo, hi, error=DatasetError)
