"""The results table: one row per trial.

Each finished trial's row is recorded twice, both in O(1) whatever the size of the table: in its
trial folder (``trials/<id>/row.json``, the append-only record the table can be rebuilt from) and
as one line appended to ``results.journal.jsonl``, the rows newer than the table. The table itself,
``results.parquet`` and ``results.csv``, is rewritten whole (O(table)) only when a run starts with
a journal left (a run killed mid-way) and when it ends, folding the journal in. ``read_results``
always folds it in, so every reader sees every finished trial, also mid-run and after ``kill -9``.

Only the holder of the folder's lock (``aebench.lock``) writes; every file goes through a
temporary name and a rename, so a crash or a full disk never leaves half a file behind.
"""

from __future__ import annotations

import json
import logging
import numbers
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from aebench.contract.columns import COLUMNS_FILE, Column, Vocabulary, is_metric_column
from aebench.results.files import FolderError, append_line, cannot_write, write_atomically
from aebench.results.rows import is_missing
from aebench.results.trials import TRIALS, trial_folder

log = logging.getLogger("aebench")

PARQUET = "results.parquet"
CSV = "results.csv"
JOURNAL = "results.journal.jsonl"  # rows recorded since the table was last written, one per line
ROW = "row.json"  # a trial's row, in its trial folder
SUITE_FILE = "suite.json"  # the suite last run into the folder: its owner (`aebench evaluate` too)
REQUIRED = ("trial_id", "status")  # what makes a table an aebench results table
# The installed plugins' load problems when the run started (failures, clashes, deprecations).
LOAD_ERRORS = "load_errors.json"
# The largest integer a cell holds as itself: parquet's integers stop at 2^63, and one past 2^53
# is another number once its column meets a float (a missing cell, the CSV, MLflow).
CELL_INT = 2**53


def _plain(value: Any) -> Any:
    """A numpy or torch scalar as the Python number it holds; anything else as its text."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def _advice(folder: Path) -> str:
    sources = f"{CSV} and the trial folders" if (folder / CSV).is_file() else "the trial folders"
    return f"delete it to rebuild the table from {sources}, or run with --rerun to replace it"


def _checked(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing and not (table.empty and table.columns.empty):
        raise FolderError(
            f"{path}: not an aebench results table (no {', '.join(missing)} column);"
            f" {_advice(path.parent)}"
        )
    return table


def _merged(table: pd.DataFrame, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``table`` with ``rows`` in place of its rows of the same trial ids (the last one wins)."""
    if not rows:
        return table
    new = pd.DataFrame(rows)
    merged = new if table.empty else pd.concat([table, new], ignore_index=True)
    return merged.drop_duplicates("trial_id", keep="last", ignore_index=True)


def _read_rows(lines: list[str]) -> list[dict[str, Any]]:
    """The rows of JSON lines; a line torn by a crash is skipped (its trial runs again)."""
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "trial_id" in row:
            rows.append(row)
    return rows


def journal_rows(folder: Path) -> list[dict[str, Any]]:
    """The rows recorded since the table was last written, oldest first."""
    try:
        return _read_rows((Path(folder) / JOURNAL).read_text(encoding="utf-8").splitlines())
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise FolderError(f"{Path(folder) / JOURNAL}: unreadable: {exc}") from None


def rebuilt(folder: Path) -> pd.DataFrame:
    """The table as the trial folders record it (each one's ``row.json``, in the order they were
    written), over ``results.csv`` for trials that have none (kept by an older aebench)."""
    folder = Path(folder)
    paths = sorted((folder / TRIALS).glob(f"*/{ROW}"), key=lambda p: p.stat().st_mtime_ns)
    texts = []
    for path in paths:
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("aebench: %s: unreadable (%s): its trial is left out", path, exc)
            continue
        if not _read_rows([texts[-1]]):  # torn by a crash
            log.warning("aebench: %s: not a row: its trial is left out", path)
    base = pd.DataFrame()
    if (folder / CSV).is_file():
        try:
            base = pd.read_csv(folder / CSV)
        except Exception:  # damaged too: the trial folders alone
            base = pd.DataFrame()
        if any(c not in base.columns for c in REQUIRED):
            base = pd.DataFrame()
    return _merged(base, _read_rows(texts))


def _load(folder: Path, replace_unusable: bool) -> tuple[pd.DataFrame, bool]:
    """The table and whether ``results.parquet`` already holds all of it."""
    journal = journal_rows(folder)  # first: a writer may fold it into the table meanwhile
    path = folder / PARQUET
    if not path.exists():
        return _merged(rebuilt(folder), journal), False
    try:
        table = _checked(_read_parquet(path), path)
    except FolderError:
        if not replace_unusable:
            raise
        return _merged(rebuilt(folder), journal), False
    return _merged(table, journal), not journal


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many kinds for a truncated or foreign file
        lines = str(exc).strip().splitlines()
        why = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        raise FolderError(
            f"{path}: not a readable results table ({why}); {_advice(path.parent)}"
        ) from None


