"""What the MLflow worker does with a run's messages (``Recorder``): the experiment and the
invocation run, a run per trial, the repair of what a killed run left, every call bounded.

It runs in the worker process of ``tracking_worker``, and it is the only code of aebench that
calls the store during a run. MLflow never stops or stalls the run: each whole call has a
deadline (``tracking_store.call_deadline``) told to the run first (``beat``), a busy store is
waited for a bounded time, and the first failure, whatever it is, is one line for the run to show
(``failed``), after which this run's messages are only acknowledged: the table has every trial,
and the next run repairs the store.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aebench.contract.columns import COLUMNS_FILE
from aebench.observers import tracking_store
from aebench.observers.deadlines import Deadlined
from aebench.observers.tracking_messages import FolderDrawn, Outcome, RunEnd, RunStart, TrialDone
from aebench.observers.tracking_runs import (
    CURVE_PREFIX,
    EXPERIMENT_KIND,
    RUN_STATUS,
    aggregate_metrics,
    batches,
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
    why_it_failed,
)
from aebench.plugins.listing import vocabulary_of
from aebench.results.paths import sqlite_file
from aebench.results.rows import finite, is_missing
from aebench.results.table import read_results
from aebench.results.trials import CONFIG, WEIGHTS, read_curves, trial_folder

if TYPE_CHECKING:
    from mlflow import MlflowClient

REPORT_FILES = ("results.csv", "report.html", "report.md")  # the invocation run's artifacts


class Recorder:
    """One run's records in the store, from the messages the run sends (``begin``, ``hear``)."""

    def __init__(self, start: RunStart, tell: Callable[[tuple[Any, ...]], None]) -> None:
        self.start = start
        self.uri = start.uri
        self.tell = tell
        self.client: MlflowClient | None = None
        self.failed = False
        self.experiment_id = ""
        self.parent_run_id = ""
        self.trial_run_ids: dict[str, str] = {}
        self.repaired: list[str] = []
        self.killed: list[str] = []
        self.log_batches: list[int] = []  # each call's metrics, params and tags together
        self._folders: dict[str, Path] = {}  # trial id -> its folder, figures still being drawn
        self._aggregates: tuple[object, dict[str, float]] | None = None  # (of what, the values)
        self._headlines: list[str] = []
        self._commit: str | None = None

    # -- calls to the store ---------------------------------------------------------------------

    def _guarded(self, what: str, action: Callable[[], object]) -> None:
        """``action()``, MLflow's HTTP calls bounded; nothing once the store has failed. Its first
        failure is one line for the run to show, with its traceback for the run's log."""
        if self.failed:
            return
        try:
            with bounded_http():
                action()
        except Exception as exc:
            self.failed = True
            if isinstance(exc, BrokenStore):  # says what to do itself
                line = f"{exc}; this run is not recorded to MLflow"
            else:
                line = (
                    f"MLflow at {shown_uri(self.uri)} failed {what}: {why_it_failed(exc)};"
                    " nothing more is recorded to MLflow in this run"
                )
            self.tell(("failed", line, f"MLflow failed {what}:\n{traceback.format_exc()}"))

    def _deadline(self, method: str, args: tuple[Any, ...], *, local: bool) -> float:
        """A call's deadline, told to the run before the call: it waits for the worker that long."""
        seconds = call_deadline(method, args, local=local)
        self.tell(("beat", seconds + busy_wait()))
        return seconds

    def _connect(self) -> MlflowClient:
        """The client, on a store that is complete (a new SQLite one is made all or nothing),
        each of its calls bounded as a whole and a busy store's retried (``deadlines``)."""
        if self.client is None:
            database = sqlite_file(self.uri)
            if database is not None:
                self.tell(("beat", busy_wait() + tracking_store.SQLITE_CALL_S))
                busy = lambda: self.tell(("busy",))  # noqa: E731
                open_sqlite(database, database.parent / ARTIFACTS, on_busy=busy)
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=self.uri)
            local = database is not None

            def deadline(method: str, args: tuple[Any, ...]) -> float:
                return self._deadline(method, args, local=local)

            bounded = Deadlined(client, deadline, is_busy, busy_wait, lambda: self.tell(("busy",)))
            self.client = bounded  # type: ignore[assignment]  # every method, with a deadline
        return self.client

    def _experiment(self) -> str:
        """The run's experiment, created (or restored) and tagged as aebench's."""
        client, name = self._connect(), self.start.experiment
        tags = {
            **EXPERIMENT_KIND,
            "aebench.suite": self.start.suite_name,
            "aebench.output": str(self.start.output),
        }
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
    ) -> None:
        """Everything in as few calls as MLflow's per-call limits allow (``batches``)."""
        from mlflow.entities import Param

        assert self.client is not None
        param_items = [Param(k, v) for k, v in (params or {}).items()]
        for m, p, t in batches(list(metrics), param_items, []):
            self.log_batches.append(len(m) + len(p) + len(t))
            self.client.log_batch(run_id, metrics=m, params=p, tags=t, synchronous=True)

    def _invocation(self) -> str:
        """The experiment and the invocation run, made when the first trial finishes."""
        if self.parent_run_id:
            return self.parent_run_id
        start, client = self.start, self._connect()
        self.experiment_id = self._experiment()
        tags = {
            "aebench.suite": start.suite_name,
            "aebench.suite_file": start.suite_path,
            "aebench.output": str(start.output),
            "aebench.trials": str(start.trials),
        }
        if self._commit:
            tags["mlflow.source.git.commit"] = self._commit
        run = client.create_run(
            self.experiment_id,
            start_time=start.started_ms,
            tags=tags,
            run_name=f"{start.suite_name} {time.strftime('%Y-%m-%d %H:%M')}",
        )
        self.parent_run_id = run.info.run_id
        if Path(start.suite_path).is_file():
            client.log_artifact(self.parent_run_id, start.suite_path)
        return self.parent_run_id

    def _record(self, trial: TrialDone, tags: Mapping[str, str] | None = None) -> str:
        """A trial's run, ended: its row's parameters, tags and metrics, its curves, the files of
        its folder (figures, configuration) once drawn, a failure's traceback, its weights."""
        from mlflow.entities import Metric

        invocation = self._invocation()
        assert self.client is not None
        row, now = trial.row, trial.finished_ms
        run = self.client.create_run(
            self.experiment_id,
            start_time=trial.started_ms,
            tags={
                "aebench.invocation": invocation,
                **trial_tags(row, self._commit),
                **(tags or {}),
            },
            run_name=f"{trial.label} {row['trial_id'][:8]}",
        )
        run_id = run.info.run_id
        metrics = [
            Metric(CURVE_PREFIX + name, value, now, epoch)
            for name, values in trial.curves.items()
            for epoch, raw in enumerate(values, start=1)
            if (value := finite(raw)) is not None
        ]
        final = trial_metrics(row)
        final |= headline_metrics(final, self._headlines)
        metrics += [Metric(k, v, now, 0) for k, v in final.items()]
        self._log_batch(run_id, metrics, params=trial_params(row))
        if trial.folder is not None:
            self._log_folder(run_id, trial.folder)
        if trial.traceback:
            self.client.log_text(run_id, trial.traceback, "traceback.txt")
        if trial.weights is not None:
            log_weights(self.client, run_id, trial.weights)
        status = RUN_STATUS.get(row["status"], "FAILED")
        self.client.set_terminated(run_id, status=status, end_time=trial.finished_ms)
        return run_id

    def _log_folder(self, run_id: str, folder: Path) -> None:
        """A trial folder's figures and configuration, as its run's artifacts."""
        assert self.client is not None
        for path in sorted(folder.glob("*.png")) + sorted(folder.glob("*.npz")):
            self.client.log_artifact(run_id, str(path), artifact_path="figures")
        if (folder / CONFIG).is_file():
            self.client.log_artifact(run_id, str(folder / CONFIG))

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
        output = self.start.output
        table = read_results(output)
        if table.empty:  # no trial finished here: no run was made, none is missing
            return
        client = self._connect()
        experiment = client.get_experiment_by_name(self.start.experiment)
        runs = [] if experiment is None else self._runs(experiment.experiment_id)
        ours = {r.info.run_id for r in runs if r.data.tags.get("aebench.output") == str(output)}
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
            if not trial_id or trial_id in recorded or trial_id in self.start.pending:
                continue
            folder = trial_folder(output, trial_id)
            weights = folder / WEIGHTS
            trial = TrialDone(
                row,
                read_curves(folder),
                label=f"{row['dataset']}/{row['model']}/{row['regularizer']} seed={row['seed']}",
                started_ms=(now := int(time.time() * 1000)),  # when it ran is not kept
                finished_ms=now,
                weights=weights.read_bytes()
                if self.start.log_model and weights.is_file()
                else None,
                folder=folder,
            )
            self._record(trial, tags={"aebench.repaired": "true"})
            self.repaired.append(trial_id)

    # -- the run's messages ---------------------------------------------------------------------

    def begin(self) -> None:
        """The run's start: its environment, the repair, and the store opened while the first
        trial trains."""
        self._settle()
        self._guarded("opening the store", self._open)

    def _settle(self) -> None:
        """The run's folder, environment and bounds: a worker kept from an earlier run has that
        run's."""
        start = self.start
        with contextlib.suppress(OSError):  # gone: every path the run sends is absolute but one
            os.chdir(start.cwd)
        os.environ.clear()
        os.environ.update(start.env)
        for name, value in start.limits.items():
            setattr(tracking_store, name, value)

    def _open(self) -> None:
        start = self.start
        self._commit = git_commit(Path(start.suite_path).resolve().parent) or git_commit()
        # Each group's primary metric, as the run's metrics declare it (saved beside the table).
        self._headlines = list(vocabulary_of(start.output).headlines().values())
        self._repair()
        if start.pending:  # mlflow imported, the store made, before the first trial ends
            self._connect()
            import scipy.stats  # noqa: F401  # the aggregates' intervals, due as the run ends

    def hear(self, message: object) -> None:
        if isinstance(message, TrialDone):
            self._guarded(f"recording {message.label}", lambda: self._trial(message))
        elif isinstance(message, FolderDrawn):
            self._guarded("logging the figures", lambda: self._drawn(message))
        elif isinstance(message, RunEnd):
            self._guarded("ending the invocation run", lambda: self._finish(message))

    def _trial(self, trial: TrialDone) -> None:
        trial_id = trial.row["trial_id"]
        self.trial_run_ids[trial_id] = self._record(trial)
        if trial.folder is None:
            self._folders[trial_id] = trial_folder(self.start.output, trial_id)
        if self.start.pending and self.start.pending <= self.trial_run_ids.keys():
            # The last trial's row is in the table: the aggregates, while the run writes its
            # report (the run's end waits for them otherwise).
            self._aggregates = self._aggregate()

    def _aggregate(self) -> tuple[object, dict[str, float]]:
        """The invocation run's means over seeds (``aggregate_metrics``), with what they are of
        (``_of``)."""
        table = read_results(self.start.output)
        return self._of(table), aggregate_metrics(table, vocabulary_of(self.start.output))

    def _of(self, table: Any) -> object:
        """What the aggregates depend on: the table's trials, the declarations' file stamp."""
        declared = self.start.output / COLUMNS_FILE
        stamp = declared.stat().st_mtime_ns if declared.is_file() else None
        return frozenset(table["trial_id"]) if "trial_id" in table else frozenset(), stamp

    def _final_aggregates(self) -> dict[str, float]:
        """Those of the run's end: computed as its last trial ended, if nothing changed since."""
        if self._aggregates is not None:
            of, values = self._aggregates
            if self._of(read_results(self.start.output)) == of:
                return values
        return self._aggregate()[1]

    def _drawn(self, drawn: FolderDrawn) -> None:
        if self._folders.pop(drawn.trial_id, None) is not None:
            self._log_folder(self.trial_run_ids[drawn.trial_id], drawn.folder)

    def _finish(self, end: RunEnd) -> None:
        if not self.parent_run_id:  # no trial finished, none repaired: nothing to record
            return
        from mlflow.entities import Metric

        assert self.client is not None
        output = self.start.output
        counts = {f"trials_{status}": float(n) for status, n in end.counts.items()}
        if self.repaired:
            counts["runs_repaired"] = float(len(self.repaired))
        # Every mean over seeds with its interval and n (the table holds the runs before this one
        # too: the aggregates are of the whole results folder).
        counts |= self._final_aggregates()
        now = int(time.time() * 1000)
        self._log_batch(self.parent_run_id, [Metric(k, v, now, 0) for k, v in counts.items()])
        for trial_id, folder in self._folders.items():  # drawn by now, or never will be
            self._log_folder(self.trial_run_ids[trial_id], folder)
        for name in REPORT_FILES:
            if (output / name).is_file():
                self.client.log_artifact(self.parent_run_id, str(output / name))
        self.client.set_terminated(self.parent_run_id, status=end.status)

    def outcome(self) -> Outcome:
        return Outcome(
            experiment_id=self.experiment_id,
            trial_run_ids=dict(self.trial_run_ids),
            repaired=list(self.repaired),
            killed=list(self.killed),
            failed=self.failed,
            connected=self.client is not None and not self.failed,
            log_batches=list(self.log_batches),
        )
