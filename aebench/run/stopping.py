"""Stopping a run at a safe point: SIGTERM and Ctrl-C as a flag, and a trial's time limit.

A signal handler that raises runs wherever the main thread happens to be: inside a destructor,
a weakref callback or a library's ``except Exception``, the exception is swallowed ("Exception
ignored in WeakKeyDictionary") and the run goes on. So while a suite's trials run
(``cooperative()``), the handler only records the signal; the training loop (between batches),
the metrics loop and the suite loop call ``check()``, which raises ``Interrupted`` there. A
second signal raises at once, from wherever the main thread is, for a run that does not reach a
check soon. Outside that window (loading plugins or datasets, writing the report) the first
signal raises at once, as Python's own Ctrl-C does.

A trial's time limit (``[suite] trial_timeout``) is a ``deadline()`` that ``check()`` enforces
at the same points: it cannot interrupt a trial stuck inside one C call; ``isolate = true``
trials are killed by their parent instead (``aebench.isolation``).

Imports nothing heavy: ``aebench --help`` loads this module.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import signal
import time
from collections.abc import Iterator
from types import FrameType


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or Ctrl-C), handled like Ctrl-C: the trial in progress is abandoned, the rest is
    on disk. ``args[0]`` is the signal's number."""


class TrialTimeout(Exception):
    """The trial ran past its time limit; ``str`` is the row's reason."""

    def __init__(self, seconds: float) -> None:
        super().__init__(timed_out(seconds))


def timed_out(seconds: float) -> str:
    """The reason of a trial that ran past its limit: ``timed out after 30 s``."""
    return f"timed out after {seconds:g} s"


_requested: int | None = None  # the signal received while cooperative, not yet acted on
_cooperative = 0  # depth of nested cooperative() windows
# (monotonic time at which the trial's time is up, its limit in seconds); per thread and task.
_deadline: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar(
    "aebench_trial_deadline", default=None
)


def check() -> None:
    """Raise ``Interrupted`` if a stop was asked for, ``TrialTimeout`` if the trial's time is up.

    Cheap enough for every training step: a global, a context variable, a clock read."""
    if _requested is not None:
        raise Interrupted(_requested)
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline[0]:
        raise TrialTimeout(deadline[1])


def requested() -> int | None:
    """The signal that asked the run to stop, if one did."""
    return _requested


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """``check()`` raises ``TrialTimeout`` once ``seconds`` have passed (None: no limit)."""
    if seconds is None or math.isinf(seconds):
        yield
        return
    token = _deadline.set((time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


@contextlib.contextmanager
def cooperative() -> Iterator[None]:
    """While inside, a signal from ``install()`` only sets the flag that ``check()`` reads.

    A signal no check acted on is raised on leaving the window: it is never lost. The flag
    lives no longer than the window (a later ``run_suite`` in the same process starts afresh).
    """
    global _cooperative, _requested
    _cooperative += 1
    try:
        yield
    finally:
        _cooperative -= 1
        pending = _requested
        if _cooperative == 0:
            _requested = None
    if pending is not None and _cooperative == 0:  # (not reached when the body raised)
        raise Interrupted(pending)


def _handler(signum: int, frame: FrameType | None) -> None:
    global _requested
    if _cooperative and _requested is None:
        _requested = signum  # acted on at the next check(): between steps, metrics or trials
        return
    raise Interrupted(signum)  # outside a run's trials, or a second signal: at once


def install() -> None:
    """SIGTERM, and Ctrl-C unless it is ignored (a background job), handled by ``_handler``."""
    signal.signal(signal.SIGTERM, _handler)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _handler)
