"""The run of a suite's trials: locked folder, observers told, rows and trial folders recorded.

Observers are plugins built from the suite's settings (``build_observers``), and each event they
hear is guarded (``_Listeners``): one that raises is named and silenced, and the run goes on.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aebench.contract.columns import declared
from aebench.plugins.manager import Plugins
from aebench.plugins.registry import Entry
from aebench.results.confined import check_links, remove_stale_temporaries
from aebench.results.files import FolderError, cannot_write, write_atomically
from aebench.results.lock import folder_lock
from aebench.results.table import (
    SUITE_FILE,
    check_owner,
    declare_measured,
    record_row,
    settle,
    storable,
    write_load_errors,
    write_vocabulary,
)
from aebench.results.trials import (
    CHECKPOINT,
    state_bytes,
    writable_trial_folder,
    write_trial,
)
from aebench.run import stopping
from aebench.run.data import DataCache
from aebench.run.measure import keeping, unchanged_metrics
from aebench.run.observing import Row, SuiteObserver, SuiteRun, TrialOutcome
from aebench.run.plan import FINISHED, Plan, plan
from aebench.run.sections import Problems, observer_settings
from aebench.run.suite import Suite, SuiteError, Trial
from aebench.run.threads import follow as follow_threads
from aebench.run.trial import distribution_version, evaluate_trial, resolve_device

if TYPE_CHECKING:
    from aebench.run.executors import Executor

log = logging.getLogger("aebench")


@dataclass(frozen=True)
class Registered:
    """An observer built from a registered factory, beside its registry entry: who to name
    (plugin and distribution) when it fails."""

    observer: SuiteObserver
    entry: Entry


def build_observers(suite: Suite, plugins: Plugins) -> list[Registered]:
    """One observer from each registered factory the suite runs (``observer_settings``: all but
    those its ``[observers.NAME]`` switch off, opt-in ones only where it has their table), each
    ``factory(suite, **settings)``, in registration order (pluggy's). A bad setting, or a factory
    that raises, is a ``SuiteError``: the suite cannot start."""
    problems = Problems(suite.path)
    settings = observer_settings(suite.spec, plugins.observers, problems)
    problems.raise_any()
    observers = []
    for entry in plugins.observers.in_order():
        if entry.name not in settings:
            continue
        try:
            observer = entry.factory(suite, **settings[entry.name])
        except Exception as exc:  # a tracking store it cannot use, say: the suite cannot start
            raise SuiteError(f"{suite.path}: {entry.origin}: {exc}") from None
        if observer is not None:  # None: it stays out of this suite
            observers.append(Registered(observer, entry))
    return observers


@dataclass
class _Guarded:
    observer: SuiteObserver
    entry: Entry | None  # None: given by a Python caller (``run_suite(observers=[...])``)
    started: bool = False  # it heard suite_started: it alone hears the rest
    off: bool = False  # it raised: it hears nothing more of this run


class _Listeners:
    """The run's observers, every event of each guarded. The table is the record and an observer
    a view of it, not worth a run: one that raises is named on stderr (its plugin and
    distribution, or its class when a Python caller gave it), its traceback goes to aebench.log,
    and it hears nothing more of the run; the others, and the run, go on. ``suite_finished``
    still reaches every other that started (MLflow closes its invocation run).

    One that hangs is as one that raises: an event still running after ``deadline_s`` (or the
    observer's own ``event_deadline_s``; None: it bounds its calls itself) is interrupted."""

    deadline_s: float | None = 600.0  # generous: a report of a large folder takes seconds

    class Hung(BaseException):
        """Raised into an event past its deadline; a BaseException, so that an observer's own
        ``except Exception`` around its I/O does not swallow it."""

    def __init__(self, observers: Sequence[SuiteObserver | Registered]) -> None:
        self._all = [
            _Guarded(o.observer, o.entry) if isinstance(o, Registered) else _Guarded(o, None)
            for o in observers
        ]

    def suite_started(self, suite: Suite, output: Path, trials: list[Trial]) -> None:
        for one in self._all:
            self._tell(one, "as the suite started", "suite_started", suite, output, trials)
            one.started = True  # after: an interrupt during its start leaves it out of the end

    def trial_started(self, trial: Trial) -> None:
        for one in self._all:
            self._tell(one, f"as {trial.label()} started", "trial_started", trial)

    def trial_finished(self, trial: Trial, row: Row, outcome: TrialOutcome) -> None:
        for one in self._all:
            self._tell(one, f"on {trial.label()}", "trial_finished", trial, row, outcome)

    def suite_finished(self, run: SuiteRun) -> None:
        for one in self._all:
            self._tell(one, "as the suite finished", "suite_finished", run)

    def _tell(self, one: _Guarded, when: str, event: str, *args: Any) -> None:
        if one.off or (event != "suite_started" and not one.started):
            return
        try:
            with self._within(getattr(one.observer, "event_deadline_s", self.deadline_s)):
                getattr(one.observer, event)(*args)
        except (Exception, _Listeners.Hung) as exc:
            one.off = True
            name = type(one.observer).__name__
            who = f"{one.entry.origin}: {name}" if one.entry else f"observer {name}"
            log.error("%s failed %s (%s):\n%s", who, when, event, traceback.format_exc())
            print(
                f"aebench: {who} failed {when}: {str(exc) or type(exc).__name__};"
                " it hears nothing more of this run",
                file=sys.stderr,
            )

    @staticmethod
    @contextlib.contextmanager
    def _within(seconds: float | None) -> Iterator[None]:
        """An event past ``seconds`` gets ``Hung`` from SIGALRM (again each second while it
        goes on): a socket read or a sleep is interrupted. Only in the main thread, and only
        where no other timer is set; elsewhere the event is unbounded."""
        import signal
        import threading

        if (
            seconds is None
            or not hasattr(signal, "setitimer")  # not on Windows
            or threading.current_thread() is not threading.main_thread()
            or signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0)
        ):
            yield
            return
        armed = [True]

        def hung(signum: int, frame: object) -> None:
            if armed[0]:
                raise _Listeners.Hung(f"no answer within {seconds:.0f} s")

        previous = signal.signal(signal.SIGALRM, hung)
        signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
        try:
            yield
        finally:
            try:
                armed[0] = False  # an alarm that lands now is ignored
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)


