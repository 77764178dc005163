"""An MLflow store that can neither stop nor stall a run: bounded HTTP calls, SQLite stores made
all or nothing, half-built ones named.

MLflow is a view of the results table, so a store that fails must cost a warning, never a trial.
MLflow's own HTTP defaults retry a dead server for minutes (7 retries, a 120 s timeout each), and
its SQLite store is created in place, table by table: a kill half-way leaves a file that every
later MLflow client fails on (``table secrets already exists``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

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


class BrokenStore(RuntimeError):
    """A store MLflow cannot open; ``str(error)`` says why and what to do, in one line."""


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


def _schema(database: Path) -> tuple[set[str], str | None]:
    """The tables of a SQLite file and its MLflow schema revision (None: not stamped)."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        names = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        revision = None
        if "alembic_version" in names:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
    return {n for n in names if not n.startswith(("alembic_", "sqlite_"))}, revision


def _temporary(database: Path, pid: int) -> Path:
    return database.with_name(f".{database.name}.{pid}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove_leftovers(database: Path) -> None:
    """Temporary stores of runs killed while creating one (their process is gone), with the
    rollback journal SQLite keeps beside a file while it writes."""
    pattern = re.compile(rf"\.{re.escape(database.name)}\.(\d+)\.tmp(-journal)?")
    for path in database.parent.glob(f".{database.name}.*.tmp*"):
        found = pattern.fullmatch(path.name)
        if found and not _alive(int(found.group(1))):
            path.unlink(missing_ok=True)


def _create(database: Path, artifacts: Path) -> None:
    """A complete MLflow store at ``database``: made under a temporary name, then linked into
    place, so that the name never holds half a store. One that another run linked first stays."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    # A new store's tables are no news amid the trials' progress lines (two INFO lines).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    temporary = _temporary(database, os.getpid())
    temporary.unlink(missing_ok=True)
    try:
        store = SqlAlchemyStore(f"sqlite:///{temporary}", artifacts.resolve().as_uri())
        store.engine.dispose()  # every connection closed: the file is complete on disk
        with contextlib.suppress(FileExistsError):
            os.link(temporary, database)  # unlike a rename, never replaces a store made meanwhile
    finally:
        temporary.unlink(missing_ok=True)
        temporary.with_name(temporary.name + "-journal").unlink(missing_ok=True)


def open_sqlite(database: Path, artifacts: Path) -> None:
    """Make sure ``database`` is a complete MLflow store, creating it if there is none.

    An existing file without tables (a run killed before it made any) is replaced. One with
    tables but no schema revision was killed while MLflow built it: ``BrokenStore`` names it.
    """
    database = Path(database).resolve()
    database.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(database)
    if database.is_file():
        try:
            tables, revision = _schema(database)
        except sqlite3.DatabaseError as exc:
            raise BrokenStore(
                f"{database} is not an MLflow store ({exc}); move it away and run again, or"
                " point [tracking] uri elsewhere"
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
