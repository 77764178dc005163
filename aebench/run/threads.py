"""How many threads a trial's torch uses: ``[suite] threads`` / ``aebench run --threads``.

torch takes every core by default, and its OpenMP threads wait for each other by spinning. When
another process keeps a core busy, one of them is always descheduled and the others spin for it:
on 2 cores with one competing process, a bare training loop fell from 33,000 to 12,000 samples/s
at 2 threads, while at 1 thread it ran 23,000 (measured; on an idle machine 2 threads ran 33,000
and 1 thread 23,000). So ``"auto"`` takes the cores that no other process is running on: Linux
counts the runnable threads at that moment (``/proc/loadavg``), less this process's own;
elsewhere every core counts as free. It is chosen when the run starts and again before every
epoch, every metric and every second of a long estimate (``follow``, ``adjust``), because the
load changes under a long run: a zoo run that chose 2 threads on an idle machine took 50 s
instead of 1 s for a digits trial once other jobs started.
An ``OMP_NUM_THREADS`` in the environment is a choice already made: "auto" keeps it.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Literal

Threads = int | Literal["auto"]
LOADAVG = Path("/proc/loadavg")
OWN_THREADS = Path("/proc/self/task")


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def own_running(tasks: Path = OWN_THREADS) -> int:
    """This process's threads runnable right now (at least the one asking): torch's OpenMP
    threads keep spinning for a while after their work, and must not count as another process."""
    try:
        states = [
            (task / "stat").read_text().rsplit(")", 1)[1].split()[0] for task in tasks.iterdir()
        ]
    except (OSError, IndexError):
        return 1
    return max(1, states.count("R"))


def busy_elsewhere(loadavg: Path = LOADAVG, tasks: Path = OWN_THREADS) -> int:
    """Threads of other processes runnable right now (this one's own left out); 0 where the
    system does not say."""
    try:
        running = int(loadavg.read_text().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return 0
    return max(0, running - own_running(tasks))


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


_followed: Threads | None = None  # the setting this process's training follows


def follow(setting: Threads) -> int:
    """Set this process's torch threads for ``setting`` now, and remember it for ``adjust``;
    the number set."""
    import torch  # here: the commands that only read results import no torch

    global _followed
    _followed = setting
    threads = choose_threads(setting)
    torch.set_num_threads(threads)
    return threads


_adjusted_at = -math.inf  # when ``adjust`` last chose (time.monotonic())


def adjust(every_s: float = 0.0) -> None:
    """Before an epoch, a metric, or a long evaluation's next batch: under ``"auto"``, torch's
    threads chosen again for the load now; not again within ``every_s`` of the last choice (a
    loop's batches). A choice holds until the next: made while one of the run's own workers
    imported mlflow, one thread measured a 57 s likelihood that took 34 s on two."""
    global _adjusted_at
    if _followed != "auto" or time.monotonic() - _adjusted_at < every_s:
        return
    import torch

    _adjusted_at = time.monotonic()
    threads = choose_threads("auto")
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
