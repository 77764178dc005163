"""Where trials run: here, one after another (``local``), or on a Dask cluster (``dask``); and the
executor a name on the command line picks (``make_executor``) among the registered ones.

An executor (the contract: ``aebench.contract.executor``) takes the trials still to run and
yields each one's row and outcome as it finishes. Everything else — observers, the results table,
resume, Ctrl-C — stays in ``run_suite``, in the submitting process, which alone writes the table:
a client that dies halfway loses only the trials still running, and the next run resumes by trial
id as with the local executor.

``dask.distributed`` is an optional dependency, imported only by ``DaskExecutor``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic
import torch

from aebench.contract.executor import Executor, Finished
from aebench.plugins.manager import Plugins, load_plugins
from aebench.run import stacked, stopping
from aebench.run.data import DataCache
from aebench.run.isolation import PortableResult, from_portable, run_isolated, to_portable
from aebench.run.observing import Row, TrialOutcome
from aebench.run.sections import explain
from aebench.run.suite import Trial
from aebench.run.threads import Threads, available_cores
from aebench.run.trial import failed_row, run_trial

if TYPE_CHECKING:
    from distributed import Client, Future

INSTALL_DASK = 'pip install "aebench[dask]"'
WORKER_DIED = "worker died twice running this trial (KilledWorker)"

__all__ = ["Executor", "ExecutorError", "Finished", "LocalExecutor", "Workload", "make_executor"]


class ExecutorError(ValueError):
    """An executor that cannot run (dask missing, no scheduler there); ``str`` is the one line."""


@dataclass
class Workload:
    """The trials an executor runs (``trials``), and what it needs to run or receive them.

    An executor hands each trial to ``run_here`` (in this process, or a child where ``isolate``
    says so) or runs it elsewhere; ``failed`` is the row of a trial it lost on the way.
    """

    trials: list[Trial]
    plugins: Plugins
    device: torch.device
    cache: DataCache  # the submitting process's datasets: rebuilt models are measured on them
    isolate: bool = False  # each trial in a child process (the local executor)
    # The results folder, where trials keep checkpoints while they train. Workers of a cluster
    # reach it only if it is shared; where they cannot write there, they train without.
    output: Path | None = None
    # A trial's time limit in seconds ([suite] trial_timeout): checked between training steps
    # and metrics where the trial runs; an isolated trial's child is killed at it (default
    # aebench.isolation.ISOLATED_TIMEOUT). None: no limit (in this process, or on a worker).
    timeout: float | None = None
    # ``[suite] threads``: an isolated trial process's, or a Dask worker's where a number
    threads: Threads | None = None

    def run_here(self, trial: Trial, *, isolate: bool | None = None) -> tuple[Row, TrialOutcome]:
        """One trial, trained and measured on this machine: in this process, or in a child
        process of its own where ``isolate`` (default: the suite's ``isolate``) is true."""
        args = (trial, self.plugins, self.device, self.cache, self.output)
        if self.isolate if isolate is None else isolate:
            return run_isolated(*args, timeout=self.timeout, threads=self.threads)
        return run_trial(*args, timeout=self.timeout)

    def failed(self, trial: Trial, reason: str) -> tuple[Row, TrialOutcome]:
        """The row of a trial that could not run (its worker died, say), ``reason`` its why."""
        return failed_row(trial, self.plugins, self.device, reason), TrialOutcome()


class LocalExecutor:
    """Every trial on this machine, one after another: in this process, or each in a child
    process of its own where the suite's ``isolate`` (or ``isolate`` here, over it) says so.

    With ``[train] stack = "auto"``, the seeds of one configuration train together as one
    stacked model (``aebench.run.stacked``): all of a group start at once, and each one's row
    comes back once the group is trained."""

    def __init__(self, *, isolate: bool | None = None) -> None:
        self.isolate = isolate

    def run(self, work: Workload, started: Callable[[Trial], None]) -> Iterator[Finished]:
        for group in stacked.groups(work, self.isolate):
            stopping.check()  # SIGTERM or Ctrl-C between trials
            for trial in group:
                started(trial)
            if len(group) == 1:
                yield group[0], *work.run_here(group[0], isolate=self.isolate)
            else:
                yield from stacked.run_group(group, work)


def make_executor(plugins: Plugins, name: str, params: dict[str, Any]) -> Executor:
    """The registered executor ``name`` built from ``params``, validated against its factory's
    signature. What is wrong (an unknown name or parameter, a factory that cannot build one) is
    an ``ExecutorError`` of one line."""
    try:
        entry = plugins.executors.get(name)
    except LookupError as exc:  # unknown, or registered twice
        raise ExecutorError(f"--executor {name}: {exc}") from None
    try:
        resolved = entry.params.model_validate(params)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        loc = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            takes = ", ".join(entry.params.model_fields) or "no parameters"
            what = f" takes no parameter {loc!r} (it takes: {takes})"
        else:
            what = f": {loc}: {explain(error)}"
        raise ExecutorError(f"--executor {name}: {entry.origin}{what}") from None
    try:
        executor = entry.factory(**resolved.model_dump())
    except ExecutorError:
        raise
    except ValueError as exc:  # the factory's own refusal, one line
        raise ExecutorError(f"--executor {name}: {entry.origin}: {exc}") from None
    if not isinstance(executor, Executor):
        raise ExecutorError(
            f"--executor {name}: {entry.origin} returned {type(executor).__name__}, not an"
            " aebench.Executor (an object with run(work, started))"
        )
    return executor


# --- on a Dask worker ---------------------------------------------------------------------------

# One plugin manager and one DataCache per worker process, kept between trials: a worker loads
# each dataset once, not once per trial. A module global is the only state a task function can
# keep in its process; it is built on the first trial and never shared with another process.
_worker_state: tuple[Plugins, DataCache] | None = None
# torch.manual_seed is process-wide: trials on one worker's threads would race for the seed that
# initialises their weights. One trial at a time per worker process keeps results reproducible.
_one_trial_at_a_time = threading.Lock()


def run_on_worker(
    trial: Trial,
    device: str,
    torch_threads: int | None,
    output: str | None = None,
    timeout: float | None = None,
    view: Callable[[DataCache], DataCache] | None = None,
) -> PortableResult:
    """A Dask task: one trial, with the worker's own plugins (entry points) and datasets, seen
    through ``view`` where the submitting process's cache has one (``DataCache.for_workers``:
    a search trial's data, whose test split is its validation split).

    ``timeout`` is checked between training steps and metrics, as in-process: a task stuck in
    one C call is not interrupted (Dask cannot stop a running task's thread)."""
    global _worker_state
    with _one_trial_at_a_time:
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        if _worker_state is None:
            plugins = load_plugins()
            _worker_state = (plugins, DataCache(plugins))
        plugins, cache = _worker_state
        if view is not None:
            cache = view(cache)
        folder = None if output is None else Path(output)
        row, outcome = run_trial(
            trial, plugins, torch.device(device), cache, folder, timeout=timeout
        )
        return to_portable(row, outcome)


def _no_retries_of_its_own(dask_scheduler: Any) -> None:
    """Run on the scheduler: a worker's death fails its tasks at once, and ``DaskExecutor``
    retries the trial itself. Dask's own retry would queue it behind a trial running on another
    worker, and a death there would be charged to both."""
    dask_scheduler.allowed_failures = 0


# --- the client side ----------------------------------------------------------------------------

RETRIES = 1  # a trial whose worker dies is tried once more, then recorded failed
POLL_S = 0.1  # how often the client looks at the signal flag while trials run


def _worker_died(future: Future) -> bool:
    from distributed import KilledWorker

    return future.status == "error" and isinstance(future.exception(), KilledWorker)


def _slots(client: Client, gpu: bool) -> int:
    """How many trials the cluster's workers run at once: their threads, or their GPUs."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    if gpu:
        return int(sum(w.get("resources", {}).get("GPU", 0) for w in workers))
    return sum(w["nthreads"] for w in workers)


def _as_ready(finished: Any) -> Iterator[Future]:
    """``as_completed``'s futures as they finish, looking at the signal flag while none has:
    SIGTERM and Ctrl-C only set it (aebench.stopping), and the wait for a trial is long."""
    while not finished.is_empty():
        if finished.has_ready():
            yield next(finished)
        else:
            stopping.check()
            time.sleep(POLL_S)


def require_dask() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ExecutorError(f"--executor dask needs dask.distributed: {INSTALL_DASK}") from None


class DaskExecutor:
    """Trials as tasks on a Dask cluster: an existing one (``scheduler``, ``tcp://host:port``) or a
    ``LocalCluster`` of ``workers`` processes on this machine.

    A local cluster's workers each run one trial at a time on ``cores // workers`` torch threads,
    so that together they do not oversubscribe the cores, unless the suite sets a number
    (``[suite] threads``, ``--threads``: before, ignored here). GPU trials ask for a worker resource
    ``GPU=1`` (``dask worker --resources GPU=1``): one GPU trains one trial at a time.

    A trial's time limit (``[suite] trial_timeout``) is kept by the worker, between training
    steps and metrics: a task stuck inside one C call is not stopped there (Dask cannot stop a
    running task), and ``isolate`` applies to the local executor only.
    """

    def __init__(self, *, workers: int | None = None, scheduler: str | None = None) -> None:
        require_dask()
        if (workers is None) == (scheduler is None):
            raise ExecutorError("--executor dask needs either --workers N or --scheduler ADDRESS")
        if workers is not None and workers < 1:
            raise ExecutorError(f"--workers {workers}: needs at least one worker")
        self.workers = workers
        self.scheduler = scheduler

    @contextlib.contextmanager
    def _client(self, gpu: bool) -> Iterator[Client]:
        from distributed import Client, LocalCluster

        if self.scheduler is not None:
            try:
                client = Client(self.scheduler, timeout="10s")
            except OSError as exc:
                raise ExecutorError(
                    f"cannot reach the Dask scheduler {self.scheduler}: {exc}"
                ) from None
            with client:
                yield client
            return
        cluster = LocalCluster(
            n_workers=self.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            resources={"GPU": 1} if gpu else None,
        )
        with cluster, Client(cluster) as client:
            yield client

    def _torch_threads(self, setting: Threads | None = None) -> int | None:
        """A number of threads the suite sets (``--threads N``) on every worker; else a local
        cluster's share of the cores per worker, an existing cluster's own."""
        if isinstance(setting, int):
            return setting
        if self.workers is None:
            return None
        return max(1, available_cores() // self.workers)

    def run(self, work: Workload, started: Callable[[Trial], None]) -> Iterator[Finished]:
        from distributed import as_completed

        gpu = work.device.type == "cuda"
        waiting = iter(work.trials)
        retries: list[Trial] = []  # trials whose worker died once: tried again, first
        deaths: dict[str, int] = {}
        with self._client(gpu) as client:
            client.run_on_scheduler(_no_retries_of_its_own)
            running: dict[Future, Trial] = {}

            def submit_while_slots_are_free() -> list[Future]:
                # No more trials in flight than the cluster runs at once: a worker then holds
                # only the trial it trains, and its death is charged to that trial alone.
                submitted = []
                while len(running) < max(1, _slots(client, gpu)):
                    retry = retries.pop(0) if retries else None
                    trial = retry or next(waiting, None)
                    if trial is None:
                        break
                    future = client.submit(
                        run_on_worker,
                        trial,
                        str(work.device),
                        self._torch_threads(work.threads),
                        None if work.output is None else str(work.output.resolve()),
                        work.timeout,
                        work.cache.for_workers(),
                        pure=False,
                        resources={"GPU": 1} if gpu else None,
                    )
                    running[future] = trial
                    submitted.append(future)
                    if retry is None:
                        started(trial)
                return submitted

            finished = as_completed(submit_while_slots_are_free())
            try:
                for future in _as_ready(finished):
                    trial = running.pop(future)
                    if _worker_died(future) and deaths.get(trial.id, 0) < RETRIES:
                        deaths[trial.id] = deaths.get(trial.id, 0) + 1
                        retries.append(trial)  # on another worker, once one is free
                        finished.update(submit_while_slots_are_free())
                        continue
                    finished.update(submit_while_slots_are_free())  # before the slow part here
                    row, outcome = self._receive(future, trial, work)
                    yield trial, row, outcome
            finally:  # Ctrl-C or a closed generator: nothing keeps running on the cluster
                client.cancel(list(running))

    @staticmethod
    def _receive(future: Future, trial: Trial, work: Workload) -> tuple[Row, TrialOutcome]:
        from distributed import KilledWorker

        try:
            result: PortableResult = future.result()
        except KilledWorker:
            reason = WORKER_DIED
        except Exception as exc:  # the task itself failed (a plugin missing on the worker, say)
            reason = f"{type(exc).__name__}: {exc}"
        else:
            return from_portable(result, trial, work.plugins, work.device, work.cache)
        return work.failed(trial, reason)
