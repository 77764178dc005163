"""How two results tables' rows meet in ``aebench compare``: a tuned configuration by what was
fixed before its search, a configuration's seeds paired where they started alike, and trials
trained stacked counted once for their speed."""

from __future__ import annotations

import pandas as pd

from aebench.contract.columns import SEARCH_PARAMS, STACK_GROUP, START_DIGEST, is_config_column
from aebench.results.rows import canonical

TUNED = "tuned"  # a searched parameter's value, as a configuration is matched on it


def as_tuned(table: pd.DataFrame) -> pd.DataFrame:
    """The table with each tuned row's searched parameters (its ``search_params``) read as
    ``tuned``: a tuned configuration is what was fixed before its search, so that two runs of a
    tuned suite match whatever values their searches picked (a code change moves the picks)."""
    if SEARCH_PARAMS not in table:
        return table
    searched = table[SEARCH_PARAMS].map(lambda s: s.split(",") if isinstance(s, str) else [])
    table = table.copy()
    for column in sorted(set().union(*searched) & set(table.columns)):
        tuned = searched.map(lambda names, column=column: column in names)
        table[column] = table[column].astype(object).where(~tuned, TUNED)
    return table


def same_start(base_rows: pd.DataFrame, new_rows: pd.DataFrame) -> set[int]:
    """The seeds whose trials started from the same weights in both tables (their
    ``start_digest`` agree); none where a table lacks the column or has a seed twice."""
    if START_DIGEST not in base_rows or START_DIGEST not in new_rows:
        return set()
    base = base_rows.set_index("seed")[START_DIGEST].dropna()
    new = new_rows.set_index("seed")[START_DIGEST].dropna()
    if not (base.index.is_unique and new.index.is_unique):
        return set()
    return {s for s, start in base.items() if start and s in new.index and new[s] == start}


def one_per_stack(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with one trial of each stack (``stack_group``): trials trained stacked share one
    measurement of speed, each row a copy of it, which is one sample and not one a seed (4
    seeds stacked, run twice: "improved, p = 0" on one measurement a side; 4 against 8 stacked,
    the group's size alone, "regressed")."""
    if STACK_GROUP not in rows:
        return rows
    groups = rows[STACK_GROUP].fillna("").astype(str)
    return rows[(groups == "") | ~groups.duplicated()]


def settings_apart(new: pd.DataFrame, baseline: pd.DataFrame) -> list[str]:
    """The settings both tables have whose values they share none of: why no configuration
    matches (``train.stack``: trained stacked in one, alone in the other)."""

    def values(table: pd.DataFrame, column: str) -> set[str]:
        return {str(canonical(v)) for v in table[column]}

    shared = [c for c in baseline.columns if is_config_column(c) and c in new.columns]
    return [c for c in shared if not values(new, c) & values(baseline, c)]
