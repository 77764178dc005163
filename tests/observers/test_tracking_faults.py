"""MLflow never stops or stalls a run: dead and silent servers, half-built stores, kill -9."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import as_toml, build_suite, entry
from fake_plugins import fake_distribution
from mlflow_runs import search_runs
from timing import scaled, wait_until

from aebench.observers.tracking import MlflowTracker
from aebench.observers.tracking_runs import CURVE_PREFIX
from aebench.observers.tracking_store import HTTP_LIMITS, bounded_http, open_sqlite, sqlite_uri
from aebench.observers.trial_figures import TrialFigures
from aebench.plugins.manager import load_plugins
from aebench.results.table import read_results
from aebench.run.loop import run_trials
from aebench.run.observing import SuiteRun
from aebench.run.suite import TrackingSection, load_suite

SUITE = build_suite(
    entry("ae", hidden=[8], latent_dim=2),
    name="tracked",
    seeds=[0, 1],
    epochs=2,
    batch_size=256,
    tracking={"enabled": True},
)


def run_tracked(
    folder: Path, settings: TrackingSection, figures: bool = False
) -> tuple[MlflowTracker, SuiteRun]:
    """The two-trial suite, run here into ``folder/out`` with an MLflow tracker."""
    path = folder / "suite.toml"
    path.write_text(as_toml(SUITE))
    plugins = load_plugins()
    tracker = MlflowTracker(settings)
    observers = [TrialFigures(), tracker] if figures else [tracker]
    with tracker:
        run = run_trials(
            load_suite(path, plugins), plugins, output=folder / "out", observers=observers
        )
    return tracker, run


def mlflow_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "MLflow" in line]


@contextlib.contextmanager
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """A server that accepts every connection and never answers; yields its URL and the
    connections it accepted."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        server.close()


@pytest.mark.parametrize("server", ["unreachable", pytest.param("silent", marks=pytest.mark.slow)])
def test_a_dead_or_silent_server_costs_one_warning_and_the_table_is_complete(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for name in HTTP_LIMITS:  # aebench's own bounds, not a user's
        monkeypatch.delenv(name, raising=False)
    with contextlib.ExitStack() as stack:
        if server == "silent":
            uri, accepted = stack.enter_context(silent_server())
        else:
            uri, accepted = "http://127.0.0.1:1", []  # nothing listens on port 1
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        start = time.monotonic()
        tracker, run = run_tracked(tmp_path, TrackingSection())
        elapsed = time.monotonic() - start
        connections = len(accepted)
    assert elapsed < scaled(30)
    assert tracker.failed
    assert run.counts == {"ok": 2}
    table = read_results(tmp_path / "out")
    assert sorted(table["status"]) == ["ok", "ok"]
    [warning] = mlflow_lines(capsys.readouterr().err)  # once, not once per trial
    expected = "connection refused" if server == "unreachable" else "no answer within 5 s"
    assert expected in warning and "the results table has every trial" in warning
    assert connections <= 2  # one request and its one retry: the second trial never called
    assert not any(name in os.environ for name in HTTP_LIMITS)  # bounded only while it called


def test_mlflow_reads_the_limits_for_aebench_calls_and_a_users_own_value_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow.environment_variables as variables

    for name in HTTP_LIMITS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    with bounded_http():
        assert variables.MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 60
        assert variables.MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 1
        assert variables.MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER.get() is False
        for name in HTTP_LIMITS:  # each one a variable MLflow reads, under its own name
            assert getattr(variables, name).get() is not None
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60"
    assert not any(
        name in os.environ for name in HTTP_LIMITS if name != "MLFLOW_HTTP_REQUEST_TIMEOUT"
    )


def test_a_store_whose_creation_fails_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    def fail_half_way(self: object, uri: str, artifacts: str) -> None:
        Path(uri.removeprefix("sqlite:///")).write_bytes(b"the first tables")
        raise RuntimeError("killed half-way")

    monkeypatch.setattr(SqlAlchemyStore, "__init__", fail_half_way)
    database = tmp_path / "results" / "mlflow.db"
    with pytest.raises(RuntimeError, match="half-way"):
        open_sqlite(database, tmp_path / "results" / "mlartifacts")
    assert list(database.parent.iterdir()) == []  # neither the store nor its temporary file


def half_built(database: Path) -> None:
    """What a kill during MLflow's creation of a store leaves: the initial tables and those of the
    migrations run so far (SQLite commits each CREATE TABLE at once), but no schema version (its
    stamp was still in the open transaction). MLflow then fails on every later use of the store:
    ``table secrets already exists``."""
    import sqlalchemy
    from mlflow.store.tracking.dbmodels.initial_models import Base

    database.parent.mkdir(parents=True)
    engine = sqlalchemy.create_engine(sqlite_uri(database))
    Base.metadata.create_all(engine)
    with engine.begin() as connection:  # a table of a later migration
        connection.exec_driver_sql("CREATE TABLE secrets (secret_id VARCHAR(36) PRIMARY KEY)")
    engine.dispose()


def dead_pid() -> int:
    """The id of a process that has ended."""
    code = "import os; print(os.getpid())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_half_built_store_is_named_then_a_new_one_gets_every_finished_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    database = tmp_path / "store" / "mlflow.db"
    half_built(database)
    settings = TrackingSection(uri=sqlite_uri(database))
    tracker, run = run_tracked(tmp_path, settings, figures=True)
    assert run.counts == {"ok": 2}  # the run went on without MLflow
    [warning] = mlflow_lines(capsys.readouterr().err)
    assert "half-built MLflow store" in warning and "move it away" in warning
    assert "Traceback" not in warning

    # Moved away as the line says; a creation killed half-way left its temporary file too.
    database.rename(database.with_name("mlflow.db.broken"))
    leftover = database.with_name(f".mlflow.db.{dead_pid()}.tmp")
    leftover.write_bytes(b"half a store")
    leftover.with_name(leftover.name + "-journal").write_bytes(b"its journal")
    again, rerun = run_tracked(tmp_path, settings, figures=True)
    assert rerun.rows == [] and not again.failed  # nothing trained; the store was repaired
    assert sorted(p.name for p in database.parent.iterdir()) == [
        "mlartifacts",
        "mlflow.db",
        "mlflow.db.broken",
    ]

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.uri)
    runs = search_runs(settings.uri, experiment_ids=[again.experiment_id])
    trials = runs[runs["tags.aebench.trial_id"].notna()].set_index("tags.aebench.trial_id")
    table = read_results(tmp_path / "out").set_index("trial_id")
    assert sorted(trials.index) == sorted(table.index)
    assert (trials["status"] == "FINISHED").all()
    assert (trials["tags.aebench.repaired"] == "true").all()
    assert (runs["status"] != "RUNNING").all()
    for trial_id, row in table.iterrows():
        assert trials.loc[trial_id, "metrics.recon_mse"] == pytest.approx(row["recon_mse"])
        run_id = trials.loc[trial_id, "run_id"]
        history = client.get_metric_history(run_id, CURVE_PREFIX + "loss")
        assert sorted(m.step for m in history) == [1, 2]
        figures = {Path(a.path).name for a in client.list_artifacts(run_id, "figures")}
        assert "curves.png" in figures