def keep_trial(
    output: Path,
    trial: Trial,
    suite: Suite,
    row: Row,
    outcome: TrialOutcome,
    keep_model: bool,
    trained: bool = True,
) -> None:
    """The trial's folder: its configuration, curves and (unless told not to) its weights. A
    finished trial's checkpoint is removed; a failed one's is kept, to resume from next time.
    A trial measured again without training (``trained=False``) keeps the weights it has.
    A file that cannot be written (a full disk) is a ``FolderError`` naming the trial's folder."""
    folder = writable_trial_folder(output, trial.id)  # no link along it: FolderError
    config = trial.config() | {
        "trial_id": trial.id,
        "eval_id": trial.eval_id,
        "suite": suite.name,
        "status": row["status"],
        "aebench": distribution_version("aebench"),
    }
    weights = None
    if trained and keep_model and outcome.model is not None:
        weights = state_bytes(outcome.model.state_dict())
    try:
        write_trial(folder, config, outcome.curves, weights, replace_weights=trained)
        if trained and row["status"] in FINISHED:
            (folder / CHECKPOINT).unlink(missing_ok=True)
    except OSError as exc:
        raise cannot_write(folder, exc) from None


def run_trials(
    suite: Suite,
    plugins: Plugins,
    *,
    output: Path,
    device: str | None = None,
    observers: Sequence[SuiteObserver | Registered] = (),
    rerun: bool = False,
    cache: DataCache | None = None,
    executor: Executor | None = None,
    work: Plan | None = None,
) -> SuiteRun:
    """Run every trial not already finished in ``output`` (the session's resolved folder),
    recording its folder and its row as each one ends.

    Trials whose evaluation settings changed are measured again from their kept weights, here,
    first; the ``executor`` trains the rest (default: here, one after another). Rows come back
    here as trials finish, and only this process writes the table and the trial folders.
    Observers hear each step. On KeyboardInterrupt the trials in progress are abandoned,
    observers hear ``suite_finished`` with ``run.interrupted`` set, and the interrupt goes on up.
    ``work`` replaces the plan made from the table (``aebench evaluate`` gives its own).

    The output folder is locked for the whole run (``aebench.lock``). Another run holding it, a
    folder of another suite, a table that cannot be read (``rerun`` replaces it) or a file that
    cannot be written is a ``FolderError``: one line to show. Each trial's row costs O(1) to
    record; the table is rewritten when the run starts with rows a killed run left, and when it
    ends, before observers hear of the end (``aebench.results``).
    """
    with folder_lock(output):
        check_owner(output, suite.name)
        check_links(output)  # a link where trials or figures go: refused before anything is written
        remove_stale_temporaries(output)  # what killed writes left (of dead processes)
        table = settle(output, replace_unusable=rerun)
        for problem in plugins.problems:  # aebench.log, or stderr where logging is not set up
            log.warning("aebench: warning: %s", problem.message)
        try:
            write_vocabulary(output, declared({e.name: e.factory for e in plugins.metrics}))
            load_errors = [vars(p) | {"message": p.message} for p in plugins.problems]
            write_load_errors(output, load_errors)  # beside suite.json: the report's header
            text = suite.spec.model_dump_json()
            write_atomically(output / SUITE_FILE, lambda p: p.write_text(text))
        except OSError as exc:
            raise cannot_write(output, exc) from None
        return _run_locked(
            suite,
            plugins,
            output,
            table,
            device=device,
            observers=observers,
            rerun=rerun,
            cache=cache,
            executor=executor,
            work=work,
        )


