"""Replaying a function's operations without running its Python: a CUDA graph on a GPU, a
recorded tape of ATen operations on CPU.

Cached sampling draws a row of pixels with thousands of tiny operations, the same ones on the
same buffers in every row with the same levels of resolution active. On a GPU, launching them
costs more than their arithmetic. So the sampler records one row's operations per pattern and
replays them for the next rows:

- on CUDA, as a ``torch.cuda.CUDAGraph``: the first row of a pattern runs eagerly (a warm-up,
  so lazy initialization happens outside the capture), the second is captured and replayed;
- on CPU, as a :class:`Tape`: the ATen operations the row dispatched, each replayed on the
  same tensors (views are not replayed: they still look into the same buffers; an operation
  that returned a new tensor writes into the tensor it returned when recorded). A replay saves
  only the Python around the operations, and recording costs more than that saves, so the
  sampler uses it on request: it checks on CPU what a GPU would replay.

Either way a replay is only right if the function reads and writes the same memory every time
and its Python makes no decision from tensor values: the same contract as CUDA graph capture.
The tape refuses operations that read values to the host or whose output shape depends on
values (``.item()``, ``nonzero``), as a capture would. Random draws are replayed in the order
they were recorded, from the generator they were recorded with, so a replayed row consumes the
generator exactly as the eager row would.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_HOST_READS = (torch.Tag.data_dependent_output, torch.Tag.dynamic_output_shape)
_ALLOCATES = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"}


class NotReplayable(RuntimeError):
    """An operation whose result depends on values in a way a replay cannot repeat."""


def _kind(func) -> str:
    """How a replay treats ``func``: ``"mutates"`` (rerun as recorded), ``"view"`` (skipped),
    ``"allocates"`` (skipped: uninitialized memory), ``"computes"`` (rerun into the tensor it
    returned when recorded)."""
    if any(tag in func.tags for tag in _HOST_READS):
        raise NotReplayable(f"{func} reads tensor values to the host")
    schema = func._schema
    if any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments):
        return "mutates"
    if any(r.alias_info is not None for r in schema.returns):
        return "view"
    if schema.name.split("::")[-1] in _ALLOCATES:
        return "allocates"
    return "computes"


def _out_overload(func):
    """The ``out=`` overload of a functional ``func`` with the same other arguments, and the
    names of its out arguments; or ``(None, ())``."""
    args = [(a.name, str(a.type)) for a in func._schema.arguments]
    for name in func.overloadpacket.overloads():
        candidate = getattr(func.overloadpacket, name)
        schema = candidate._schema
        outs = [a.name for a in schema.arguments if a.is_out]
        ins = [(a.name, str(a.type)) for a in schema.arguments if not a.is_out]
        if outs and ins == args and len(outs) == len(func._schema.returns):
            return candidate, tuple(outs)
    return None, ()


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.entries: list[tuple] = []
        self.kinds: dict = {}

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Nothing is compiled inside a recording, and skipping dynamo here would import it.
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = self.kinds.get(func)
        if kind is None:
            kind = self.kinds[func] = (_kind(func), *_out_overload(func))
        out = func(*args, **kwargs)
        if kind[0] == "mutates":
            self.entries.append((func._op, args, kwargs))
        elif kind[0] == "computes":
            outs = (out,) if isinstance(out, torch.Tensor) else out
            if isinstance(outs, tuple | list) and all(isinstance(o, torch.Tensor) for o in outs):
                self.entries.append(_computed(func, kind[1], kind[2], args, kwargs, tuple(outs)))
            # Anything else (a dtype, a size) is metadata, fixed for the same shapes.
        return out


def _computed(func, overload, names, args, kwargs, outs: tuple[torch.Tensor, ...]) -> tuple:
    if overload is not None:
        return (overload._op, args, {**kwargs, **dict(zip(names, outs, strict=True))})
    return (_CopyInto(func._op, outs), args, kwargs)


class _CopyInto:
    """Reruns an operation that has no ``out=`` form and copies its results into ``outs``."""

    def __init__(self, op, outs: tuple[torch.Tensor, ...]):
        self.op, self.outs = op, outs

    def __call__(self, *args, **kwargs) -> None:
        new = self.op(*args, **kwargs)
        for out, value in zip(self.outs, (new,) if len(self.outs) == 1 else new, strict=True):
            out.copy_(value)


class Tape:
    """The ATen operations one call of ``fn`` dispatched, to rerun on the same tensors.

    ``Tape.record(fn)`` calls ``fn()`` (its work is done) and keeps its operations;
    ``replay()`` reruns them in order. The tensors ``fn`` allocated are kept, so a replay
    writes where the recorded call wrote.

    >>> x, y = torch.zeros(3), torch.ones(3)
    >>> tape = Tape.record(lambda: x.copy_(y + x))
    >>> tape.replay(); x
    tensor([2., 2., 2.])
    """

    def __init__(self, entries: list[tuple]):
        self.entries = entries

    @classmethod
    def record(cls, fn: Callable[[], object]) -> Tape:
        recorder = _Recorder()
        with recorder:
            fn()
        return cls(recorder.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def replay(self) -> None:
        for op, args, kwargs in self.entries:
            op(*args, **kwargs)


class _CudaGraph:
    """``fn`` captured as a CUDA graph (it reads the generator through its registered state, so
    replays draw what eager calls would have drawn)."""

    def __init__(self, fn: Callable[[], object], generator, stream: torch.cuda.Stream):
        self.graph = torch.cuda.CUDAGraph()
        if generator is not None:  # the default generator is registered by every capture
            self.graph.register_generator_state(generator)
        with torch.cuda.graph(self.graph, stream=stream):
            fn()

    def replay(self) -> None:
        self.graph.replay()


class RowPrograms:
    """Per key, ``fn`` recorded once and replayed afterwards (see the module docstring).

    ``run(key, fn)`` does ``fn``'s work: eagerly, by recording it, or by replaying what was
    recorded for ``key``. ``fn`` must do the same operations on the same tensors for the same
    key, and overwrite whatever it reads of its own earlier work. Where a recording fails
    (:class:`NotReplayable`, or a CUDA capture error), that key runs eagerly from then on, with a
    warning; the failed call is redone eagerly with the generator as it was before it.
    """

    def __init__(self, device: torch.device, generator: torch.Generator | None):
        self.cuda = device.type == "cuda"
        self.generator = generator
        self.programs: dict[Hashable, Tape | _CudaGraph | None] = {}
        self.seen: set[Hashable] = set()
        self.stream = None  # CUDA: the stream rows are warmed up and captured on

    def run(self, key: Hashable, fn: Callable[[], object]) -> None:
        if key not in self.programs and self.cuda:
            self._run_cuda(key, fn)
        elif key not in self.programs:
            self._record(key, fn)
        elif self.programs[key] is None:  # not replayable
            fn()
        else:
            self.programs[key].replay()

    def _record(self, key: Hashable, fn: Callable[[], object]) -> None:
        generator = self.generator if self.generator is not None else torch.default_generator
        state = generator.get_state()
        try:
            self.programs[key] = Tape.record(fn)
        except NotReplayable as error:
            # The partial call drew from the generator; the eager call draws it all again.
            generator.set_state(state)
            self._give_up(key, error)
            fn()

    def _run_cuda(self, key: Hashable, fn: Callable[[], object]) -> None:
        if self.stream is None:
            self.stream = torch.cuda.Stream()
        if key not in self.seen:
            # Warm-up, on the stream that will capture: lazy initialization (cuBLAS handles
            # and workspaces) happens outside a capture.
            self.seen.add(key)
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                fn()
            torch.cuda.current_stream().wait_stream(self.stream)
            return
        try:
            graph = _CudaGraph(fn, self.generator, self.stream)
        except RuntimeError as error:  # a capture does no work and draws nothing
            self._give_up(key, error)
            fn()
            return
        self.programs[key] = graph
        graph.replay()  # a capture records the work without doing it

    def _give_up(self, key: Hashable, error: Exception) -> None:
        warnings.warn(
            f"sampling replays no rows of pattern {key!r} and runs them eagerly: {error}",
            stacklevel=4,
        )
        self.programs[key] = None
