"""A deadline on each whole MLflow call (a server that drips its answer a byte at a time never
trips MLflow's per-read timeout), and a busy SQLite store waited for, never called broken."""

from __future__ import annotations

import contextlib
import http.server
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import as_toml, build_suite, entry
from mlflow_runs import search_runs
from timing import scaled

from aebench.observers import tracking_store
from aebench.observers.deadlines import Deadlined, DeadlineExceeded, call_within
from aebench.observers.tracking import MlflowTracker
from aebench.observers.tracking_store import (
    HTTP_LIMITS,
    StoreBusy,
    call_deadline,
    open_sqlite,
    sqlite_uri,
)
from aebench.plugins.manager import load_plugins
from aebench.results.table import read_results
from aebench.run.loop import run_trials
from aebench.run.observing import SuiteRun
from aebench.run.suite import TrackingSection, load_suite

SUITE = build_suite(
    entry("ae", hidden=[8], latent_dim=2),
    name="deadlines",
    seeds=[0, 1],
    epochs=1,
    batch_size=256,
    tracking={"enabled": True},
)


def run_tracked(folder: Path, settings: TrackingSection) -> tuple[MlflowTracker, SuiteRun]:
    """The two-trial suite, run here into ``folder/out`` with an MLflow tracker."""
    path = folder / "suite.toml"
    path.write_text(as_toml(SUITE))
    plugins = load_plugins()
    tracker = MlflowTracker(settings)
    with tracker:
        run = run_trials(
            load_suite(path, plugins), plugins, output=folder / "out", observers=[tracker]
        )
    return tracker, run


def mlflow_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "MLflow" in line]


@contextlib.contextmanager
def dripping_server(every: float, size: int) -> Iterator[tuple[str, list[float]]]:
    """An HTTP server that answers every request with its headers at once, then a body of
    ``size`` bytes, one byte every ``every`` seconds: each socket read gets its byte in time.
    Yields its URL and the times it began answering a request."""
    stop = threading.Event()
    answered: list[float] = []

    class Drip(http.server.BaseHTTPRequestHandler):
        def _drip(self) -> None:
            answered.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            for _ in range(size):
                if stop.wait(every):
                    return
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:  # the client gave up
                    return

        do_GET = do_POST = _drip

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answered
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def drip_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: float, lasting: float
) -> tuple[MlflowTracker, SuiteRun, float, list[float]]:
    """The suite run against a server dripping each answer for ``lasting`` seconds."""
    with dripping_server(every, size=int(lasting / every)) as (uri, answered):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        start = time.monotonic()
        tracker, run = run_tracked(tmp_path, TrackingSection())
        elapsed = time.monotonic() - start
    return tracker, run, elapsed, answered


def test_a_dripping_server_is_given_up_at_the_deadline_of_one_whole_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # The user's limits win, and the deadline follows them: a 1 s read timeout and no retry
    # make a whole call 2 s at most; a byte every 0.3 s never trips the read timeout.
    for name in HTTP_LIMITS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracker, run, elapsed, answered = drip_run(tmp_path, monkeypatch, 0.3, lasting=scaled(30))

    assert tracker.failed
    assert run.counts == {"ok": 2}
    assert sorted(read_results(tmp_path / "out")["status"]) == ["ok", "ok"]
    [warning] = mlflow_lines(capsys.readouterr().err)  # once: the second trial never called
    assert "no whole answer within 2 s" in warning
    assert "the results table has every trial" in warning
    assert len(answered) == 1
    assert elapsed < scaled(15)  # two trials and one 2 s wait; unbounded, one call takes 30 s