def _run_locked(
    suite: Suite,
    plugins: Plugins,
    output: Path,
    table: Any,
    *,
    device: str | None,
    observers: Sequence[SuiteObserver | Registered],
    rerun: bool,
    cache: DataCache | None,
    executor: Executor | None,
    work: Plan | None,
) -> SuiteRun:
    """``run_trials`` in its folder, locked, from the folder's results ``table``."""
    from aebench.run.executors import LocalExecutor, Workload

    chosen = resolve_device(device or suite.spec.suite.device)
    # This process's trials and evaluations ("auto" chosen again before every epoch); an
    # isolated trial's process follows the same setting.
    follow_threads(suite.spec.suite.threads)
    cache = cache or DataCache(plugins)
    executor = executor or LocalExecutor()
    # A trial measured again keeps the metrics whose settings and code did not change; a plan
    # given here (``aebench evaluate``'s) says so itself (``measure.keeping``).
    kept = None
    if work is None:
        work = plan(suite, table, output, rerun)
        kept = {t.id: unchanged_metrics(t, row, plugins) for t, row in work.evaluate}
    run = SuiteRun(output, [], already_done=len(suite.trials) - len(work))
    run.evaluated = len(work.evaluate)
    training = Workload(
        work.train,
        plugins,
        chosen,
        cache,
        isolate=suite.spec.suite.isolate,
        output=output,
        timeout=suite.spec.suite.trial_timeout,
        threads=suite.spec.suite.threads,
    )

    listeners = _Listeners(observers)
    started = listeners.trial_started

    measured_again = {trial.id for trial, _ in work.evaluate}

    def evaluated() -> Iterator[tuple[Trial, Row, TrialOutcome]]:
        for trial, trained in work.evaluate:
            started(trial)
            with contextlib.nullcontext() if kept is None else keeping(kept):
                measured = evaluate_trial(trial, trained, plugins, chosen, cache, output)
            yield trial, *measured

    try:
        listeners.suite_started(suite, output, [t for t, _ in work.evaluate] + work.train)
        # closing(): an interrupt stops the executor's generator at once (a cluster cancels).
        # cooperative(): SIGTERM and Ctrl-C set a flag, acted on between steps, metrics, trials.
        with stopping.cooperative(), contextlib.closing(executor.run(training, started)) as trained:
            for trial, row, outcome in itertools.chain(evaluated(), trained):
                if outcome.traceback:
                    log.error("trial %s failed:\n%s", trial.id, outcome.traceback)
                for failure in outcome.metric_tracebacks:  # headed by the plugin blamed
                    log.error("trial %s: a metric failed: %s", trial.id, failure)
                if outcome.resumed_after:
                    print(
                        f"aebench: {trial.label()} resumed from its checkpoint after epoch"
                        f" {outcome.resumed_after}",
                        file=sys.stderr,
                    )
                keep = suite.spec.suite.keep_models
                row = storable(row)  # a cell the table cannot hold fails the trial
                keep_trial(output, trial, suite, row, outcome, keep, trial.id not in measured_again)
                run.rows.append(row)
                record_row(output, row)  # O(1): the table is rewritten once, at the end
                listeners.trial_finished(trial, row, outcome)
                stopping.check()  # between trials
    except KeyboardInterrupt:
        run.interrupted = True
        raise
    finally:
        unwritten = _write_table(output)  # before observers read it (the report, MLflow)
        listeners.suite_finished(run)  # those that started, unless they failed
    if unwritten is not None:  # raised only now: an error already on its way up comes first
        raise unwritten
    return run


def _write_table(output: Path) -> FolderError | None:
    """Fold the run's rows into the table, and declare the measured columns no metric declares
    (a v1 metric's, learned where it measured); the error, if it cannot be written (the rows stay
    in the journal and the trial folders, for the next run)."""
    try:
        declare_measured(output, settle(output))
    except FolderError as exc:
        return exc
    return None
