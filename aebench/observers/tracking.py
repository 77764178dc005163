"""MLflow: an experiment per results folder, a run per trial, an invocation run per ``aebench run``.

The results table stays the source of truth; MLflow is a view of it for comparing runs in a UI.
Trial runs are not nested under their invocation: MLflow's runs table shows nested runs collapsed
under their parent and plots only the rows it shows, so each trial run is a top-level run tagged
``aebench.invocation`` (the invocation run's id) instead. The invocation run (the suite file, the
counts, the results table and the report) is created with the first finished trial: an
``aebench run`` that has nothing to do leaves no empty run behind.

The logging is done off the run's path, by a worker process (``tracking_worker``) that imports
mlflow, opens the store and logs each trial while the next one trains
(``tracking_recorder.Recorder``; ``tracking_runs`` says what a trial's run holds). This process
never imports mlflow: ``MlflowTracker`` hands the worker each trial's row, curves and folder, its
figures once drawn, and the run's end, and waits for it as the suite finishes, so that the store
holds everything when the run returns. MLflow never stops or stalls a run: that wait lasts only
while the worker keeps within the deadline of each call it makes (``tracking_store``), and the
first failure (of the store, or of the worker itself) ends tracking for the run with one warning
line; the next run repairs what is missing.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aebench.observers import tracking_store, tracking_worker
from aebench.observers.tracking_messages import FolderDrawn, Outcome, RunEnd, RunStart, TrialDone
from aebench.observers.tracking_runs import experiment_name
from aebench.observers.tracking_store import busy_wait, shown_uri, tracking_uri, why_it_failed
from aebench.observers.tracking_synced import is_synced, note_synced
from aebench.results.trials import state_bytes, trial_folder
from aebench.run.observing import Row, SuiteObserver, SuiteRun, TrialOutcome
from aebench.run.suite import Suite, TrackingSection, Trial
from aebench.views.background import drawings_done, figures_ready

log = logging.getLogger("aebench")

AFTERWARDS = "(the results table has every trial; the next run adds their MLflow runs)"


class MlflowTracker(SuiteObserver):
    """Records a suite run to MLflow as it goes, and repairs what a killed run left.

    Put it after ``TrialFigures`` in the observer list: each trial's figure folder is logged as
    its run's artifacts, once drawn. Its events only hand work to the MLflow worker; the suite's
    end waits for the worker to log it all. The first failure is one warning line, after which
    this run leaves the store alone. At the start the runs a killed run left RUNNING are marked
    KILLED, and the finished trials of the results table that have no run get one, from their
    row and folder.
    """

    event_deadline_s = None  # no deadline per event: the wait at the end is bounded by the worker's

    def __init__(self, settings: TrackingSection | None = None) -> None:
        self.settings = settings or TrackingSection()
        self.uri = tracking_uri(self.settings.uri)
        self.failed = False  # the store (or the worker) failed once: nothing more is sent
        self.experiment_id = ""  # these four as the worker recorded them, once the run ended
        self.trial_run_ids: dict[str, str] = {}  # trial id -> run id, this invocation
        self.repaired: list[str] = []  # trial ids given the run a killed run did not log
        self.killed: list[str] = []  # run ids a killed run left RUNNING, now KILLED
        self.log_batches: list[int] = []  # entities of each log_batch call (one per trial)
        self._worker: tracking_worker.Worker | None = None  # this run's, until its end is logged
        self._done = threading.Event()  # the worker logged the run's end (or died)
        self._outcome: Outcome | None = None
        self._lock = threading.Lock()
        self._suite: Suite | None = None
        self._output = Path(".")
        self._pending: set[str] = set()  # trials this invocation runs: their runs come with them
        self._drawing: dict[str, Path] = {}  # trial id -> its folder, figures being drawn
        self._started_ms: dict[str, int] = {}
        self._told_busy = False
        self._handled: BaseException | None = None  # one the caller handles as the run starts

    # -- what the run says ----------------------------------------------------------------------

    def _fail(self, line: str, details: str = "") -> None:
        """The first failure of the run, in one line on stderr (its traceback in the log); then
        nothing more is sent to the worker."""
        with self._lock:
            if self.failed:
                return
            self.failed = True
        if details and log.hasHandlers():  # aebench.log; never Python's last resort, stderr
            log.error("%s", details)
        sys.stderr.write(f"aebench: {line} {AFTERWARDS}\n")  # one write: from the worker's thread
        sys.stderr.flush()

    def _guarded(self, what: str, action: Callable[[], object]) -> None:
        """``action()`` (handing work to the worker); its failure is the run's first failure."""
        if self.failed:
            return
        try:
            action()
        except Exception as exc:
            import traceback

            self._fail(
                f"MLflow at {shown_uri(self.uri)} failed {what}: {why_it_failed(exc)};"
                " nothing more is recorded to MLflow in this run",
                traceback.format_exc(),
            )

    def _busy(self) -> None:
        """One line, the first time the store is found locked by another process."""
        if not self._told_busy:
            self._told_busy = True
            where = f"aebench: MLflow at {shown_uri(self.uri)} is busy (locked by another process)"
            print(f"{where}; retrying for up to {busy_wait():.0f} s", file=sys.stderr, flush=True)

    def _heard(self, message: tuple[Any, ...]) -> None:
        """What the worker says (in the worker's thread of this process)."""
        kind = message[0]
        if kind == "busy":
            self._busy()
        elif kind == "failed":
            self._fail(message[1], message[2])
        elif kind == "done":
            self._outcome = message[1]
            self._done.set()
        elif kind == "died":
            code = message[1]
            how = f"was killed by signal {-code}" if code and code < 0 else f"exited ({code})"
            self._fail(f"the MLflow worker process {how}; nothing more is recorded to MLflow")
            self._done.set()

    # -- the worker -----------------------------------------------------------------------------

    def _connect(self) -> None:
        """A worker for this run, told of it: it opens the store while the first trial trains."""
        suite = self._suite
        assert suite is not None, "suite_started comes first"
        self._done.clear()
        self._outcome = None
        self._worker = tracking_worker.acquire(self._heard)
        start = RunStart(
            uri=self.uri,
            experiment=experiment_name(suite, self._output, self.settings.experiment),
            log_model=self.settings.log_model,
            suite_name=suite.name,
            suite_path=str(suite.path),
            output=self._output.resolve(),
            trials=len(self._pending),
            pending=frozenset(self._pending),
            started_ms=int(time.time() * 1000),
            cwd=os.getcwd(),
            env=dict(os.environ),
            limits={
                "BUSY_WAIT_S": tracking_store.BUSY_WAIT_S,
                "SQLITE_CALL_S": tracking_store.SQLITE_CALL_S,
            },
        )
        self._worker.send(start)

    def _end(self, status: str, counts: dict[str, int]) -> None:
        """The run's end, logged by the worker: the figures drawn since, the invocation run
        ended as ``status``; waited for while the worker keeps within its deadlines."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        if not self.failed:
            drawings_done()  # the figures observer, before this one, waited for them already
            for trial_id, folder in self._drawing.items():
                worker.send(FolderDrawn(trial_id, folder))
        self._drawing = {}
        worker.send(RunEnd(counts, status))
        while not self._done.wait(max(0.0, worker.time_left())):
            if worker.time_left() <= 0:
                worker.close()
                self._fail(
                    "the MLflow worker went past its deadline without a word; it was stopped,"
                    " and nothing more is recorded to MLflow in this run"
                )
                return
        if self._outcome is None:  # it died
            worker.close()
            return
        tracking_worker.release(worker)
        outcome = self._outcome
        self.experiment_id = outcome.experiment_id
        self.trial_run_ids = outcome.trial_run_ids
        self.repaired, self.killed = outcome.repaired, outcome.killed
        self.log_batches = outcome.log_batches
        if outcome.connected and not self.failed and self._suite is not None:
            experiment = experiment_name(self._suite, self._output, self.settings.experiment)
            note_synced(self._output, self.uri, experiment)  # every finished trial has its run

    # -- observer hooks -------------------------------------------------------------------------

    def suite_started(self, suite: Suite, output: Path, trials: list[Trial]) -> None:
        self._suite = suite
        self._output = Path(output)
        self._pending = {t.id for t in trials}
        self._drawing = {}
        self._handled = sys.exc_info()[1]
        name = experiment_name(suite, self._output, self.settings.experiment)
        if not trials and is_synced(self._output, self.uri, name):
            return  # nothing to run, nothing to repair: no worker, no mlflow
        self._guarded("opening the store", self._connect)

    def trial_started(self, trial: Trial) -> None:
        self._started_ms[trial.id] = int(time.time() * 1000)

    def trial_finished(self, trial: Trial, row: Row, outcome: TrialOutcome) -> None:
        # The results table has the row; MLflow is a view of it.
        if self._worker is not None:
            self._guarded(f"recording {trial.label()}", lambda: self._send(trial, row, outcome))

    def _send(self, trial: Trial, row: Row, outcome: TrialOutcome) -> None:
        assert self._worker is not None
        folder = trial_folder(self._output, row["trial_id"])
        drawn = figures_ready(folder, timeout=0)
        weights = None
        if self.settings.log_model and outcome.model is not None:
            weights = state_bytes(outcome.model.state_dict())
        started = self._started_ms.pop(trial.id, int(time.time() * 1000))
        self._worker.send(
            TrialDone(
                dict(row),
                dict(outcome.curves),
                label=trial.label(),
                started_ms=started,
                finished_ms=int(time.time() * 1000),
                traceback=outcome.traceback,
                weights=weights,
                folder=folder if drawn else None,
            )
        )
        if not drawn:  # its figures are being drawn beside the run: logged once they are
            self._drawing[row["trial_id"]] = folder
        for trial_id, waiting in list(self._drawing.items()):  # those drawn since
            if trial_id != row["trial_id"] and figures_ready(waiting, timeout=0):
                self._worker.send(FolderDrawn(trial_id, self._drawing.pop(trial_id)))

    def suite_finished(self, run: SuiteRun) -> None:
        # Heard as the run ends, also on its way out with an error (a full disk, an executor
        # that broke): the invocation run is then FAILED. A suite that ran to its end is
        # FINISHED (its failed trials are FAILED runs of their own); one stopped by Ctrl-C or
        # SIGTERM is KILLED.
        failing = sys.exc_info()[1]
        failed = failing not in (None, self._handled) and not isinstance(failing, KeyboardInterrupt)
        status = "KILLED" if run.interrupted else "FAILED" if failed else "FINISHED"
        self._end(status, run.counts)

    def interrupted(self) -> None:
        """End the invocation run as KILLED (the suite was stopped before it finished)."""
        self._end("KILLED", {})

    def __enter__(self) -> MlflowTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.interrupted()
