"""Checks of plain argument values, with one message style: ``NAME must be EXPECTED, got VALUE``.

>>> from pixelcnnpp.checks import check_int
>>> check_int("num_filters", 64)
64
>>> check_int("num_bits", 0, 1, 16)
Traceback (most recent call last):
...
ValueError: num_bits must be an integer in 1..16, got 0

``True`` and ``False`` are not integers here, although ``isinstance(True, int)`` holds: a
flag passed where a count belongs is a mistake to name, not the number 1. This module
imports nothing of the project's: every other part of the toolkit may use it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_int", "is_int"]


def is_int(value: Any) -> bool:
    """Whether ``value`` is an ``int`` and not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(
    name: str,
    value: Any,
    lo: int = 1,
    hi: int | None = None,
    *,
    expected: str | None = None,
    error: type[ValueError] = ValueError,
) -> int:
    """``value`` if it is an integer in ``lo..hi`` (no upper bound when ``hi`` is ``None``),
    else ``error`` (a ``ValueError``) naming ``name``, what was expected (``expected``, or the
    range) and what came."""
    if not is_int(value) or value < lo or (hi is not None and value > hi):
        wanted = expected or f"an integer {f'in {lo}..{hi}' if hi is not None else f'>= {lo}'}"
        raise error(f"{name} must be {wanted}, got {value!r}")
    return value
