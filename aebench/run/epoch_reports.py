"""Each epoch's validation loss, heard by whoever is listening: the hyperparameter search's pruner.

Training calls ``report(epoch, val_loss)`` after every epoch that has a validation split. Nobody
listens by default; ``listening(callback)`` sets a listener for the trials run inside it, through
a context variable (like ``aebench.stopping``'s deadline), so that the trainer's signature and the
runner in between stay as they are. A listener ends a trial by raising ``StopTrial``: the runner
records a failed row with the message as its reason and no traceback (like a trial past its time
limit, one the core ended blames no plugin); the listener, which knows why, calls it pruned.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

from aebench.run.stopping import TrialTimeout

Listener = Callable[[int, float], None]

_listener: contextvars.ContextVar[Listener | None] = contextvars.ContextVar(
    "aebench_epoch_listener", default=None
)


class StopTrial(TrialTimeout):
    """Raised by a listener to end the trial being trained (a pruned search trial); ``str`` is
    the row's reason. A ``TrialTimeout`` to the runner: a failed row, no plugin blamed."""

    def __init__(self, reason: str) -> None:
        Exception.__init__(self, reason)


def report(epoch: int, val_loss: float) -> None:
    """Tell the listener, if any, the validation loss after ``epoch`` (counted from 1)."""
    listener = _listener.get()
    if listener is not None:
        listener(epoch, val_loss)


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """``listener(epoch, val_loss)`` hears every epoch trained inside (in this thread)."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)
