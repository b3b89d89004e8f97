"""The one error the data package raises, and the integer check every part of it uses."""

from __future__ import annotations

from typing import Any


class DatasetError(ValueError):
    """A dataset could not be found, downloaded or read; the message names the file and why."""


def is_int(value: Any) -> bool:
    """Whether ``value`` is an ``int`` and not a ``bool`` (which ``isinstance`` counts as one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """``value`` if it is an integer in ``lo..hi`` (no upper bound when ``hi`` is ``None``),
    else a :class:`DatasetError` naming ``name``, the range and what came."""
    if not is_int(value) or value < lo or (hi is not None and value > hi):
        expected = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
        raise DatasetError(f"{name} must be an integer {expected}, got {value!r}")
    return value
