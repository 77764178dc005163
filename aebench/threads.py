"""How many threads a trial's torch uses: ``[suite] threads`` / ``aebench run --threads``.

torch takes every core by default, and its OpenMP threads wait for each other by spinning. When
another process keeps a core busy, one of them is always descheduled and the others spin for it:
on 2 cores with one competing process, a bare training loop fell from 33,000 to 12,000 samples/s
at 2 threads, while at 1 thread it ran 23,000 (measured; on an idle machine 2 threads ran 33,000
and 1 thread 23,000). So ``"auto"`` takes the cores that no other process is running on when the
run starts: Linux counts the runnable threads at that moment (``/proc/loadavg``); elsewhere every
core counts as free. An ``OMP_NUM_THREADS`` in the environment is a choice already made: "auto"
keeps it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

Threads = int | Literal["auto"]
LOADAVG = Path("/proc/loadavg")


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def busy_elsewhere(loadavg: Path = LOADAVG) -> int:
    """Threads of other processes runnable right now (this one's own running thread left out);
    0 where the system does not say."""
    try:
        running = loadavg.read_text().split()[3].split("/")[0]
        return max(0, int(running) - 1)
    except (OSError, IndexError, ValueError):
        return 0


def choose_threads(setting: Threads, cores: int | None = None, busy: int | None = None) -> int:
    """The number of threads for ``setting``: a number as it is; ``"auto"`` the environment's
    ``OMP_NUM_THREADS`` where it is set, else the free cores (at least one)."""
    if setting != "auto":
        return int(setting)
    chosen = os.environ.get("OMP_NUM_THREADS", "")
    if chosen.isdigit() and int(chosen) >= 1:  # the environment's choice stands
        return int(chosen)
    cores = available_cores() if cores is None else cores
    busy = busy_elsewhere() if busy is None else busy
    return max(1, cores - busy)
