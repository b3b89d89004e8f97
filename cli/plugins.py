"""``--plugin MODULE``: import modules that register blocks, likelihoods or datasets."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable


def load_plugins(modules: Iterable[str] | None) -> None:
    """Import each module (the current folder is importable, as with ``python -m``).

    A module that is missing or fails to import is a ``ValueError`` naming it.
    """
    modules = list(modules or ())
    if modules and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            raise ValueError(
                f"--plugin {name}: no module named {error.name!r} (a module importable from "
                "the current folder or the environment, e.g. my_blocks or my_package.blocks)"
            ) from error
        except Exception as error:
            raise ValueError(
                f"--plugin {name}: importing it failed with {type(error).__name__}: {error}"
            ) from error
