"""MLflow: an experiment per results folder, a run per trial, an invocation run per ``aebench run``.

The results table stays the source of truth; MLflow is a view of it for comparing runs in a UI.
Trial runs are not nested under their invocation: MLflow's runs table shows nested runs collapsed
under their parent and plots only the rows it shows, so each trial run is a top-level run tagged
``aebench.invocation`` (the invocation run's id) instead. The invocation run (the suite file, the
counts, the results table and the report) is created with the first finished trial: an
``aebench run`` that has nothing to do leaves no empty run behind. MLflow never stops or stalls a
run: the first failure of the store ends tracking for the run with one warning line, and the next
run repairs what is missing (``MlflowTracker``; ``aebench.tracking_store`` bounds the calls).
mlflow is imported only once a suite starts, so ``aebench --help`` and ``aebench list`` stay fast.
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import sys
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aebench.contract.columns import is_metric_column, is_param_column
from aebench.observers.tracking_store import HTTP_LIMITS, BrokenStore, bounded_http, open_sqlite
from aebench.plugins.listing import vocabulary_of
from aebench.results.paths import sqlite_file, writable_place_problem
from aebench.results.table import read_results
from aebench.results.trials import CONFIG, WEIGHTS, read_curves, state_bytes, trial_folder
from aebench.run.observing import Row, SuiteObserver, SuiteRun, TrialOutcome
from aebench.run.suite import Suite, TrackingSection, Trial

if TYPE_CHECKING:
    from mlflow import MlflowClient

DEFAULT_STORE = Path("results") / "mlflow.db"
ARTIFACTS = "mlartifacts"  # beside a SQLite store: never ./mlruns, which MLflow takes for a store
CURVE_PREFIX = "train/"  # per-epoch curves: train/loss, train/model_loss, train/penalty

# MLflow's limits on one log_batch call.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_VALUE_LENGTH = 6000

# MLflow 3's UI opens an experiment on its GenAI pages unless the experiment's kind says model
# training. A UI with a "GenAI / Model training" switch (3.17) follows the switch, not the tag,
# and the switch starts on GenAI: a link sets it with UI_WORKFLOW.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
UI_WORKFLOW = "workflowType=machine_learning"  # a URL parameter: whatever the browser chose before
HEADLINE_PREFIX = "headline/"  # copies of the headline metrics: the UI charts them in one section

RUN_STATUS = {"ok": "FINISHED", "skipped": "FINISHED", "diverged": "FAILED", "failed": "FAILED"}

log = logging.getLogger("aebench")


class TrackingError(ValueError):
    """A tracking store aebench cannot use; ``str(error)`` is the one line to show."""


def default_store(cwd: Path | None = None) -> Path:
    """``results/mlflow.db`` under the folder aebench runs in."""
    return (Path(cwd or Path.cwd()) / DEFAULT_STORE).resolve()


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def tracking_uri(configured: str | None = None) -> str:
    """The suite's ``[tracking] uri``, else ``$MLFLOW_TRACKING_URI``, else ``results/mlflow.db``.

    MLflow 3's file store (a bare path or ``file:``) is refused: SQLite or a server only.
    """
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or sqlite_uri(default_store())
    if "://" not in uri or uri.startswith("file:"):
        raise TrackingError(
            f"tracking uri {uri!r}: the file store is not supported; "
            "use sqlite:///path/to/mlflow.db or an http(s):// server"
        )
    database = sqlite_file(uri)
    if database is not None and (why := writable_place_problem(database)):
        raise TrackingError(f"tracking uri {uri!r}: {why}")
    return uri


def git_commit(folder: Path | None = None) -> str | None:
    """The commit checked out in ``folder`` (default: here), or None outside a git repository."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:  # numpy scalars from a parquet round trip
            value = float(value)
        except (TypeError, ValueError):
            return None
    value = float(value)
    return value if math.isfinite(value) else None


def _text(value: Any) -> str:
    return str(value)[:MAX_VALUE_LENGTH]


