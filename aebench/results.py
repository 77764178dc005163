"""The results table: one row per trial, in results.parquet (the source of truth) and results.csv.

Both files are rewritten whole through a temporary file and a rename, so a crash never leaves
half a file behind.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from aebench.columns import COLUMNS_FILE, Vocabulary, read_vocabulary
from aebench.files import write_atomically

PARQUET = "results.parquet"
CSV = "results.csv"


def flatten(prefix: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``{"hidden": [64]}`` -> ``{"model.hidden": "[64]"}``: scalars stay, lists become JSON."""
    out = {}
    for name, value in params.items():
        if isinstance(value, list | tuple | dict):
            value = json.dumps(value)
        out[f"{prefix}.{name}"] = value
    return out


def read_results(folder: Path) -> pd.DataFrame:
    """The table in ``folder``, or an empty one."""
    path = Path(folder) / PARQUET
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def write_results(folder: Path, table: pd.DataFrame) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / PARQUET, lambda p: table.to_parquet(p, index=False))
    write_atomically(folder / CSV, lambda p: table.to_csv(p, index=False))


def write_vocabulary(folder: Path, vocabulary: Vocabulary) -> None:
    """Save the table's column declarations beside it, added to those saved before."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    saved = read_vocabulary(folder)
    merged = vocabulary if saved is None else saved.merged(vocabulary)
    write_atomically(folder / COLUMNS_FILE, lambda p: p.write_text(merged.to_json()))


def upsert(table: pd.DataFrame, row: Mapping[str, Any]) -> pd.DataFrame:
    """The table with ``row`` in place of any earlier row of the same trial id."""
    if not table.empty and "trial_id" in table:
        table = table[table["trial_id"] != row["trial_id"]]
    new = pd.DataFrame([row])
    return new if table.empty else pd.concat([table, new], ignore_index=True)
