"""A whole-call deadline on each call to an outside store, and a bounded wait on a busy one.

MLflow bounds each socket read, not a request: a server that sends one byte every 3 s answers
every read in time and holds a call for as long as it likes (one held a 70 s run for 612 s).
Nothing inside MLflow or requests bounds a whole request, so each call runs in a thread of its
own, and the caller waits for it only as long as a whole call may take. Past that the call is
given up (``DeadlineExceeded``) and its thread left behind: a daemon, it never holds up the
process's exit, and the tracker stops calling the store, so at most one is ever left.

A SQLite store that another process holds locked fails a call with "database is locked" after
SQLite's own short wait; that store is busy, not broken, so the call is tried again, for a
bounded time (``Deadlined``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class DeadlineExceeded(TimeoutError):
    """A call that did not end within its deadline; ``str(error)`` says which and how long."""


def call_within(seconds: float, action: Callable[[], T], what: str = "call") -> T:
    """``action()``'s result (or its exception), or ``DeadlineExceeded`` once ``seconds`` passed.

    The action runs in a daemon thread, so that the wait, not the action, is what is bounded:
    a thread blocked in a socket read cannot be stopped from outside."""
    future: Future[T] = Future()

    def work() -> None:
        try:
            future.set_result(action())
        except BaseException as exc:  # handed to the caller, who decides
            future.set_exception(exc)

    threading.Thread(target=work, name=f"aebench {what}", daemon=True).start()
    try:
        return future.result(timeout=seconds)
    except TimeoutError:
        if future.done():  # the action's own TimeoutError (a socket's), or it ended just now
            return future.result()
        raise DeadlineExceeded(f"no whole answer within {seconds:g} s") from None


class Deadlined:
    """A client whose every method call is made with ``call_within``.

    ``deadline(name, args)`` says how long the call may take (an upload may take longer for a
    large file); a call that fails because the store is busy (``busy(error)``) is tried again
    until ``busy_wait`` seconds have passed since the first such failure, with ``on_busy()``
    told once, before the first wait. Attributes that are not methods pass through as they are.
    """

    def __init__(
        self,
        client: Any,
        deadline: Callable[[str, tuple[Any, ...]], float],
        busy: Callable[[BaseException], bool],
        busy_wait: Callable[[], float],
        on_busy: Callable[[], None],
    ) -> None:
        self._client = client
        self._deadline = deadline
        self._busy = busy
        self._busy_wait = busy_wait
        self._on_busy = on_busy

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute) or name.startswith("_"):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, lambda: attribute(*args, **kwargs), args)

        return call

    def _call(self, name: str, action: Callable[[], T], args: tuple[Any, ...]) -> T:
        waiting_since: float | None = None
        while True:
            try:
                return call_within(self._deadline(name, args), action, f"MLflow {name}")
            except DeadlineExceeded:
                raise
            except Exception as exc:
                if not self._busy(exc):
                    raise
                now = time.monotonic()
                if waiting_since is None:
                    waiting_since = now
                    self._on_busy()
                if now - waiting_since >= self._busy_wait():
                    raise
                time.sleep(min(0.2, self._busy_wait()))
