"""What a long estimate does between its chunks: nothing, unless the run has said what.

A run whose threads are ``"auto"`` chooses them again there (``aebench.run.threads.follow``), at
most every ``every_s``: the load changes under a long estimate. The run's layer is above this
one, so it hands the estimators its step rather than being imported by them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

_step: Callable[[], None] | None = None
_every_s = math.inf
_last = -math.inf  # time.monotonic() of the last step


def between_chunks() -> None:
    """Between two chunks of an estimate: the run's step, where one is set and is due."""
    global _last
    if _step is None or time.monotonic() - _last < _every_s:
        return
    _last = time.monotonic()
    _step()


def pace(step: Callable[[], None] | None, every_s: float = 1.0) -> None:
    """Run ``step`` between chunks, at most every ``every_s`` seconds (None: nothing)."""
    global _step, _every_s, _last
    _step, _every_s, _last = step, every_s, -math.inf
