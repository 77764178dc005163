"""A trial in a process of its own (``[suite] isolate = true``), and its result carried back.

A segfault or an out-of-memory kill then ends the child, not the suite: the parent records the
trial as failed and goes on. The child loads the plugins afresh through their entry points.

The trial's time limit (``[suite] trial_timeout``, else ``ISOLATED_TIMEOUT``) starts when the
child has loaded (spawned, imported torch, loaded the plugins and the trial's data) and says so:
its start-up, slow on a loaded machine, has a limit of its own (``STARTUP_TIMEOUT``), and a child
past it "did not start within N s" where one past the trial's limit "timed out after N s". At
either the parent kills the child's process group: a hard limit, which holds even for a child
stuck inside one C call, and ends what the trial started too (as does the trial's end).

The group goes with the parent, however the parent ends: on SIGTERM or Ctrl-C the parent kills it
itself; should the parent be killed with ``kill -9``, a reaper (a shell waiting on a pipe that only
the parent holds) kills it once the pipe closes. The child itself dies at once: on Linux the
kernel sends it SIGKILL (``PR_SET_PDEATHSIG``); elsewhere, and as a fallback, a watchdog thread
ends it and its group once its parent is gone.

``PortableResult`` is how a trial run elsewhere (a child process here, a Dask worker in
``aebench.executors``) comes back: plain picklable data, the trained model as its state_dict's
bytes, rebuilt from the registry in the receiving process for the observers (figures, MLflow).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

import torch

from aebench.plugins.manager import Plugins, load_plugins
from aebench.results.trials import state_bytes
from aebench.results.weights import load_weights
from aebench.run import stopping
from aebench.run.data import DataCache
from aebench.run.observing import Row, TrialOutcome
from aebench.run.orphans import die_with_parent
from aebench.run.suite import Trial
from aebench.run.threads import Threads
from aebench.run.threads import follow as follow_threads
from aebench.run.trial import failed_row, run_trial, warm_up

# The limit of an isolated trial when the suite sets none: generous enough for any trial a
# benchmark means to run (the 3,280 epochs of Burda et al. on MNIST take hours, not a day), short
# enough that a hung child does not hold a suite left running over a weekend.
ISOLATED_TIMEOUT = 24 * 3600.0
# Spawning the child, importing torch, loading the plugins and the trial's data: seconds on an idle
# machine, minutes on a loaded one reading a large dataset. Past it the child is stuck, not slow.
STARTUP_TIMEOUT = 600.0
STARTED = "started"  # what the child sends once loaded: the trial's limit starts now
POLL_S = 0.1  # how often the waiting parent looks at the signal flag and the clock
# A child whose pipe closed is exiting: this long to read its own status before it is killed.
EXIT_GRACE_S = 5.0
# The reaper: waits for a line on its stdin, the parent's end of a pipe; end of file without
# "done" (the parent died) kills the trial's group, $1. `kill -9 -PGID` as dash and bash read it.
REAPER = 'read -r line; [ "$line" = done ] || kill -9 -"$1"'


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
    state = load_weights(result.weights, device)
    model.to(device).load_state_dict(state)
    model.eval()
    outcome.model, outcome.data = model, data
    return result.row, outcome


def _child(
    trial: Trial,
    device: str,
    output: Path | None,
    connection: Connection,
    parent: int,
    threads: Threads | None,
) -> None:
    leads_group = hasattr(os, "setpgrp")
    if leads_group:  # a group of our own: a timeout kills what we start, too
        os.setpgrp()
    die_with_parent(parent, group=leads_group)
    if threads is not None:  # a spawned process starts with torch's own choice
        follow_threads(threads)
    plugins = load_plugins()
    cache = DataCache(plugins)
    # What fails here (a dataset that cannot load, a device) fails the trial, in run_trial.
    with contextlib.suppress(Exception):
        cache.get(trial.dataset, torch.device(device))
        warm_up(torch.device(device))
    connection.send(STARTED)
    row, outcome = run_trial(trial, plugins, torch.device(device), cache, output)
    connection.send(to_portable(row, outcome))
    connection.close()


def did_not_start(seconds: float) -> str:
    """The reason of an isolated trial whose process was not loaded within its start-up limit."""
    return f"did not start within {seconds:g} s"


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"trial process was killed by {signal.Signals(-exitcode).name}"
    return f"trial process exited with status {exitcode} before reporting"


def _kill(process: BaseProcess) -> None:
    """The child and its process group (what it started), at once."""
    if hasattr(os, "killpg") and process.pid is not None:
        # The group is the child's own once it has called setpgrp; before that there is none
        # with its id. Its pid is not reused until we join it, nor after, while the group it
        # leads has a process left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    process.kill()
    process.join(timeout=10)


def _reaper(group: int) -> subprocess.Popen | None:
    """A process that kills the process group ``group`` once this process is gone without
    saying ``done`` (``_release``): killed with ``kill -9``, say. Outside our session, so that a
    Ctrl-C in our terminal does not end it first. None where there is no group to kill."""
    if not hasattr(os, "killpg") or not os.path.exists("/bin/sh"):
        return None
    try:
        return subprocess.Popen(
            ["/bin/sh", "-c", REAPER, "aebench-reaper", str(group)],
            stdin=subprocess.PIPE,
            bufsize=0,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:  # no process to spare: the child's own death signal still holds
        return None


def _release(reaper: subprocess.Popen | None) -> None:
    """The trial is over and its group dealt with: the reaper leaves without killing."""
    if reaper is None or reaper.stdin is None:
        return
    with contextlib.suppress(OSError):  # a reaper killed by someone: nothing to tell
        reaper.stdin.write(b"done\n")
    reaper.stdin.close()
    reaper.wait()


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
    dies, does not load within ``STARTUP_TIMEOUT`` seconds, or trains and measures past
    ``timeout`` seconds (default ``ISOLATED_TIMEOUT``) is killed with its process group, and
    makes a failed row."""
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
    reaper = _reaper(process.pid) if process.pid is not None else None
    try:
        result = _wait_for(process, receiver, limit)
    except EOFError:  # it died without a word: what it started goes too
        process.join(timeout=EXIT_GRACE_S)  # its own exit status, not our SIGKILL's
        status = process.exitcode
        _kill(process)
        result = _death(status if status is not None else process.exitcode)
    except BaseException:  # Ctrl-C or SIGTERM: the child goes too, at once
        _kill(process)
        raise
    finally:
        _release(reaper)
    if isinstance(result, str):
        return failed_row(trial, plugins, device, result), TrialOutcome()
    process.join(timeout=10)
    _kill(process)  # what the trial left running: nobody will wait for it
    return from_portable(result, trial, plugins, device, cache)


def _wait_for(process: BaseProcess, receiver: Connection, limit: float) -> PortableResult | str:
    """The child's result, or why it has none (its group killed): the start-up's limit until it
    says it has loaded, then the trial's ``limit``."""
    started, deadline = False, time.monotonic() + STARTUP_TIMEOUT
    # In slices: a signal only sets a flag (aebench.stopping), which we must look at.
    while True:
        ready = wait([receiver, process.sentinel], timeout=POLL_S)
        if receiver in ready or receiver.poll(0):
            message = receiver.recv()  # EOFError: it died without a word
            if message != STARTED:
                return message
            started, deadline = True, time.monotonic() + limit
            continue
        if ready:  # it died without a word (a process it started may hold the pipe open)
            _kill(process)  # those go too; its own exit status stays as it was
            return _death(process.exitcode)
        stopping.check()
        if time.monotonic() > deadline:
            _kill(process)
            return stopping.timed_out(limit) if started else did_not_start(STARTUP_TIMEOUT)