def _missing(value: Any) -> bool:
    """None or NaN: a cell of the results table that this row does not have."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _shown_uri(uri: str) -> str:
    """A tracking URI without the user name and password it may carry."""
    parts = urllib.parse.urlsplit(uri)
    if parts.hostname and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urllib.parse.urlunsplit(parts._replace(netloc=host))
    return uri


def _why(error: BaseException) -> str:
    """What went wrong, in a few words: MLflow wraps a refused or timed-out connection in a long
    message about retries."""
    messages = []
    cause: BaseException | None = error
    while cause is not None and len(messages) < 10:
        messages.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    text = " ".join(messages)
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        timeout = os.environ.get(
            "MLFLOW_HTTP_REQUEST_TIMEOUT", HTTP_LIMITS["MLFLOW_HTTP_REQUEST_TIMEOUT"]
        )
        return f"no answer within {timeout} s"
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return first if len(first) <= 300 else first[:297] + "..."


def _shown(folder: Path) -> str:
    """A folder as the user would type it: relative to here when below here."""
    try:
        return folder.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return folder.as_posix()


def experiment_name(suite: Suite, output: Path, configured: str | None = None) -> str:
    """One experiment per results folder: ``[tracking] experiment`` if set, else the suite's name
    for its own folder (``quick`` for ``results/quick``), else the name and the folder
    (``quick (results/new)``), so that another output never mixes with the suite's baseline."""
    if configured:
        return configured
    folder = Path(output).resolve()
    if folder == suite.output_dir().resolve():
        return suite.name
    return f"{suite.name} ({_shown(folder)})"


def trial_params(row: Row) -> dict[str, str]:
    """The trial's flattened configuration, named as the results table's columns."""
    return {k: _text(v) for k, v in row.items() if is_param_column(k)}


def trial_metrics(row: Row) -> dict[str, float]:
    """The row's final metrics: finite numbers only (NaN is 'not measured', not a value)."""
    out = {}
    for key, value in row.items():
        if is_metric_column(key) and (number := _finite(value)) is not None:
            out[key] = number
    return out


def headline_metrics(metrics: Mapping[str, float], headlines: Sequence[str]) -> dict[str, float]:
    """The row's headline metrics again, as ``headline/<column>``: the UI's chart view makes a
    section per prefix, so these form one section of one chart per group's primary metric."""
    return {HEADLINE_PREFIX + name: metrics[name] for name in headlines if name in metrics}


def trial_tags(row: Row, commit: str | None) -> dict[str, str]:
    tags = {
        "aebench.trial_id": row["trial_id"],
        "aebench.dataset": row["dataset"],
        "aebench.model": row["model"],
        "aebench.regularizer": row["regularizer"],
        "aebench.seed": row["seed"],
        "aebench.status": row["status"],
        "aebench.device": row.get("device", ""),
    }
    if row.get("reason"):
        tags["aebench.reason"] = row["reason"]
    for key, value in row.items():
        if key.startswith("version.") and value is not None:
            tags[f"aebench.{key}"] = value
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return {k: _text(v) for k, v in tags.items()}


