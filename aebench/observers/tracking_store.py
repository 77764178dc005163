"""An MLflow store that can neither stop nor stall a run: bounded HTTP calls, each with a
deadline for the whole call, SQLite stores made all or nothing, half-built ones named, busy
(locked) ones waited for, a bounded time.

MLflow is a view of the results table, so a store that fails must cost a warning, never a trial.
MLflow's own HTTP defaults retry a dead server for minutes (7 retries, a 120 s timeout each), and
its SQLite store is created in place, table by table: a kill half-way leaves a file that every
later MLflow client fails on (``table secrets already exists``).

Where the store is, shared by the tracker and the ``aebench ui`` server, lives here too:
``results/mlflow.db`` unless the suite or ``$MLFLOW_TRACKING_URI`` says otherwise, its artifacts
beside it; and how a failed call to it is told in one line (``shown_uri``, ``why_it_failed``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from aebench.observers.deadlines import DeadlineExceeded
from aebench.results.files import process_alive, write_atomically
from aebench.results.paths import cache_folder, sqlite_file, writable_place_problem

DEFAULT_STORE = Path("results") / "mlflow.db"
ARTIFACTS = "mlartifacts"  # beside a SQLite store: never ./mlruns, which MLflow takes for a store

# aebench's calls to an MLflow server: 5 s to connect and for each answer, one retry, no waiting
# on a Retry-After header (it may ask for minutes). A server that never answers costs about
# 10 s, once: the tracker stops calling a store that failed. Variables the user set win.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": "false",
}
# urllib3 warns of each retry on its own; the tracker says what failed, once.
QUIET_LOGGERS = ("urllib3.connectionpool",)
# The limits above bound each socket read, not a call: a server that drips one byte every 3 s
# never trips them. A whole call may take every try they allow, each as long as the timeout,
# the backoff between tries, and one more timeout to connect (16.5 s with aebench's limits);
# an upload as much more as sending its file at this rate takes.
SLOWEST_UPLOAD_BYTES_PER_S = 1 << 20
# A call to a SQLite store: MLflow itself waits up to 20 s for another process's lock (its
# busy_timeout); one still going after this long is stuck (a network disk that hung, say).
SQLITE_CALL_S = 45.0
# A SQLite store another process holds locked (a long write, an ``aebench ui`` migrating it) is
# busy, not broken: the tracker waits for it this long, once, before it gives up for the run.
BUSY_WAIT_S = 30.0


class TrackingError(ValueError):
    """A tracking store aebench cannot use; ``str(error)`` is the one line to show."""


def default_store(cwd: Path | None = None) -> Path:
    """``results/mlflow.db`` under the folder aebench runs in."""
    return (Path(cwd or Path.cwd()) / DEFAULT_STORE).resolve()


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def tracking_uri(configured: str | None = None) -> str:
    """The suite's ``[observers.mlflow] uri``, else ``$MLFLOW_TRACKING_URI``, else
    ``results/mlflow.db``.

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


def shown_uri(uri: str) -> str:
    """A tracking URI without the user name and password it may carry."""
    parts = urllib.parse.urlsplit(uri)
    if parts.hostname and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urllib.parse.urlunsplit(parts._replace(netloc=host))
    return uri


def _limit(name: str) -> float:
    """The value MLflow uses for one of ``HTTP_LIMITS``: the user's, else aebench's."""
    try:
        return float(os.environ.get(name, HTTP_LIMITS[name]))
    except ValueError:  # MLflow refuses it itself, with its own message
        return float(HTTP_LIMITS[name])


def call_deadline(method: str = "", args: Sequence[Any] = (), *, local: bool = False) -> float:
    """How long one whole MLflow client call may take, in seconds: to a server, as long as
    ``HTTP_LIMITS`` let it (``log_artifact(run_id, local_path, ...)`` with its file's upload
    time on top); to a SQLite store (``local``), ``SQLITE_CALL_S``."""
    if local:
        return SQLITE_CALL_S
    timeout = _limit("MLFLOW_HTTP_REQUEST_TIMEOUT")
    retries = max(0, int(_limit("MLFLOW_HTTP_REQUEST_MAX_RETRIES")))
    factor = _limit("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR")
    jitter = _limit("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER")
    backoff = sum(min(factor * 2 ** (n - 1), 120.0) + jitter for n in range(1, retries + 1))
    seconds = (retries + 2) * timeout + backoff
    if method == "log_artifact" and len(args) > 1:
        with contextlib.suppress(OSError, TypeError):
            seconds += Path(args[1]).stat().st_size / SLOWEST_UPLOAD_BYTES_PER_S
    return seconds


def busy_wait() -> float:
    """How long a busy store is waited for (``BUSY_WAIT_S``, read at each call)."""
    return BUSY_WAIT_S


