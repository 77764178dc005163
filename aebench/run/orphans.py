"""A helper process that ends when the aebench that started it dies, ``kill -9`` included.

An isolated trial (``isolation``) and the figure worker (``views.background``) are processes of
their own. Orphaned, they would hold the run's terminal pipes and go on using the machine for a
result nobody waits for. On Linux the kernel sends SIGKILL when the parent thread that started the
process exits (``PR_SET_PDEATHSIG``); elsewhere, and should the parent have died before the call,
a watchdog thread notices that the process was handed to another parent.

No torch here: the figure worker imports matplotlib only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time

WATCHDOG_S = 0.5  # how often a process looks for its parent where the kernel cannot tell it
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int, *, group: bool = False) -> None:
    """End this process when ``parent`` dies, however it dies. With ``group``, this process
    leads a process group, and what it started goes too (the watchdog's way; the kernel's
    SIGKILL takes this process alone, and the isolated trial's reaper takes the group)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    threading.Thread(target=_watch_parent, args=(parent, group), daemon=True).start()


def _watch_parent(parent: int, group: bool, interval: float = WATCHDOG_S) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    if group:
        with contextlib.suppress(OSError):
            os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(1)  # orphaned: nobody waits for our result; leave at once, skipping cleanup
