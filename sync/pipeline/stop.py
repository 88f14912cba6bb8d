"""Asking a run to stop, from a signal handler or another thread.

A `StopRequest` is a `threading.Event` that also calls back whoever is listening when it
is set, so a run in progress hears of a stop at once (through its event loop's
`call_soon_threadsafe`) instead of polling for it. Setting it from a signal handler is
safe: it takes no lock a handler could be interrupted holding, beyond the event's own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class StopRequest(threading.Event):
    """Set once to ask every run listening to stop; also usable as a plain event to wait on."""

    def __init__(self) -> None:
        super().__init__()
        self._listeners: list[Callable[[], None]] = []

    def set(self) -> None:
        super().set()
        for listener in tuple(self._listeners):
            listener()

    @contextmanager
    def listening(self, callback: Callable[[], None]) -> Iterator[None]:
        """Call `callback` when a stop is asked for during the block (at once if it already was).

        `callback` may be called more than once, and from any thread.
        """
        self._listeners.append(callback)
        try:
            if self.is_set():
                callback()
            yield
        finally:
            self._listeners.remove(callback)
