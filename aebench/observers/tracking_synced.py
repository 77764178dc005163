"""Whether an MLflow store already holds every trial of a results folder, known without MLflow.

Checking the store (``MlflowTracker``'s repair: import mlflow, open the store, list every run of
the experiment) costs seconds; an ``aebench run`` with nothing left to run would pay them to find
nothing to do. So once the store has every finished trial of the folder, the tracker notes it
beside the table (``SYNCED``): the store, the experiment, the table's and a SQLite store's file
stamps. A later run with nothing to run and the same stamps leaves the store alone; anything else
(a killed run's rows, a store changed since, another store or experiment) checks it as before.
"""

from __future__ import annotations

import json
from pathlib import Path

from aebench.results.confined import confined
from aebench.results.files import FolderError, write_atomically
from aebench.results.paths import sqlite_file
from aebench.results.table import PARQUET

SYNCED = ".mlflow-synced.json"


def _stamp(path: Path | None) -> list[int] | None:
    """A file's size and modification time, None when it is not there (or not a file)."""
    try:
        stat = path.stat() if path is not None else None
    except OSError:
        return None
    return None if stat is None else [stat.st_size, stat.st_mtime_ns]


def sync_state(output: Path, uri: str, experiment: str) -> dict[str, object]:
    """What the note records: a change in any of it means the store must be checked again."""
    return {
        "uri": uri,
        "experiment": experiment,
        "table": _stamp(Path(output) / PARQUET),
        "store": _stamp(sqlite_file(uri)),  # a server's store: its URI alone
    }


def is_synced(output: Path, uri: str, experiment: str) -> bool:
    """The store was left holding every finished trial of the folder, and neither changed since."""
    try:
        saved = json.loads((Path(output) / SYNCED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    state = sync_state(output, uri, experiment)
    return state["table"] is not None and saved == state


def note_synced(output: Path, uri: str, experiment: str) -> None:
    """Say the store now holds every finished trial of the folder (best effort: a note that
    cannot be written only means the next run checks the store)."""
    text = json.dumps(sync_state(output, uri, experiment))
    try:
        path = confined(Path(output), SYNCED)  # beside the table, never through a link
        write_atomically(path, lambda p: p.write_text(text, encoding="utf-8"))
    except (OSError, FolderError):
        pass
