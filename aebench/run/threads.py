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

import os
from pathlib import Path
from typing import Literal

from aebench.estimators.pacing import pace

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
# Between the chunks of a long estimate (``aebench.estimators.pacing``), "auto" is chosen again at
# most this often: a chunk takes milliseconds to a second, and choosing reads /proc.
ESTIMATE_EVERY_S = 1.0


def follow(setting: Threads) -> int:
    """Set this process's torch threads for ``setting`` now, and remember it for ``adjust``
    (before every epoch and metric, and, under "auto", between a long estimate's chunks); the
    number set."""
    import torch  # here: the commands that only read results import no torch

    global _followed
    _followed = setting
    pace(adjust if setting == "auto" else None, every_s=ESTIMATE_EVERY_S)
    threads = choose_threads(setting)
    torch.set_num_threads(threads)
    return threads


def adjust() -> None:
    """Before an epoch or a metric, and between the chunks of a long estimate (at most every
    ``ESTIMATE_EVERY_S``): under ``"auto"``, torch's threads chosen again for the load now. A
    choice holds until the next: made while one of the run's own workers imported mlflow, one
    thread measured a 57 s likelihood that took 32 s on two."""
    if _followed != "auto":
        return
    import torch

    threads = choose_threads("auto")
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
