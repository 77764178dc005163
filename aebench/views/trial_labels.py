"""Trials named as the leaderboards name their configurations: the plugins and the settings that
tell a dataset's configurations apart (``vae / none lr=10000 seed=0``, not three rows of
``vae / none seed=0`` for three learning rates); and the configurations of a dataset none of
whose seeds trained, which no leaderboard holds."""

from __future__ import annotations

import pandas as pd

from aebench.contract.columns import IDENTITY, is_config_column
from aebench.results.rows import is_missing, label


def configuration_label(table: pd.DataFrame, row: pd.Series) -> str:
    """``row``'s configuration: its plugins and its settings that vary among its dataset's
    trials in ``table`` (a model's or a regularizer's among those of the same plugin, as a
    leaderboard shows them)."""
    peers = table[table["dataset"] == row["dataset"]]
    apart = []
    for column in (c for c in table.columns if is_config_column(c) and c not in IDENTITY):
        if is_missing(row[column]):
            continue
        owner = column.split(".", 1)[0]
        values = peers[column]
        if owner in ("model", "regularizer"):
            values = values[peers[owner] == row[owner]]
        if values.astype(str).nunique() > 1:
            apart.append(column)
    return label(row, apart, dataset=False, separator=" / ", short_names=True)


def trial_label(table: pd.DataFrame, row: pd.Series) -> str:
    """``vae / none lr=10000 seed=0``: the trial's configuration and its seed."""
    return f"{configuration_label(table, row)} seed={row['seed']}"


def untrained(table: pd.DataFrame, dataset: str) -> list[str]:
    """``vae / none lr=10000 (0 of 3 seeds trained: 3 diverged)``: each configuration of
    ``dataset`` none of whose seeds trained."""
    rows = table[table["dataset"] == dataset]
    settings = [c for c in rows.columns if is_config_column(c)]
    out = []
    for _, trials in rows.groupby([rows[c].astype(str) for c in settings], sort=True):
        if (trials["status"] == "ok").any():
            continue
        counts = trials["status"].value_counts()
        told = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        name = configuration_label(table, trials.iloc[0])
        out.append(f"{name} (0 of {len(trials)} seeds trained: {told})")
    return out
