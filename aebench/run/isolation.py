"""A trial in a process of its own (``[suite] isolate = true``), and its result carried back.

A segfault or an out-of-memory kill then ends the child, not the suite: the parent records the
trial as failed and goes on. The child loads the plugins afresh through their entry points.

The parent waits at most the trial's time limit (``[suite] trial_timeout``, else
``ISOLATED_TIMEOUT``), then kills the child and its process group: a hard limit, which holds even
for a child stuck inside one C call. The child dies with its parent, even one killed by
``kill -9``: on Linux the kernel sends it SIGKILL (``PR_SET_PDEATHSIG``); elsewhere, and as a
fallback, a watchdog thread ends it once its parent is gone.

``PortableResult`` is how a trial run elsewhere (a child process here, a Dask worker in
``aebench.executors``) comes back: plain picklable data, the trained model as its state_dict's
bytes, rebuilt from the registry in the receiving process for the observers (figures, MLflow).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

import torch

from aebench.plugins.manager import Plugins, load_plugins
from aebench.results.trials import state_bytes
from aebench.run import stopping
from aebench.run.data import DataCache
from aebench.run.observing import Row, TrialOutcome
from aebench.run.suite import Trial
from aebench.run.threads import Threads
from aebench.run.threads import follow as follow_threads
from aebench.run.trial import failed_row, run_trial

# The limit of an isolated trial when the suite sets none: generous enough for any trial a
# benchmark means to run (the 3,280 epochs of Burda et al. on MNIST take hours, not a day), short
# enough that a hung child does not hold a suite left running over a weekend.
ISOLATED_TIMEOUT = 24 * 3600.0
POLL_S = 0.1  # how often the waiting parent looks at the signal flag and the clock
WATCHDOG_S = 0.5  # how often a child looks for its parent where the kernel cannot tell it
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass
class PortableResult:
    """A trial's row and outcome with nothing tied to the process that ran it."""

    row: Row
    curves: dict[str, list[float]]
    weights: bytes | None  # the trained model's state_dict (torch.save), None if it never trained
    traceback: str = ""
    resumed_after: int = 0
    metric_tracebacks: list[str] = field(default_factory=list)


def to_portable(row: Row, outcome: TrialOutcome) -> PortableResult:
    weights = None
    if outcome.model is not None:  # plain bytes: torch's shared-memory handoff dies with us
        weights = state_bytes(outcome.model.state_dict())
    return PortableResult(
        row,
        outcome.curves,
        weights,
        outcome.traceback,
        outcome.resumed_after,
        list(outcome.metric_tracebacks),
    )


def from_portable(
    result: PortableResult,
    trial: Trial,
    plugins: Plugins,
    device: torch.device,
    cache: DataCache,
) -> tuple[Row, TrialOutcome]:
    """The row, and an outcome whose model is rebuilt here from its weights alone."""
    outcome = TrialOutcome(
        curves=result.curves,
        traceback=result.traceback,
        resumed_after=result.resumed_after,
        metric_tracebacks=list(result.metric_tracebacks),
    )
    if result.weights is None:
        return result.row, outcome
    data = cache.get(trial.dataset, device)
    model = plugins.models.get(trial.model.plugin).factory(data.info, **trial.model.params)
    state = torch.load(io.BytesIO(result.weights), map_location=device, weights_only=True)
    model.to(device).load_state_dict(state)
    model.eval()
    outcome.model, outcome.data = model, data
    return result.row, outcome


def _die_with_parent(parent: int) -> None:
    """End this process when ``parent`` dies, however it dies (``kill -9`` included)."""
    if sys.platform.startswith("linux"):
        # The kernel sends SIGKILL when the thread that started us exits: the parent's thread
        # that waits for us, which lives as long as we run.
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # Elsewhere, and should the parent have died before prctl: we were handed to another parent.
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int, interval: float = WATCHDOG_S) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)  # orphaned: nobody waits for our result; leave at once, skipping cleanup


def _child(
    trial: Trial,
    device: str,
    output: Path | None,
    connection: Connection,
    parent: int,
    threads: Threads | None,
) -> None:
    _die_with_parent(parent)
    if threads is not None:  # a spawned process starts with torch's own choice
        follow_threads(threads)
    if hasattr(os, "setpgrp"):  # a group of our own: a timeout kills what we start, too
        os.setpgrp()
    plugins = load_plugins()
    row, outcome = run_trial(trial, plugins, torch.device(device), DataCache(plugins), output)
    connection.send(to_portable(row, outcome))
    connection.close()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"trial process was killed by {signal.Signals(-exitcode).name}"
    return f"trial process exited with status {exitcode} before reporting"


def _kill(process: BaseProcess) -> None:
    """The child and its process group (what it started), at once."""
    if hasattr(os, "killpg") and process.pid is not None:
        # The group is the child's own once it has called setpgrp; before that there is none
        # with its id (its pid is not reused until we join it).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    process.kill()
    process.join(timeout=10)


# Declared boilerplate: its parameters are run_trial's (an executor calls one or the other), and
# ``threads``.
def run_isolated(
    trial: Trial,
    plugins: Plugins,
    device: torch.device,
    cache: DataCache,
    output: Path | None = None,
    timeout: float | None = None,
    threads: Threads | None = None,
) -> tuple[Row, TrialOutcome]:
    """Run the trial in a child process (torch with ``threads`` threads there); a child that
    dies, or runs past ``timeout`` seconds (default ``ISOLATED_TIMEOUT``) and is killed, makes a
    failed row."""
    limit = ISOLATED_TIMEOUT if timeout is None else timeout
    context = multiprocessing.get_context("spawn")  # no forked copies of threads or CUDA state
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_child,
        args=(trial, str(device), output, sender, os.getpid(), threads),
        daemon=True,
    )
    process.start()
    sender.close()  # the child holds the only sending end: its death ends recv() with EOFError
    deadline = time.monotonic() + limit
    try:
        # In slices: a signal only sets a flag (aebench.stopping), which we must look at.
        while not receiver.poll(0):
            ready = wait([receiver, process.sentinel], timeout=POLL_S)
            if receiver in ready or receiver.poll(0):
                break
            if ready:  # it died without a word (a process it started may hold the pipe open)
                _kill(process)  # those go too; its own exit status stays as it was
                reason = _death(process.exitcode)
                return failed_row(trial, plugins, device, reason), TrialOutcome()
            stopping.check()
            if time.monotonic() > deadline:
                _kill(process)
                reason = stopping.timed_out(limit)
                return failed_row(trial, plugins, device, reason), TrialOutcome()
        result: PortableResult = receiver.recv()
    except EOFError:
        process.join()
        return failed_row(trial, plugins, device, _death(process.exitcode)), TrialOutcome()
    except BaseException:  # Ctrl-C or SIGTERM: the child goes too, at once
        _kill(process)
        raise
    process.join(timeout=10)
    if process.is_alive():
        _kill(process)
    return from_portable(result, trial, plugins, device, cache)