class MlflowTracker(SuiteObserver):
    """Records a suite run to MLflow as it goes, and repairs what a killed run left.

    Put it after ``TrialFigures`` in the observer list: each trial's figure folder is logged as
    its run's artifacts. MLflow never stops or stalls the suite: calls are bounded
    (``tracking_store.HTTP_LIMITS``), and the first failure is one warning line, after which this
    run leaves the store alone (a trial each waiting for a dead server would add up). At the start
    the runs a killed run left RUNNING are marked KILLED, and the finished trials of the results
    table that have no run get one, from their row and folder.
    """

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
        self._trials = 0
        self._headlines: list[str] = []
        self._commit: str | None = None
        self._started_ms: dict[str, int] = {}
        self._suite_started_ms = 0

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
                    f"MLflow at {_shown_uri(self.uri)} failed {what}: {_why(exc)}; nothing more"
                    " is recorded to MLflow in this run"
                )
            print(
                f"aebench: {line} (the results table has every trial; the next run adds their"
                " MLflow runs)",
                file=sys.stderr,
                flush=True,
            )

    def _connect(self) -> MlflowClient:
        """The client, on a store that is complete: a new SQLite one is made all or nothing."""
        from mlflow import MlflowClient

        if self.client is None:
            database = sqlite_file(self.uri)
            if database is not None:
                open_sqlite(database, database.parent / ARTIFACTS)
            self.client = MlflowClient(tracking_uri=self.uri)
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
        """Everything in as few calls as MLflow's per-call limits allow."""
        from mlflow.entities import Param, RunTag

        assert self.client is not None
        param_items = [Param(k, v) for k, v in (params or {}).items()]
        tag_items = [RunTag(k, v) for k, v in (tags or {}).items()]
        for chunk in _chunks(param_items, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=chunk, synchronous=True)
        for chunk in _chunks(tag_items, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, tags=chunk, synchronous=True)
        for chunk in _chunks(list(metrics), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=chunk, synchronous=True)

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
            if (value := _finite(raw)) is not None
        ]
        final = trial_metrics(row)
        final |= headline_metrics(final, self._headlines)
        metrics += [Metric(k, v, now, 0) for k, v in final.items()]
        self._log_batch(run_id, metrics, params=trial_params(row))
        folder = trial_folder(self._output, row["trial_id"])
        for path in sorted(folder.glob("*.png")) + sorted(folder.glob("*.npz")):
            self.client.log_artifact(run_id, str(path), artifact_path="figures")
        if (folder / CONFIG).is_file():
            self.client.log_artifact(run_id, str(folder / CONFIG))
        if traceback_text:
            self.client.log_text(run_id, traceback_text, "traceback.txt")
        return run_id

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
            row = {k: v for k, v in record.items() if not _missing(v)}
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
                self._log_weights(run_id, weights.read_bytes())
            self._end(run_id, row)
            self.repaired.append(trial_id)

    # -- observer hooks -------------------------------------------------------------------------

    def suite_started(self, suite: Suite, output: Path, trials: list[Trial]) -> None:
        self._suite = suite
        self._output = Path(output)
        self._trials = len(trials)
        self._pending = {t.id for t in trials}
        self._suite_started_ms = int(time.time() * 1000)
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
            self._log_weights(run_id, state_bytes(outcome.model.state_dict()))
        self._end(run_id, row)

    def _log_weights(self, run_id: str, weights: bytes) -> None:
        """A ``state_dict``'s bytes as the run's ``model/state_dict.pt``."""
        import tempfile

        assert self.client is not None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "state_dict.pt"
            path.write_bytes(weights)
            self.client.log_artifact(run_id, str(path), artifact_path="model")

    def suite_finished(self, run: SuiteRun) -> None:
        self._guarded("ending the invocation run", lambda: self._finish(run))
        self.parent_run_id = ""

    def _finish(self, run: SuiteRun) -> None:
        from mlflow.entities import Metric

        if not self.parent_run_id:  # no trial finished, none repaired: nothing to record
            return
        assert self.client is not None
        counts = {f"trials_{status}": float(n) for status, n in run.counts.items()}
        if self.repaired:
            counts["runs_repaired"] = float(len(self.repaired))
        now = int(time.time() * 1000)
        self._log_batch(self.parent_run_id, [Metric(k, v, now, 0) for k, v in counts.items()])
        for name in ("results.csv", "report.html", "report.md"):
            if (run.output / name).is_file():
                self.client.log_artifact(self.parent_run_id, str(run.output / name))
        # A suite that ran to its end is FINISHED (its failed trials are FAILED runs of their
        # own); one stopped by Ctrl-C or SIGTERM is KILLED.
        status = "KILLED" if run.interrupted else "FINISHED"
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


