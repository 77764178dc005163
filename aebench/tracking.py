"""MLflow: an experiment per suite, a parent run per ``aebench run``, a nested run per trial.

The results table stays the source of truth; MLflow is a view of it for comparing runs in a UI.
mlflow is imported only once a suite starts, so ``aebench --help`` and ``aebench list`` stay fast.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aebench.columns import is_metric_column, is_param_column
from aebench.runner import Row, SuiteObserver, SuiteRun, TrialOutcome
from aebench.suite import Suite, TrackingSection, Trial
from aebench.trials import CONFIG, trial_folder

if TYPE_CHECKING:
    from mlflow import MlflowClient

DEFAULT_STORE = Path("results") / "mlflow.db"
ARTIFACTS = "mlartifacts"  # beside a SQLite store: never ./mlruns, which MLflow takes for a store
CURVE_PREFIX = "train/"  # per-epoch curves: train/loss, train/model_loss, train/penalty

# MLflow's limits on one log_batch call.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_VALUE_LENGTH = 6000

RUN_STATUS = {"ok": "FINISHED", "skipped": "FINISHED", "diverged": "FAILED", "failed": "FAILED"}


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
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for any other store."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


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
    """Records a suite run to MLflow as it goes.

    Put it after ``TrialFigures`` in the observer list: each trial's figure folder is logged as
    its run's artifacts. A trial whose logging fails is reported on stderr; the suite goes on.
    """

    def __init__(self, settings: TrackingSection | None = None) -> None:
        self.settings = settings or TrackingSection()
        self.uri = tracking_uri(self.settings.uri)
        self.client: MlflowClient | None = None
        self.experiment_id = ""
        self.parent_run_id = ""
        self.trial_run_ids: dict[str, str] = {}  # trial id -> run id, this invocation
        self._output = Path(".")
        self._commit: str | None = None
        self._started_ms: dict[str, int] = {}

    # -- the store ------------------------------------------------------------------------------

    def _experiment(self, name: str) -> str:
        assert self.client is not None
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            database = sqlite_path(self.uri)
            location = None
            if database is not None:  # artifacts beside the database, not in ./mlruns
                location = (database.parent / ARTIFACTS / name).resolve().as_uri()
            return self.client.create_experiment(name, artifact_location=location)
        if experiment.lifecycle_stage == "deleted":
            self.client.restore_experiment(experiment.experiment_id)
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

    # -- observer hooks -------------------------------------------------------------------------

    def suite_started(self, suite: Suite, output: Path, trials: list[Trial]) -> None:
        from mlflow import MlflowClient

        database = sqlite_path(self.uri)
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        self._output = Path(output)
        self._commit = git_commit(Path(suite.path).resolve().parent) or git_commit()
        self.experiment_id = self._experiment(suite.name)
        tags = {
            "aebench.suite": suite.name,
            "aebench.suite_file": str(suite.path),
            "aebench.output": str(Path(output).resolve()),
            "aebench.trials": str(len(trials)),
        }
        if self._commit:
            tags["mlflow.source.git.commit"] = self._commit
        run = self.client.create_run(
            self.experiment_id,
            tags=tags,
            run_name=f"{suite.name} {time.strftime('%Y-%m-%d %H:%M')}",
        )
        self.parent_run_id = run.info.run_id
        if Path(suite.path).is_file():
            self.client.log_artifact(self.parent_run_id, str(suite.path))

    def trial_started(self, trial: Trial) -> None:
        self._started_ms[trial.id] = int(time.time() * 1000)

    def trial_finished(self, trial: Trial, row: Row, outcome: TrialOutcome) -> None:
        try:
            self._record_trial(trial, row, outcome)
        except Exception as exc:  # the results table has the row; MLflow is a view of it
            print(f"aebench: MLflow logging of {trial.label()} failed: {exc}", file=sys.stderr)

    def _record_trial(self, trial: Trial, row: Row, outcome: TrialOutcome) -> None:
        from mlflow.entities import Metric

        assert self.client is not None
        now = int(time.time() * 1000)
        tags = {"mlflow.parentRunId": self.parent_run_id, **trial_tags(row, self._commit)}
        run = self.client.create_run(
            self.experiment_id,
            start_time=self._started_ms.pop(trial.id, now),
            tags=tags,
            run_name=f"{trial.label()} {trial.id[:8]}",
        )
        run_id = run.info.run_id
        self.trial_run_ids[trial.id] = run_id
        metrics = [
            Metric(CURVE_PREFIX + name, value, now, epoch)
            for name, values in outcome.curves.items()
            for epoch, raw in enumerate(values, start=1)
            if (value := _finite(raw)) is not None
        ]
        metrics += [Metric(k, v, now, 0) for k, v in trial_metrics(row).items()]
        self._log_batch(run_id, metrics, params=trial_params(row))
        folder = trial_folder(self._output, trial.id)
        for path in sorted(folder.glob("*.png")) + sorted(folder.glob("*.npz")):
            self.client.log_artifact(run_id, str(path), artifact_path="figures")
        if (folder / CONFIG).is_file():
            self.client.log_artifact(run_id, str(folder / CONFIG))
        if outcome.traceback:
            self.client.log_text(run_id, outcome.traceback, "traceback.txt")
        if self.settings.log_model and outcome.model is not None:
            self._log_weights(run_id, outcome.model)
        self.client.set_terminated(run_id, status=RUN_STATUS.get(row["status"], "FAILED"))

    def _log_weights(self, run_id: str, model: Any) -> None:
        import tempfile

        import torch

        assert self.client is not None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "state_dict.pt"
            torch.save(model.state_dict(), path)
            self.client.log_artifact(run_id, str(path), artifact_path="model")

    def suite_finished(self, run: SuiteRun) -> None:
        assert self.client is not None
        counts = {f"trials_{status}": float(n) for status, n in run.counts.items()}
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._log_batch(self.parent_run_id, [Metric(k, v, now, 0) for k, v in counts.items()])
        for name in ("results.csv", "report.html", "report.md"):
            if (run.output / name).is_file():
                self.client.log_artifact(self.parent_run_id, str(run.output / name))
        # A suite that ran to its end is FINISHED (its failed trials are FAILED runs of their
        # own); one stopped by Ctrl-C or SIGTERM is KILLED.
        status = "KILLED" if run.interrupted else "FINISHED"
        self.client.set_terminated(self.parent_run_id, status=status)
        self.parent_run_id = ""

    def interrupted(self) -> None:
        """End the parent run as KILLED (the suite was stopped before it finished)."""
        if self.client is not None and self.parent_run_id:
            self.client.set_terminated(self.parent_run_id, status="KILLED")
            self.parent_run_id = ""

    def __enter__(self) -> MlflowTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.interrupted()


# --- the MLflow UI ------------------------------------------------------------------------------


def ui_command(database: Path, port: int) -> list[str]:
    """``mlflow server`` on a SQLite store, on 127.0.0.1 only."""
    database = Path(database).resolve()
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        sqlite_uri(database),
        "--default-artifact-root",
        (database.parent / ARTIFACTS).as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",  # one person browsing: one worker starts fastest
        "1",
    ]


def serve_ui(database: Path, port: int) -> int:
    """Run the MLflow UI until Ctrl-C (or SIGTERM); returns the server's exit status."""
    import signal

    if not Path(database).is_file():
        raise TrackingError(f"{database}: no MLflow store here; run a suite first (aebench run)")
    database = Path(database).resolve()
    # The server's job runner serves GenAI features aebench does not use; it costs seconds.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    # Its own process group, so that stopping it stops the web server's workers too.
    server = subprocess.Popen(ui_command(database, port), env=env, start_new_session=True)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"MLflow UI: http://127.0.0.1:{port}  (store {database}; Ctrl-C stops it)", flush=True)
    try:
        return server.wait()
    except KeyboardInterrupt:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        return 0
