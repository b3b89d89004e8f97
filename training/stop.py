"""Stop requests: SIGINT and SIGTERM ask the loop to finish its step, checkpoint and return."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StopRequest:
    """A flag set by SIGINT/SIGTERM while ``installed``; a second signal interrupts at once.

    Off the main thread (where Python cannot install handlers) the flag is never set and the
    process keeps its own handlers.
    """

    def __init__(self) -> None:
        self.requested = False

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True

        for s in previous:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