def read_results(folder: Path, *, replace_unusable: bool = False) -> pd.DataFrame:
    """Every finished trial's row in ``folder``: the table with the rows recorded since folded in;
    an empty table when there is none. A table that cannot be read, or is not aebench's, raises
    ``FolderError`` naming it; ``replace_unusable`` rebuilds it from the trial folders instead."""
    return _load(Path(folder), replace_unusable)[0]


def too_large(value: Any) -> bool:
    """Whether ``value`` is an integer that no cell holds as itself (``CELL_INT``)."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) >= CELL_INT


def _refusal(value: Any) -> str | None:
    """Why a cell of a row (as its JSON reads back) cannot be in the table, or None."""
    if too_large(value):
        return "an integer the results table cannot hold (it holds them below 2^53)"
    try:
        pa.array([value], from_pandas=True)
    except (pa.ArrowException, OverflowError, ValueError, TypeError) as exc:
        return f"a value the results table cannot hold ({type(exc).__name__})"
    return None


def storable(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row as the table can hold it (as its JSON reads back). A cell it cannot hold (an
    integer past 2^53, which at 2^63 broke the table and every later run into the folder) is
    left empty and fails the trial, with the reason: the trial fails, never the folder."""
    plain = json.loads(json.dumps(dict(row), default=_plain))
    refused = {name: why for name, value in plain.items() if (why := _refusal(value))}
    if not refused:
        return dict(row)
    reasons = [f"{name} = {str(plain[name])[:40]}: {why}" for name, why in refused.items()]
    earlier = [row["reason"]] if row.get("status") == "failed" and row.get("reason") else []
    held = dict(row) | dict.fromkeys(refused)
    return held | {"status": "failed", "reason": "; ".join([*earlier, *reasons])}


def _kind(value: Any) -> str:
    """What a cell holds, as pyarrow tells columns apart: a boolean, a number, a text..."""
    if isinstance(value, bool | np.bool_):
        return "boolean"
    return "number" if isinstance(value, numbers.Number) else type(value).__name__


def _refused(column: pd.Series) -> bool:
    try:
        pa.array(column, from_pandas=True)
    except (pa.ArrowException, OverflowError, ValueError, TypeError):
        return True
    return False


