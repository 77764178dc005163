"""Trials named as the leaderboards name their configurations: the plugins and the settings that
tell a dataset's configurations apart (``vae / none lr=10000 seed=0``, not three rows of
``vae / none seed=0`` for three learning rates); and the configurations of a dataset none of
whose seeds trained, which no leaderboard holds."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from aebench.contract.columns import IDENTITY, is_config_column
from aebench.results.rows import is_missing, label

OWNERS = ("model", "regularizer")  # a setting of theirs varies among their own trials only


def configuration_labels(table: pd.DataFrame) -> Callable[[pd.Series], str]:
    """A row of ``table`` -> its configuration: its plugins and its settings that vary among its
    dataset's trials (a model's or a regularizer's among those of the same plugin, as a
    leaderboard shows them); which settings vary is worked out once, for every row."""
    settings = [c for c in table.columns if is_config_column(c) and c not in IDENTITY]
    text = table[settings].astype(str)
    varying: dict[str, pd.DataFrame] = {}  # owner ("" for the others) -> key -> column -> varies
    owners = {c: c.split(".", 1)[0] for c in settings}
    owners = {c: owner if owner in OWNERS else "" for c, owner in owners.items()}
    for owner in ("", *OWNERS):
        columns = [c for c in settings if owners[c] == owner]
        keys = ["dataset", owner] if owner else ["dataset"]
        grouped = text[columns].groupby([table[k] for k in keys], sort=False)
        varying[owner] = grouped.nunique() > 1

    def name(row: pd.Series) -> str:
        apart = []
        for owner, varies in varying.items():
            key = (row["dataset"], row[owner]) if owner else row["dataset"]
            flags = varies.loc[key]
            apart += [c for c in varies.columns if flags[c] and not is_missing(row[c])]
        apart.sort(key=settings.index)
        return label(row, apart, dataset=False, separator=" / ", short_names=True)

    return name


def untrained(table: pd.DataFrame, dataset: str) -> list[str]:
    """``vae / none lr=10000 (0 of 3 seeds trained: 3 diverged)``: each configuration of
    ``dataset`` none of whose seeds trained."""
    rows = table[table["dataset"] == dataset]
    if (rows["status"] == "ok").all():
        return []
    name = configuration_labels(table)  # one per configuration: its settings tell it apart
    out = []
    for configuration, trials in rows.groupby(rows.apply(name, axis=1), sort=True):
        if (trials["status"] == "ok").any():
            continue
        counts = trials["status"].value_counts()
        told = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        out.append(f"{configuration} (0 of {len(trials)} seeds trained: {told})")
    return out