def is_busy(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is SQLite's "database is locked": another process
    holds the store, which is busy, not broken."""
    cause: BaseException | None = error
    for _ in range(10):
        if cause is None:
            return False
        text = str(cause).lower()
        if "database is locked" in text or "database is busy" in text:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def why_it_failed(error: BaseException) -> str:
    """What went wrong, in a few words: MLflow wraps a refused or timed-out connection in a long
    message about retries."""
    if isinstance(error, DeadlineExceeded):  # a server that answers, too slowly to wait for
        return str(error)
    if is_busy(error):
        return f"the store stayed busy (locked by another process) for {busy_wait():.0f} s"
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


class BrokenStore(RuntimeError):
    """A store MLflow cannot open; ``str(error)`` says why and what to do, in one line."""


class StoreBusy(BrokenStore):
    """A store another process held locked for longer than aebench waits (``BUSY_WAIT_S``)."""


@contextlib.contextmanager
def bounded_http() -> Iterator[None]:
    """MLflow's HTTP client bounded as ``HTTP_LIMITS`` says, for the calls made inside.

    Only inside: MLflow reads the variables at each request, so the user's own MLflow calls in
    the same process keep MLflow's defaults; a variable already set is left as it is."""
    unset = [name for name in HTTP_LIMITS if name not in os.environ]
    os.environ.update({name: HTTP_LIMITS[name] for name in unset})
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name in unset:
            os.environ.pop(name, None)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _schema(database: Path, timeout: float = 5.0) -> tuple[set[str], str | None]:
    """The tables of a SQLite file and its MLflow schema revision (None: not stamped); SQLite
    waits up to ``timeout`` seconds for another process's lock."""
    with contextlib.closing(sqlite3.connect(database, timeout=timeout)) as db:
        names = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        revision = None
        if "alembic_version" in names:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
    return {n for n in names if not n.startswith(("alembic_", "sqlite_"))}, revision


def _temporary(database: Path, pid: int) -> Path:
    return database.with_name(f".{database.name}.{pid}.tmp")


def _remove_leftovers(database: Path) -> None:
    """Temporary stores of runs killed while creating one (their process is gone), with the
    rollback journal SQLite keeps beside a file while it writes."""
    pattern = re.compile(rf"\.{re.escape(database.name)}\.(\d+)\.tmp(-journal)?")
    for path in database.parent.glob(f".{database.name}.*.tmp*"):
        found = pattern.fullmatch(path.name)
        if found and not process_alive(int(found.group(1))):
            path.unlink(missing_ok=True)


def _template() -> Path:
    """Where a new, empty store of this MLflow version is kept, to copy: MLflow builds one by
    running every schema migration since its first version, seconds each time."""
    from importlib.metadata import version

    return cache_folder() / f"mlflow-{version('mlflow')}-empty.db"


def _from_template(temporary: Path, artifacts: Path) -> bool:
    """The empty store copied to ``temporary``, its default experiment's artifacts pointed at
    ``artifacts`` (the one thing in it that names a place); False where there is none."""
    template = _template()
    try:
        tables, revision = _schema(template) if template.is_file() else (set(), None)
        if not tables or revision is None:
            return False
        shutil.copyfile(template, temporary)
        with contextlib.closing(sqlite3.connect(temporary)) as db, db:
            location = f"{artifacts.resolve().as_uri()}/0"
            db.execute(
                "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0", [location]
            )
    except (OSError, sqlite3.Error):
        temporary.unlink(missing_ok=True)
        return False
    return True


def _keep_template(store: Path) -> None:
    """A store MLflow just built, kept as the template (best effort: an unwritable cache only
    costs the next new store its seconds)."""
    template = _template()
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(template, lambda p: shutil.copyfile(store, p))
    except OSError:
        pass


def _create(database: Path, artifacts: Path) -> None:
    """A complete MLflow store at ``database``: made under a temporary name (a copy of a kept
    empty store of this MLflow version, else built by MLflow), then linked into place, so that the
    name never holds half a store. One that another run linked first stays."""
    # A new store's tables are no news amid the trials' progress lines (two INFO lines).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    temporary = _temporary(database, os.getpid())
    temporary.unlink(missing_ok=True)
    try:
        if not _from_template(temporary, artifacts):
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            store = SqlAlchemyStore(sqlite_uri(temporary), artifacts.resolve().as_uri())
            store.engine.dispose()  # every connection closed: the file is complete on disk
            _keep_template(temporary)
        with contextlib.suppress(FileExistsError):
            os.link(temporary, database)  # unlike a rename, never replaces a store made meanwhile
    finally:
        temporary.unlink(missing_ok=True)
        temporary.with_name(temporary.name + "-journal").unlink(missing_ok=True)


def _read_schema(database: Path, on_busy: Callable[[], None]) -> tuple[set[str], str | None]:
    """``_schema``, waiting for a store another process holds locked: SQLite's own short wait,
    then ``on_busy()`` and up to ``BUSY_WAIT_S`` more; ``StoreBusy`` if it is still locked."""
    try:
        return _schema(database, timeout=1.0)
    except sqlite3.OperationalError as exc:
        if not is_busy(exc):
            raise
    on_busy()
    try:
        return _schema(database, timeout=busy_wait())
    except sqlite3.OperationalError as exc:
        if not is_busy(exc):
            raise
    raise StoreBusy(
        f"{database} stayed busy (locked by another process) for {busy_wait():.0f} s; the store"
        " is kept as it is"
    )


def open_sqlite(
    database: Path, artifacts: Path, on_busy: Callable[[], None] = lambda: None
) -> None:
    """Make sure ``database`` is a complete MLflow store, creating it if there is none.

    An existing file without tables (a run killed before it made any) is replaced. One with
    tables but no schema revision was killed while MLflow built it: ``BrokenStore`` names it.
    One another process holds locked is waited for (``on_busy()`` is told first), then
    ``StoreBusy``: a busy store is never called broken.
    """
    database = Path(database).resolve()
    database.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(database)
    if database.is_file():
        try:
            tables, revision = _read_schema(database, on_busy)
        except sqlite3.DatabaseError as exc:
            raise BrokenStore(
                f"{database} is not an MLflow store ({exc}); move it away and run again, or"
                " point [observers.mlflow] uri elsewhere"
            ) from None
        if tables and revision is None:
            raise BrokenStore(
                f"{database} is a half-built MLflow store (tables without a schema version: a run"
                f" was killed while creating it); move it away (mv {database}"
                f" {database}.broken) and run again"
            )
        if tables:
            return  # a store; MLflow checks its schema version itself
        database.unlink()  # no tables: nothing in it
    _create(database, artifacts)
