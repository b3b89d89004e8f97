"""Named things a user can add to: one ``Registry`` for likelihoods, blocks, datasets,
nonlinearities and presets.

A registry maps names to objects (usually factories: classes or functions). It is filled by
a decorator, ``@REGISTRY.register("name")``, and, for the registries that name an
entry-point group, lazily from installed packages. An unknown name is a ``ValueError`` that
lists the known ones; a duplicate name is an error unless ``override=True``.

>>> from pixelcnnpp.registry import Registry
>>> shapes = Registry("shape")
>>> @shapes.register("square")
... def square(side: int) -> int:
...     return side * side
>>> shapes.create("square", {"side": 3})
9
>>> shapes.get("circle")
Traceback (most recent call last):
...
ValueError: unknown shape 'circle'; known shapes: 'square'

This module imports nothing of the project's: every other part of the toolkit may use it.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

__all__ = ["Registry"]


class Registry:
    """Names mapped to objects, filled by ``register`` and from ``entry_point_group``.

    Args:
        kind: what the names are, for messages (``"block"`` -> "unknown block 'x'; known
            blocks: ...").
        entry_point_group: installed packages that declare entry points in this group are
            loaded the first time the registry is read; each entry point's name becomes a
            registered name and the object it points to the registered object.
        check: called as ``check(name, obj)`` before an object is registered; raises
            ``ValueError`` to refuse it. Default: the object must be callable.
    """

    def __init__(
        self,
        kind: str,
        entry_point_group: str | None = None,
        check: Callable[[str, Any], None] | None = None,
    ):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._check = check or (lambda name, obj: _check_callable(kind, name, obj))
        self._entries: dict[str, Any] = {}
        self._discovered = entry_point_group is None

    # -- filling ---------------------------------------------------------------------------------

    def register(self, name: str, obj: Any = None, *, override: bool = False):
        """Register ``obj`` under ``name``; without ``obj``, return a decorator that does."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def add(o: Any) -> Any:
            self._check(name, o)
            existing = self._entries.get(name)
            if existing is not None and existing is not o and not override:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered{_describe(existing)}; "
                    "pass override=True to replace it"
                )
            self._entries[name] = o
            return o

        return add if obj is None else add(obj)

    @contextmanager
    def snapshot(self) -> Iterator[Registry]:
        """Restore the registry as it is now when the block ends: names registered, replaced
        or discovered inside it are forgotten (for tests and notebooks)."""
        entries, discovered = dict(self._entries), self._discovered
        try:
            yield self
        finally:
            self._entries.clear()
            self._entries.update(entries)
            self._discovered = discovered

    # -- reading ---------------------------------------------------------------------------------

    def get(self, name: str) -> Any:
        """The object registered under ``name``; an unknown name lists the known ones."""
        self._discover()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            known = ", ".join(repr(n) for n in self.names()) or "none"
            raise ValueError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}") from None

    def names(self) -> list[str]:
        """Registered names, sorted (entry points included)."""
        self._discover()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def accepts(self, name: str, keyword: str) -> bool:
        """Whether the factory registered as ``name`` takes ``keyword`` (any keyword, when it
        takes ``**kwargs`` or has no signature to read)."""
        parameters = _keyword_parameters(self.get(name))
        return parameters is None or keyword in parameters

    # -- building ----------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        required: dict[str, Any],
        optional: dict[str, Any] | None = None,
        hint: str = "",
    ) -> Any:
        """Call the factory registered as ``name``.

        ``required`` keywords are always passed: a factory that cannot take one of them is a
        ``ValueError`` naming it and the keywords the factory takes. ``optional`` keywords
        are passed when the factory declares them (all of them if it takes ``**kwargs``), so
        a factory need not declare what it has no use for. A factory that declares a keyword
        nothing passes, spelled like one that is offered (``dropuot`` beside ``dropout``), is
        a ``ValueError`` too: left alone it would silently keep its default. ``hint`` ends
        these messages (e.g. where the keywords are documented).
        """
        factory = self.get(name)
        optional = dict(optional or {})
        what = f"{self.kind} {name!r}"
        parameters = _keyword_parameters(factory)
        if parameters is None:  # no **kwargs-free signature to check against: pass everything
            return factory(**{**optional, **required})
        accepted = set(parameters)
        unknown = sorted(set(required) - accepted)
        if unknown:
            raise ValueError(
                f"{what} does not accept {', '.join(map(repr, unknown))}; "
                f"it accepts {', '.join(map(repr, sorted(accepted))) or 'no keywords'}{hint}"
            )
        offered = set(required) | set(optional)
        for parameter, has_default in parameters.items():
            if parameter in offered:
                continue
            near = difflib.get_close_matches(parameter, sorted(offered - accepted), n=1)
            if near:
                raise ValueError(
                    f"{what} declares {parameter!r}, which is never passed; did you mean "
                    f"{near[0]!r}? (passed: {', '.join(map(repr, sorted(offered)))}){hint}"
                )
            if not has_default:
                raise ValueError(
                    f"{what} needs {parameter!r}, which is never passed "
                    f"(passed: {', '.join(map(repr, sorted(offered)))}){hint}"
                )
        chosen = {k: v for k, v in optional.items() if k in accepted}
        return factory(**{**chosen, **required})

    # -- entry points ------------------------------------------------------------------------------

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        for ep in metadata.entry_points(group=self.entry_point_group):
            try:
                obj = ep.load()
            except Exception as error:  # a broken plugin must not break the library
                warnings.warn(
                    f"could not load {self.kind} {ep.name!r} from entry point {ep.value!r} "
                    f"(group {self.entry_point_group!r}): {error}",
                    stacklevel=3,
                )
                continue
            if self._entries.get(ep.name) is obj:
                continue
            try:
                self.register(ep.name, obj)
            except ValueError as error:
                warnings.warn(f"ignoring entry point {ep.value!r}: {error}", stacklevel=3)


def _keyword_parameters(factory: Callable[..., Any]) -> dict[str, bool] | None:
    """``{keyword: has_default}`` of what ``factory`` can take by keyword, or ``None`` when it
    takes ``**kwargs`` or has no signature to read."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {
        p.name: p.default is not inspect.Parameter.empty for p in parameters if p.kind in keyword
    }


def _check_callable(kind: str, name: str, obj: Any) -> None:
    if not callable(obj):
        raise ValueError(f"{kind} {name!r} must be a class or function, got {type(obj).__name__}")


def _describe(obj: Any) -> str:
    """`` (module.name)`` of a class or function; nothing for other objects."""
    if not hasattr(obj, "__qualname__"):
        return ""
    return f" ({getattr(obj, '__module__', '?')}.{obj.__qualname__})"
