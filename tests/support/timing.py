"""Time limits that hold on a loaded machine as on an idle one.

A test holds no fixed wall-clock bound: a limit is written as the seconds an idle 2-core machine
needs and passed through ``scaled``, which multiplies it by how much slower this machine is now:
measured once per test process, the first time a test asks, as the time to start a Python that
imports aebench and torch (what every subprocess of a run does first) against the same on an
idle machine. A test that waits for something to happen (a file written, a process gone) polls
for it with ``wait_until``, whose limit only guards against a hang.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

# `python -c "import aebench, torch"` on an idle 2-core machine: 1.40 to 1.56 s (measured).
IDLE_START_S = 1.5
_MEASURING = threading.Lock()

T = TypeVar("T")


def slowdown() -> float:
    """How many times slower than an idle machine this one starts a Python that imports aebench
    and torch, now: 1 at least (a faster machine keeps the idle machine's limits)."""
    with _MEASURING:  # once, even when threads of a test ask at the same time
        return _measured_slowdown()


@functools.cache
def _measured_slowdown() -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import aebench, torch"], check=True)
    return max(1.0, (time.monotonic() - start) / IDLE_START_S)


def scaled(seconds: float) -> float:
    """``seconds`` on an idle machine, as long as it takes on this one now."""
    return seconds * slowdown()


def wait_until(
    condition: Callable[[], T],
    what: str,
    process: subprocess.Popen | None = None,
    within: float = 120,
) -> T:
    """Poll ``condition`` until it gives something true, and return that. Fails, saying ``what``
    never happened, if ``process`` ends first or after ``within`` seconds (scaled): a hang."""
    deadline = time.monotonic() + scaled(within)
    while not (found := condition()):
        if process is not None:
            assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{what} (after {scaled(within):.0f} s)"
        time.sleep(0.02)
    return found
