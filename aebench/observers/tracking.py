"""MLflow: an experiment per results folder, a run per trial, an invocation run per ``aebench run``.

The results table stays the source of truth; MLflow is a view of it for comparing runs in a UI.
Trial runs are not nested under their invocation: MLflow's runs table shows nested runs collapsed
under their parent and plots only the rows it shows, so each trial run is a top-level run tagged
``aebench.invocation`` (the invocation run's id) instead. The invocation run (the suite file, the
counts, the results table and the report) is created with the first finished trial: an
``aebench run`` that has nothing to do leaves no empty run behind. MLflow never stops or stalls a
run: the first failure of the store ends tracking for the run with one warning line, and the next
run repairs what is missing (``MlflowTracker``; ``tracking_store`` bounds the calls, and
``tracking_runs`` says what a trial's run holds). mlflow is imported only once a suite starts, so
``aebench --help`` and ``aebench list`` stay fast.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aebench.observers.deadlines import Deadlined
from aebench.observers.tracking_runs import (
    CURVE_PREFIX,
    EXPERIMENT_KIND,
    RUN_STATUS,
    aggregate_metrics,
    batches,
    experiment_name,
    git_commit,
    headline_metrics,
    log_weights,
    trial_metrics,
    trial_params,
    trial_tags,
)
from aebench.observers.tracking_store import (
    ARTIFACTS,
    BrokenStore,
    bounded_http,
    busy_wait,
    call_deadline,
    is_busy,
    open_sqlite,
    shown_uri,
    tracking_uri,
    why_it_failed,
)
from aebench.observers.tracking_synced import is_synced, note_synced
from aebench.plugins.listing import vocabulary_of
from aebench.results.paths import sqlite_file
from aebench.results.rows import finite, is_missing
from aebench.results.table import read_results
from aebench.results.trials import CONFIG, WEIGHTS, read_curves, state_bytes, trial_folder
from aebench.run.observing import Row, SuiteObserver, SuiteRun, TrialOutcome
from aebench.run.suite import Suite, TrackingSection, Trial
from aebench.views.background import drawings_done, figures_ready

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger("aebench")


class MlflowTracker(SuiteObserver):
    """Records a suite run to MLflow as it goes, and repairs what a killed run left.

    Put it after ``TrialFigures`` in the observer list: each trial's figure folder is logged as
    its run's artifacts. MLflow never stops or stalls the suite: each whole call has a deadline
    (``tracking_store.call_deadline``), and the first failure is one warning line, after which this
    run leaves the store alone (a trial each waiting for a dead server would add up). At the start
    the runs a killed run left RUNNING are marked KILLED, and the finished trials of the results
    table that have no run get one, from their row and folder.
    """

    event_deadline_s = None  # no deadline per event (a repair makes many calls): one per call

    def __init__(self, settings: TrackingSection | None = None) -> None:
        self.settings = settings or TrackingSection()
        self.uri = tracking_uri(self.settings.uri)
        self.client: MlflowClient | None = None
        self.failed = False  # the store failed once: not called again in this run
        self.experiment_id = ""
        self.parent_run_id = ""  # the invocation run, once a trial finished
        self.trial_run_ids: dict[str, str] = {}  # trial id -> run id, this invocation
        self.repaired: list[str] = []  # trial ids given the run a killed run did not log
        self.killed: list[str] = []  # run ids a killed run left RUNNING, now KILLED
        self._suite: Suite | None = None
        self._output = Path(".")
        self._pending: set[str] = set()  # trials this invocation runs: their runs come with them
        self._folders_later: list[tuple[str, Path]] = []  # (run, trial folder) awaiting figures
        self._trials = 0
        self._headlines: list[str] = []
        self._commit: str | None = None
        self._started_ms: dict[str, int] = {}
        self._suite_started_ms = 0
        self._told_busy = False
        self._handled: BaseException | None = None  # one the caller handles as the run starts

    # -- calls to the store ---------------------------------------------------------------------

    def _guarded(self, what: str, action: Callable[[], object]) -> None:
        """``action()``, with MLflow's HTTP calls bounded; nothing once the store has failed.

        Its first failure, whatever it is, is one line on stderr (the traceback goes to the log)
        and the end of tracking for this run: the table has every trial, and the next run
        repairs the store."""
        if self.failed:
            return
        try:
            with bounded_http():
                action()
        except Exception as exc:
            self.failed = True
            if log.hasHandlers():  # aebench.log; never Python's last resort, which is stderr
                log.error("MLflow failed %s:\n%s", what, traceback.format_exc())
            if isinstance(exc, BrokenStore):  # says what to do itself
                line = f"{exc}; this run is not recorded to MLflow"
            else:
                line = (
                    f"MLflow at {shown_uri(self.uri)} failed {what}: {why_it_failed(exc)};"
                    " nothing more is recorded to MLflow in this run"
                )
            print(
                f"aebench: {line} (the results table has every trial; the next run adds their"
                " MLflow runs)",
                file=sys.stderr,
                flush=True,
            )

    def _busy(self) -> None:
        """One line, the first time the store is found locked by another process."""
        if not self._told_busy:
            self._told_busy = True
            where = f"aebench: MLflow at {shown_uri(self.uri)} is busy (locked by another process)"
            print(f"{where}; retrying for up to {busy_wait():.0f} s", file=sys.stderr, flush=True)

    def _connect(self) -> MlflowClient:
        """The client, on a store that is complete (a new SQLite one is made all or nothing),
        each of its calls bounded as a whole and a busy store's retried (``deadlines``)."""
        from mlflow import MlflowClient

        if self.client is None:
            database = sqlite_file(self.uri)
            if database is not None:
                open_sqlite(database, database.parent / ARTIFACTS, on_busy=self._busy)
            client = MlflowClient(tracking_uri=self.uri)
            deadline = functools.partial(call_deadline, local=database is not None)
            bounded = Deadlined(client, deadline, is_busy, busy_wait, self._busy)
            self.client = bounded  # type: ignore[assignment]  # every method, with a deadline
        return self.client

    def _experiment(self, name: str, tags: Mapping[str, str]) -> str:
        """The experiment called ``name``, created (or restored) and tagged as aebench's."""
        client = self._connect()
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            database = sqlite_file(self.uri)
            location = None
            if database is not None:  # artifacts beside the database, not in ./mlruns
                folder = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)  # a name may hold '/' and ' '
                location = (database.parent / ARTIFACTS / folder).resolve().as_uri()
            return client.create_experiment(name, artifact_location=location, tags=tags)
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        for key, value in tags.items():  # also an experiment made by an older aebench
            if experiment.tags.get(key) != value:
                client.set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id

    def _log_batch(
        self,
        run_id: str,
        metrics: Sequence[Any] = (),
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Everything in as few calls as MLflow's per-call limits allow (``batches``)."""
        from mlflow.entities import Param, RunTag

        assert self.client is not None
        param_items = [Param(k, v) for k, v in (params or {}).items()]
        tag_items = [RunTag(k, v) for k, v in (tags or {}).items()]
        for m, p, t in batches(list(metrics), param_items, tag_items):
            self.client.log_batch(run_id, metrics=m, params=p, tags=t, synchronous=True)

    def _name(self) -> str:
        assert self._suite is not None, "suite_started comes first"
        return experiment_name(self._suite, self._output, self.settings.experiment)

    def _invocation(self) -> str:
        """The experiment and the invocation run, made when the first trial finishes."""
        if self.parent_run_id:
            return self.parent_run_id
        suite = self._suite
        assert suite is not None, "suite_started comes first"
        client = self._connect()
        output = str(self._output.resolve())
        experiment_tags = {**EXPERIMENT_KIND, "aebench.suite": suite.name, "aebench.output": output}
        self.experiment_id = self._experiment(self._name(), experiment_tags)
        tags = {
            "aebench.suite": suite.name,
            "aebench.suite_file": str(suite.path),
            "aebench.output": output,
            "aebench.trials": str(self._trials),
        }
        if self._commit:
            tags["mlflow.source.git.commit"] = self._commit
        run = client.create_run(
            self.experiment_id,
            start_time=self._suite_started_ms,
            tags=tags,
            run_name=f"{suite.name} {time.strftime('%Y-%m-%d %H:%M')}",
        )
        self.parent_run_id = run.info.run_id
        if Path(suite.path).is_file():
            client.log_artifact(self.parent_run_id, str(suite.path))
        return self.parent_run_id

    def _record(
        self,
        row: Row,
        curves: Mapping[str, Sequence[Any]],
        *,
        run_name: str,
        started_ms: int,
        tags: Mapping[str, str] | None = None,
        traceback_text: str = "",
    ) -> str:
        """A new run of a trial, still RUNNING: its row's parameters, tags and metrics, its
        curves, the files of its folder (figures, configuration), a failure's traceback."""
        from mlflow.entities import Metric

        invocation = self._invocation()
        assert self.client is not None
        now = int(time.time() * 1000)
        run = self.client.create_run(
            self.experiment_id,
            start_time=started_ms,
            tags={
                "aebench.invocation": invocation,
                **trial_tags(row, self._commit),
                **(tags or {}),
            },
            run_name=run_name,
        )
        run_id = run.info.run_id
        metrics = [
            Metric(CURVE_PREFIX + name, value, now, epoch)
            for name, values in curves.items()
            for epoch, raw in enumerate(values, start=1)
            if (value := finite(raw)) is not None
        ]
        final = trial_metrics(row)
        final |= headline_metrics(final, self._headlines)
        metrics += [Metric(k, v, now, 0) for k, v in final.items()]
        self._log_batch(run_id, metrics, params=trial_params(row))
        folder = trial_folder(self._output, row["trial_id"])
        if figures_ready(folder, timeout=0):
            self._log_folder(run_id, folder)
        else:  # its figures are being drawn beside the run: logged as the suite finishes
            self._folders_later.append((run_id, folder))
        if traceback_text:
            self.client.log_text(run_id, traceback_text, "traceback.txt")
        return run_id

    def _log_folder(self, run_id: str, folder: Path) -> None:
        """A trial folder's figures and configuration, as its run's artifacts."""
        assert self.client is not None
        for path in sorted(folder.glob("*.png")) + sorted(folder.glob("*.npz")):
            self.client.log_artifact(run_id, str(path), artifact_path="figures")
        if (folder / CONFIG).is_file():
            self.client.log_artifact(run_id, str(folder / CONFIG))

    def _end(self, run_id: str, row: Row) -> None:
        assert self.client is not None
        self.client.set_terminated(run_id, status=RUN_STATUS.get(row["status"], "FAILED"))

    # -- repairing what a killed run left -------------------------------------------------------

    def _runs(self, experiment_id: str) -> list[Any]:
        """Every run of the experiment, deleted ones too (a run the user deleted stays so)."""
        from mlflow.entities import ViewType

        assert self.client is not None
        runs: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs(
                [experiment_id], run_view_type=ViewType.ALL, max_results=1000, page_token=token
            )
            runs += page
            token = page.token
            if not token:
                return runs

    def _repair(self) -> None:
        """Runs a killed run (``kill -9``, a lost machine) left RUNNING are marked KILLED, and
        the trials of this folder's results table without a finished run get one, made from the
        row and the trial folder (tagged ``aebench.repaired``). Trials this run is about to run
        get theirs as they finish. Only runs of this results folder are touched: invocation runs
        tagged with it, and the trial runs that name one of them."""
        table = read_results(self._output)
        if table.empty:  # no trial finished here: no run was made, none is missing
            return
        client = self._connect()
        experiment = client.get_experiment_by_name(self._name())
        runs = [] if experiment is None else self._runs(experiment.experiment_id)
        output = str(self._output.resolve())
        ours = {r.info.run_id for r in runs if r.data.tags.get("aebench.output") == output}
        recorded: set[str] = set()
        for run in runs:
            tags = run.data.tags
            # Trial runs name their invocation; an older aebench nested them under it.
            invocation = tags.get("aebench.invocation") or tags.get("mlflow.parentRunId")
            if run.info.run_id not in ours and invocation not in ours:
                continue  # another folder's run in a shared experiment
            if run.info.status == "RUNNING" and run.info.lifecycle_stage == "active":
                client.set_terminated(run.info.run_id, status="KILLED")
                self.killed.append(run.info.run_id)
            elif "aebench.trial_id" in tags and run.info.status != "KILLED":
                recorded.add(tags["aebench.trial_id"])
        for record in table.to_dict("records"):
            row = {k: v for k, v in record.items() if not is_missing(v)}
            trial_id = row.get("trial_id")
            if not trial_id or trial_id in recorded or trial_id in self._pending:
                continue
            label = f"{row['dataset']}/{row['model']}/{row['regularizer']} seed={row['seed']}"
            curves = read_curves(trial_folder(self._output, trial_id))
            run_id = self._record(
                row,
                curves,
                run_name=f"{label} {trial_id[:8]}",
                started_ms=int(time.time() * 1000),
                tags={"aebench.repaired": "true"},
            )
            weights = trial_folder(self._output, trial_id) / WEIGHTS
            if self.settings.log_model and weights.is_file():
                log_weights(self.client, run_id, weights.read_bytes())
            self._end(run_id, row)
            self.repaired.append(trial_id)

    # -- observer hooks -------------------------------------------------------------------------

    def suite_started(self, suite: Suite, output: Path, trials: list[Trial]) -> None:
        self._suite = suite
        self._output = Path(output)
        self._trials = len(trials)
        self._pending = {t.id for t in trials}
        self._folders_later = []
        self._suite_started_ms = int(time.time() * 1000)
        self._handled = sys.exc_info()[1]
        if not trials and is_synced(self._output, self.uri, self._name()):
            return  # nothing to run, nothing to repair: mlflow is not even imported
        self._commit = git_commit(Path(suite.path).resolve().parent) or git_commit()
        # Each group's primary metric, as the run's metrics declare it (saved beside the table).
        self._headlines = list(vocabulary_of(self._output).headlines().values())
        self._guarded("opening the store", self._repair)

    def trial_started(self, trial: Trial) -> None:
        self._started_ms[trial.id] = int(time.time() * 1000)

    def trial_finished(self, trial: Trial, row: Row, outcome: TrialOutcome) -> None:
        # The results table has the row; MLflow is a view of it.
        self._guarded(f"recording {trial.label()}", lambda: self._record_trial(trial, row, outcome))

    def _record_trial(self, trial: Trial, row: Row, outcome: TrialOutcome) -> None:
        run_id = self._record(
            row,
            outcome.curves,
            run_name=f"{trial.label()} {trial.id[:8]}",
            started_ms=self._started_ms.pop(trial.id, int(time.time() * 1000)),
            traceback_text=outcome.traceback,
        )
        self.trial_run_ids[trial.id] = run_id
        if self.settings.log_model and outcome.model is not None:
            log_weights(self.client, run_id, state_bytes(outcome.model.state_dict()))
        self._end(run_id, row)

    def suite_finished(self, run: SuiteRun) -> None:
        # Heard as the run ends, also on its way out with an error (a full disk, an executor
        # that broke): the invocation run is then FAILED.
        failing = sys.exc_info()[1]
        failed = failing not in (None, self._handled) and not isinstance(failing, KeyboardInterrupt)
        self._guarded("ending the invocation run", lambda: self._finish(run, failed))
        self.parent_run_id = ""
        if self.client is not None and not self.failed and self._suite is not None:
            note_synced(run.output, self.uri, self._name())  # every finished trial has its run

    def _finish(self, run: SuiteRun, failed: bool = False) -> None:
        if not self.parent_run_id:  # no trial finished, none repaired: nothing to record
            return
        from mlflow.entities import Metric

        assert self.client is not None
        counts = {f"trials_{status}": float(n) for status, n in run.counts.items()}
        if self.repaired:
            counts["runs_repaired"] = float(len(self.repaired))
        # Every mean over seeds with its interval and n (the table holds the runs before this one
        # too: the aggregates are of the whole results folder).
        counts |= aggregate_metrics(read_results(run.output), vocabulary_of(run.output))
        now = int(time.time() * 1000)
        self._log_batch(self.parent_run_id, [Metric(k, v, now, 0) for k, v in counts.items()])
        drawings_done()
        for run_id, folder in self._folders_later:
            self._log_folder(run_id, folder)
        for name in ("results.csv", "report.html", "report.md"):
            if (run.output / name).is_file():
                self.client.log_artifact(self.parent_run_id, str(run.output / name))
        # A suite that ran to its end is FINISHED (its failed trials are FAILED runs of their
        # own); one stopped by Ctrl-C or SIGTERM is KILLED, one stopped by an error FAILED.
        status = "KILLED" if run.interrupted else "FAILED" if failed else "FINISHED"
        self.client.set_terminated(self.parent_run_id, status=status)

    def interrupted(self) -> None:
        """End the invocation run as KILLED (the suite was stopped before it finished)."""
        if self.client is not None and self.parent_run_id:
            client, run_id = self.client, self.parent_run_id
            self._guarded(
                "ending the invocation run", lambda: client.set_terminated(run_id, "KILLED")
            )
            self.parent_run_id = ""

    def __enter__(self) -> MlflowTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.interrupted()