KILLED_SUITE = build_suite(
    entry("ae", hidden=[8]),
    entry("fragile", delay=0.5),  # trains for seconds: the kill comes while it does
    name="faults",
    epochs=1,
    batch_size=64,
    tracking={"enabled": True},
)


def aebench_run(suite: Path, site: Path, markers: Path) -> subprocess.Popen[str]:
    """``aebench run suite`` in the suite's folder, with the fragile model installed."""
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env["MARKERS"] = str(markers)
    env.pop("MLFLOW_TRACKING_URI", None)  # the default store: results/mlflow.db
    command = [sys.executable, "-m", "aebench.cli", "run", str(suite)]
    return subprocess.Popen(
        command,
        cwd=suite.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def logged(uri: str) -> bool:
    """Whether the store at ``uri`` holds a finished trial's run."""
    if not Path(uri.removeprefix("sqlite:///")).is_file():
        return False
    runs = search_runs(uri, search_all_experiments=True)
    return "tags.aebench.trial_id" in runs and bool(
        (runs["tags.aebench.trial_id"].notna() & (runs["status"] == "FINISHED")).any()
    )


@pytest.mark.slow
def test_kill_9_mid_trial_leaves_a_store_that_the_next_run_repairs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import aebench_fragile

    uri = sqlite_uri(tmp_path / "results" / "mlflow.db")
    suite = tmp_path / "suite.toml"
    suite.write_text(as_toml(KILLED_SUITE))
    markers = tmp_path / "markers"
    markers.mkdir()
    first = aebench_run(suite, fake_distribution(tmp_path / "site"), markers)
    # until the fragile trial trains, the ae one done and logged (by the MLflow worker, while
    # the fragile one trains)
    wait_until(lambda: any(markers.iterdir()), "the fragile trial never started", first)
    wait_until(lambda: logged(uri), "the ae trial's run never came", first)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=scaled(30))
    left = search_runs(uri, experiment_names=["faults"])
    running = left.loc[left["status"] == "RUNNING", "run_id"]
    assert len(running)  # the invocation run: RUNNING forever, before repairs

    # The same suite again, here (a process less to start): the fragile trial, and a repair.
    monkeypatch.chdir(tmp_path)  # where it ran: the same folder, the same experiment
    plugins = load_plugins(extra=[aebench_fragile])
    tracker = MlflowTracker(TrackingSection(uri=uri))
    output = tmp_path / "results" / "faults"  # the suite's own folder, where the first run wrote
    run = run_trials(load_suite(suite, plugins), plugins, output=output, observers=[tracker])
    assert [row["model"] for row in run.rows] == ["fragile"] and run.already_done == 1
    assert not tracker.failed and not mlflow_lines(capsys.readouterr().err)
    runs = search_runs(uri, experiment_names=["faults"])
    assert (runs["status"] != "RUNNING").all()
    assert (runs.set_index("run_id").loc[running, "status"] == "KILLED").all()
    trials = runs[runs["tags.aebench.trial_id"].notna()]
    finished = trials[trials["status"].isin(["FINISHED", "FAILED"])]
    table = read_results(output)
    assert sorted(finished["tags.aebench.trial_id"]) == sorted(table["trial_id"])  # one each