# --- the MLflow UI ------------------------------------------------------------------------------

# The server's own output, but for errors: no line per request, no INFO lines, and none of the
# warnings its libraries address to MLflow's developers (a Starlette deprecation, say).
QUIET_UVICORN = "--no-access-log --log-level warning"
# The server's job runner serves GenAI features aebench does not use; it costs seconds.
SERVER_DEFAULTS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
# Its startup notice about serving other hosts: `aebench ui` serves 127.0.0.1 only.
SERVER_NOTICE = re.compile(r"\[MLflow\] Security middleware enabled with default settings")
LISTED_EXPERIMENTS = 10  # links printed by `aebench ui`, newest first


def ui_command(database: Path, port: int) -> list[str]:
    """``mlflow server`` on a SQLite store, on 127.0.0.1 only, quiet."""
    database = Path(database).resolve()
    uri = sqlite_uri(database)
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--registry-store-uri",  # given, so that the server does not say it chose it
        uri,
        "--default-artifact-root",
        (database.parent / ARTIFACTS).as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",  # one person browsing: one worker starts fastest
        "1",
        "--uvicorn-opts",
        QUIET_UVICORN,
    ]


def runs_url(base: str, experiment_id: str) -> str:
    """The experiment's runs table, on the UI's machine-learning pages."""
    return f"{base}/#/experiments/{experiment_id}/runs?{UI_WORKFLOW}"


def _serving(base: str, server: subprocess.Popen[str], timeout_s: float = 300) -> bool:
    """Wait until the server answers (True) or exits (False)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while server.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as reply:
                if reply.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return server.poll() is None


def aebench_experiments(base: str) -> list[tuple[str, str]]:
    """(name, id) of the experiments aebench wrote, newest first; none when the server says no."""
    import json
    import urllib.request

    body = json.dumps({"max_results": 1000, "order_by": ["last_update_time DESC"]}).encode()
    request = urllib.request.Request(
        f"{base}/ajax-api/2.0/mlflow/experiments/search",
        body,
        {"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            experiments = json.load(reply).get("experiments", [])
    except (OSError, ValueError):
        return []
    out = []
    for experiment in experiments:
        tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
        if "aebench.suite" in tags:
            out.append((experiment["name"], experiment["experiment_id"]))
    return out


def _forward(stream: IO[str]) -> None:
    """The server's output to stderr, but for its startup notice."""
    for line in stream:
        if not SERVER_NOTICE.match(line):
            sys.stderr.write(line)
            sys.stderr.flush()


def serve_ui(database: Path, port: int) -> int:
    """Run the MLflow UI until Ctrl-C (or SIGTERM); returns the server's exit status.

    Prints the UI's address once it answers, and a link to each aebench experiment's runs.
    """
    import signal
    import threading

    if not Path(database).is_file():
        raise TrackingError(f"{database}: no MLflow store here; run a suite first (aebench run)")
    database = Path(database).resolve()
    # Its own process group, so that stopping it stops the web server's workers too.
    server = subprocess.Popen(
        ui_command(database, port),
        env={**SERVER_DEFAULTS, **os.environ, "PYTHONWARNINGS": "ignore"},
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert server.stdout is not None
    threading.Thread(target=_forward, args=(server.stdout,), daemon=True).start()

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    base = f"http://127.0.0.1:{port}"
    try:
        if _serving(base, server):
            print(f"MLflow UI: {base}  (store {database}; Ctrl-C stops it)", flush=True)
            # The experiments' own links: the UI's start page is its GenAI one.
            experiments = aebench_experiments(base)[:LISTED_EXPERIMENTS]
            if experiments:
                print("the runs of each experiment, newest first:", flush=True)
            width = max((len(name) for name, _ in experiments), default=0)
            for name, experiment_id in experiments:
                print(f"  {name:<{width}}  {runs_url(base, experiment_id)}", flush=True)
        return server.wait()
    except KeyboardInterrupt:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        return 0
