"""The two tables ``aebench compare`` reads: a results table from its file or its folder, and what
is saved beside it (the columns' declarations, the published values it is checked against)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from aebench.contract.columns import IDENTITY, Vocabulary
from aebench.plugins.listing import vocabulary_of
from aebench.results.files import FolderError
from aebench.results.references import Reference, ReferencesError, read_references
from aebench.results.table import PARQUET, read_results


class CompareError(ValueError):
    """Bad input (a missing or unreadable table); the message is the one line to show."""


def table_references(path: str | Path) -> list[Reference]:
    """The published values saved with a table (its folder's ``suite.json``), if any; saved ones
    that cannot be read are bad input (a ``CompareError``), not none."""
    path = Path(path)
    try:
        return read_references(path if path.is_dir() else path.parent)
    except ReferencesError as exc:
        raise CompareError(str(exc)) from None


def table_vocabulary(path: str | Path) -> Vocabulary:
    """The column declarations saved beside a table (``load_table``'s path)."""
    path = Path(path)
    return vocabulary_of(path if path.is_dir() else path.parent)


def load_table(path: str | Path) -> pd.DataFrame:
    """A results table from a results.parquet (or .csv) file or the folder holding it."""
    path = Path(path)
    if path.is_dir():  # a results folder: its table with the rows recorded since (a run going on)
        try:
            table = read_results(path)
        except FolderError as exc:
            raise CompareError(str(exc)) from None
        if table.empty and not (path / PARQUET).exists():
            raise CompareError(f"{path / PARQUET}: no such results table")
        path = path / PARQUET
    elif not path.exists():
        raise CompareError(f"{path}: no such results table")
    else:
        try:
            table = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
        except Exception as exc:  # pyarrow and pandas raise many kinds for a damaged file
            lines = str(exc).strip().splitlines()
            why = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
            raise CompareError(f"{path}: cannot read the results table: {why}") from None
    if table.empty:  # nothing to match: "no configuration matches" would blame the settings
        raise CompareError(f"{path}: holds no trials")
    missing = [c for c in ("status", *IDENTITY) if c not in table.columns]
    if missing:
        raise CompareError(f"{path}: not an aebench results table (no {', '.join(missing)} column)")
    return table