@pytest.mark.slow
def test_a_server_dripping_a_byte_every_3_s_costs_a_run_under_30_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The issue's case, with aebench's own limits: it held a 70 s run for 612 s."""
    for name in HTTP_LIMITS:
        monkeypatch.delenv(name, raising=False)
    assert call_deadline() == 16.5  # 3 timeouts of 5 s (2 tries, a connect) and the backoff
    tracker, run, elapsed, answered = drip_run(tmp_path, monkeypatch, 3.0, lasting=scaled(60))

    assert tracker.failed and run.counts == {"ok": 2}
    [warning] = mlflow_lines(capsys.readouterr().err)
    assert "no whole answer within 16.5 s" in warning
    assert len(answered) == 1
    assert elapsed < scaled(30)


def test_an_upload_gets_its_files_sending_time_on_top_of_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in HTTP_LIMITS:
        monkeypatch.delenv(name, raising=False)
    weights = tmp_path / "state_dict.pt"
    weights.write_bytes(b"\0" * (8 << 20))  # 8 MiB: 8 s more at the slowest rate allowed
    assert call_deadline("log_artifact", ("run", str(weights))) == 16.5 + 8
    assert call_deadline("log_batch", ("run",)) == 16.5
    assert call_deadline("log_artifact", ("run", str(weights)), local=True) == 45.0


def test_call_within_gives_the_result_the_error_or_gives_up_at_the_deadline() -> None:
    assert call_within(5, lambda: 42) == 42
    with pytest.raises(KeyError):
        call_within(5, lambda: {}["missing"])
    release = threading.Event()
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="no whole answer within 0.2 s"):
        call_within(0.2, lambda: release.wait(60))
    assert time.monotonic() - start < scaled(5)
    release.set()


class FlakyClient:
    """A client whose ``create_run`` finds the store locked ``locked`` times, then works."""

    def __init__(self, locked: int) -> None:
        self.locked = locked
        self.calls = 0
        self.tracking_uri = "sqlite:///x.db"

    def create_run(self, experiment_id: str) -> str:
        self.calls += 1
        if self.calls <= self.locked:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return f"run of {experiment_id}"


@pytest.mark.parametrize(("wait", "succeeds"), [(30.0, True), (0.0, False)])
def test_a_locked_store_is_told_once_and_retried_for_a_bounded_time(
    wait: float, succeeds: bool
) -> None:
    told: list[str] = []
    client = FlakyClient(locked=2)
    bounded = Deadlined(
        client,
        lambda name, args: 5.0,
        tracking_store.is_busy,
        lambda: wait,
        lambda: told.append("busy"),
    )
    assert bounded.tracking_uri == "sqlite:///x.db"  # attributes pass through
    if succeeds:
        assert bounded.create_run("0") == "run of 0"
        assert client.calls == 3
    else:
        with pytest.raises(RuntimeError, match="database is locked"):
            bounded.create_run("0")
        assert client.calls == 1
    assert told == ["busy"]


@contextlib.contextmanager
def locked(database: Path) -> Iterator[threading.Timer]:
    """``database`` held by another process's exclusive lock (readers too are kept out) until
    the end, or until the timer it yields runs (``timer.start()``: half a second later)."""
    holder = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    timer = threading.Timer(0.5, holder.rollback)
    try:
        yield timer
    finally:
        timer.cancel()
        if timer.is_alive():
            timer.join()
        holder.rollback()
        holder.close()


def made_store(tmp_path: Path) -> Path:
    """A new MLflow store (MLflow builds it: seconds, in a test's own cache)."""
    database = tmp_path / "store" / "mlflow.db"
    open_sqlite(database, database.parent / "mlartifacts")
    return database


def stamped_store(tmp_path: Path) -> Path:
    """A file that passes for a complete store (tables and a schema revision), made at once:
    for tests where the lock keeps MLflow out."""
    database = tmp_path / "store" / "mlflow.db"
    database.parent.mkdir()
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.execute("CREATE TABLE experiments (name TEXT)")
        db.execute("CREATE TABLE alembic_version (version_num TEXT)")
        db.execute("INSERT INTO alembic_version VALUES ('1')")
    return database


def test_a_store_locked_for_the_whole_run_is_busy_never_move_it_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    database = stamped_store(tmp_path)
    monkeypatch.setattr(tracking_store, "BUSY_WAIT_S", 1.0)
    with locked(database):
        tracker, run = run_tracked(
            tmp_path, TrackingSection(uri=sqlite_uri(database), experiment="deadlines")
        )

    assert run.counts == {"ok": 2} and tracker.failed
    busy, gave_up = mlflow_lines(capsys.readouterr().err)
    assert busy.endswith("is busy (locked by another process); retrying for up to 1 s")
    assert f"{database} stayed busy (locked by another process) for 1 s" in gave_up
    assert "the store is kept as it is; this run is not recorded to MLflow" in gave_up
    for line in (busy, gave_up):
        assert "move it away" not in line and "not an MLflow store" not in line
    with contextlib.closing(sqlite3.connect(database)) as db:  # kept as it was
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("1",)]


def test_a_store_busy_for_a_while_is_waited_for_and_records_every_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    database = made_store(tmp_path)
    told = MlflowTracker._busy

    def busy(self: MlflowTracker) -> None:  # the other process lets go once aebench waits
        told(self)
        release.start()

    monkeypatch.setattr(MlflowTracker, "_busy", busy)
    with locked(database) as release:
        tracker, run = run_tracked(
            tmp_path, TrackingSection(uri=sqlite_uri(database), experiment="deadlines")
        )

    assert not tracker.failed
    [busy] = mlflow_lines(capsys.readouterr().err)
    assert busy.endswith("is busy (locked by another process); retrying for up to 30 s")
    runs = search_runs(sqlite_uri(database), experiment_names=["deadlines"])
    assert sorted(runs["status"]) == ["FINISHED"] * 3  # two trials and the invocation


def test_open_sqlite_waits_for_a_lock_then_says_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = stamped_store(tmp_path)
    monkeypatch.setattr(tracking_store, "BUSY_WAIT_S", 0.5)
    told: list[str] = []
    with locked(database), pytest.raises(StoreBusy, match="stayed busy") as raised:
        open_sqlite(database, database.parent / "mlartifacts", on_busy=lambda: told.append(""))
    assert "move it away" not in str(raised.value)
    assert told == [""]
