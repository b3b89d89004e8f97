"""A name -> factory registry, filled by a decorator and, lazily, from an entry-point group."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import Any


class Registry:
    """Names mapped to factories (classes or functions).

    ``register`` is a decorator; a duplicate name is an error unless ``override=True``; an
    unknown name raises ``ValueError`` listing the known ones. When ``entry_point_group`` is
    given, installed packages that declare entry points in that group are loaded the first
    time the registry is read: each entry point's name becomes a registered name and its
    object the factory.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._factories: dict[str, Callable[..., Any]] = {}
        self._discovered = entry_point_group is None

    def register(
        self, name: str, factory: Callable[..., Any] | None = None, *, override: bool = False
    ):
        """Register ``factory`` under ``name``; without ``factory``, return a decorator."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def add(f: Callable[..., Any]) -> Callable[..., Any]:
            if not callable(f):
                raise ValueError(
                    f"{self.kind} {name!r} must be a class or function, got {type(f).__name__}"
                )
            existing = self._factories.get(name)
            if existing is not None and existing is not f and not override:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered ({_describe(existing)}); "
                    "pass override=True to replace it"
                )
            self._factories[name] = f
            return f

        return add if factory is None else add(factory)

    def get(self, name: str) -> Callable[..., Any]:
        """The factory registered under ``name``."""
        self._discover()
        try:
            return self._factories[name]
        except (KeyError, TypeError):
            known = ", ".join(repr(n) for n in self.names()) or "none"
            raise ValueError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}") from None

    def create(
        self, name: str, required: dict[str, Any], optional: dict[str, Any] | None = None
    ) -> Any:
        """Call the factory of ``name`` with the ``required`` keywords and those ``optional``
        keywords its signature accepts (all of them if it takes ``**kwargs``), so that a factory
        need not declare the keywords it has no use for."""
        factory = self.get(name)
        optional = optional or {}
        try:
            parameters = inspect.signature(factory).parameters.values()
        except (TypeError, ValueError):  # no introspectable signature: pass everything
            parameters = None
        if parameters is not None and not any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters
        ):
            accepted = {
                p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL
            }
            optional = {k: v for k, v in optional.items() if k in accepted}
        return factory(**{**optional, **required})

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._discover()
        return sorted(self._factories)

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._factories

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        for ep in metadata.entry_points(group=self.entry_point_group):
            try:
                factory = ep.load()
            except Exception as error:  # a broken plugin must not break the library
                warnings.warn(
                    f"could not load {self.kind} {ep.name!r} from entry point {ep.value!r} "
                    f"(group {self.entry_point_group!r}): {error}",
                    stacklevel=3,
                )
                continue
            if self._factories.get(ep.name) is factory:
                continue
            try:
                self.register(ep.name, factory)
            except ValueError as error:
                warnings.warn(f"ignoring entry point {ep.value!r}: {error}", stacklevel=3)


def _describe(f: Callable[..., Any]) -> str:
    return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"