def holdable(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` as parquet can hold it, for rows that clash only in the table (one trial's cell
    a number, another's a text, in one column; each row alone is ``storable``): in a column
    pyarrow refuses, the cells of another kind than most of its cells' are left empty and fail
    their trial, with the reason; a column refused still after that is kept as text."""
    table = table.copy()
    for name in [c for c in table.columns if _refused(table[c])]:
        present = ~table[name].map(is_missing)
        kinds = table[name].map(_kind)
        most = kinds[present].mode().iloc[0]
        odd = present & ((kinds != most) | table[name].map(too_large))
        for i in table.index[odd]:
            value = table.at[i, name]
            why = f"{name} = {str(value)[:40]}: " + (
                _refusal(value)
                or f"a {kinds[i]} where the other rows have a {most}"
                " (the results table cannot hold both)"
            )
            earlier = table.at[i, "reason"] if table.at[i, "status"] == "failed" else None
            earlier = "" if is_missing(earlier) else str(earlier)
            table.at[i, "reason"] = f"{earlier}; {why}" if earlier else why
            table.at[i, "status"] = "failed"
        table[name] = table[name].where(~odd, None)
        if _refused(table[name]):
            table[name] = table[name].map(lambda v: None if is_missing(v) else str(v))
    return table


def record_row(folder: Path, row: Mapping[str, Any]) -> None:
    """Record a finished trial's row: in its trial folder and at the end of the journal, each one
    small write, however large the table. Call it holding the folder's lock. A cell the table
    cannot hold fails the trial (``storable``: give the caller's run the same row)."""
    folder = Path(folder)
    text = json.dumps(storable(row), default=_plain)
    path = trial_folder(folder, str(row["trial_id"])) / ROW
    try:
        write_atomically(path, lambda p: p.write_text(text, encoding="utf-8"))
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:  # the journal last: a crash between the two costs at most this trial, run again
        append_line(folder / JOURNAL, text)
    except OSError as exc:
        raise cannot_write(folder / JOURNAL, exc) from None


def write_results(folder: Path, table: pd.DataFrame) -> pd.DataFrame:
    """``results.parquet`` and ``results.csv``, each rewritten whole through a temporary file;
    the table written: ``holdable``'s, where pyarrow refuses it as it is."""
    folder = Path(folder)
    try:
        pa.Table.from_pandas(table, preserve_index=False)
    except (pa.ArrowException, OverflowError, ValueError, TypeError):
        table = holdable(table)
    for name, write in (
        (PARQUET, lambda p: table.to_parquet(p, index=False)),
        (CSV, lambda p: table.to_csv(p, index=False)),
    ):
        try:
            write_atomically(folder / name, write)
        except OSError as exc:
            raise cannot_write(folder / name, exc) from None
    return table


def settle(folder: Path, *, replace_unusable: bool = False) -> pd.DataFrame:
    """The folder's table, written out with every row recorded since (O(table): a run does this
    when it starts and when it ends). Call it holding the folder's lock."""
    folder = Path(folder)
    table, current = _load(folder, replace_unusable)
    if not current and not table.empty:
        try:
            table = write_results(folder, table)
        except FolderError as exc:
            raise FolderError(
                f"{exc}; every finished trial's row is kept in {JOURNAL} and the trial folders,"
                " and the next run writes the table"
            ) from None
    journal = folder / JOURNAL
    if journal.exists():  # folded in (or only a line torn by a crash)
        try:
            journal.unlink()
        except OSError as exc:
            raise cannot_write(journal, exc) from None
    return table


def check_owner(folder: Path, name: str) -> None:
    """``FolderError`` if ``folder`` holds the results of a suite of another name: one folder, one
    suite (the same suite with other seeds or settings is at home)."""
    path = Path(folder) / SUITE_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))["suite"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # none yet, or unreadable: this run writes its own
    if saved != name:
        raise FolderError(
            f"{folder}: holds the results of suite {saved!r} ({SUITE_FILE}), not {name!r};"
            " choose another --output"
        )


def write_vocabulary(folder: Path, vocabulary: Vocabulary) -> None:
    """Save the table's column declarations beside it, added to those saved before."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    saved = read_vocabulary(folder)
    merged = vocabulary if saved is None else saved.merged(vocabulary)
    write_atomically(folder / COLUMNS_FILE, lambda p: p.write_text(merged.to_json()))


def read_vocabulary(
    folder: Path, known: Callable[[], Vocabulary] | None = None
) -> Vocabulary | None:
    """The vocabulary saved beside a results table, or None (a table written before it was).
    A file older than a field of ``Column`` takes that field from ``known()``'s declarations
    (``Vocabulary.from_json``), called only then."""
    path = Path(folder) / COLUMNS_FILE
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
        older = known is not None and Vocabulary.is_outdated(text)
        return Vocabulary.from_json(text, known().columns if older else None)
    except (ValueError, TypeError, KeyError):  # damaged: the caller falls back as if absent
        return None


def declare_measured(folder: Path, table: pd.DataFrame) -> None:
    """Declare, in the folder's ``columns.json``, every measured column of ``table`` that nothing
    declares there yet (not configuration, not bookkeeping), as a ``Column`` with no direction.

    A metric of the v1 contract declares no columns: it learns them from its first result, in
    the process that measured it (an isolated trial's, a Dask worker's), so the run declares them
    from the rows, here, once they are in the table."""
    folder = Path(folder)
    saved = read_vocabulary(folder)
    if saved is None:  # none written (a run writes it first): the installed metrics' stand
        return
    found = []
    for name in table.columns:
        values = table[name]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if numeric and is_metric_column(str(name)) and str(name) not in saved.columns:
            try:
                found.append(Column(str(name)))
            except ValueError:  # not a name a column may have: left undeclared
                continue
    if found:
        saved.add(found)
        path = folder / COLUMNS_FILE
        try:
            write_atomically(path, lambda p: p.write_text(saved.to_json()))
        except OSError as exc:
            raise cannot_write(path, exc) from None


def write_load_errors(folder: Path, problems: list[dict[str, Any]]) -> None:
    """Save the plugins' load problems of this run beside its table (replacing the last run's):
    each ``{"plugin", "distribution", "problem", "error", "message"}``."""
    text = json.dumps({"load_errors": problems}, indent=1)
    write_atomically(Path(folder) / LOAD_ERRORS, lambda p: p.write_text(text, encoding="utf-8"))


def read_load_errors(folder: Path) -> list[str]:
    """The one-line messages of the load problems the folder's last run started with; none for a
    folder without the file (an older aebench's) or with a damaged one."""
    try:
        saved = json.loads((Path(folder) / LOAD_ERRORS).read_text(encoding="utf-8"))
        return [str(problem["message"]) for problem in saved["load_errors"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
