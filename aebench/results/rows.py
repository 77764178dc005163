"""One row of the results table, as every reader spells it.

``flatten`` turns a plugin's parameters into cells, ``canonical`` gives each value one spelling
(so that 8 and 8.0, or None and NaN, match across tables), ``cell_text`` shows a cell, ``finite``
reads a measured number, and ``label`` names a configuration. The table, the report, ``aebench
compare``, the references and MLflow all use these, so a value matches and reads the same
everywhere.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from aebench.contract.columns import IDENTITY


def flatten(prefix: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``{"hidden": [64]}`` -> ``{"model.hidden": "[64]"}``: scalars stay, lists become JSON."""
    return {f"{prefix}.{name}": canonical_list(value) for name, value in params.items()}


def canonical_list(value: Any) -> Any:
    """A list, tuple or dict as the JSON text a cell holds; anything else as it is."""
    return json.dumps(value) if isinstance(value, list | tuple | dict) else value


def is_missing(value: Any) -> bool:
    """None, NaN or pandas' NA: a cell this row does not have."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def canonical(value: Any) -> Any:
    """One spelling per value as a table holds it: lists as JSON text (``flatten``), numpy
    scalars as Python's, 8.0 as 8, a missing value as None, anything else not JSON as its text."""
    value = canonical_list(value)
    if hasattr(value, "item"):  # numpy and torch scalars
        value = value.item()
    if is_missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int | float | str | bool) else str(value)


def cell_text(value: Any) -> str:
    """A cell as the reader sees it: its canonical spelling, "" where missing."""
    value = canonical(value)
    return "" if value is None else str(value)


def finite(value: Any) -> float | None:
    """A cell as a finite float, else None (NaN is 'not measured', not a value)."""
    try:  # numpy scalars from a parquet round trip
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def label(
    row: Mapping[str, Any],
    params: Sequence[str] = (),
    *,
    dataset: bool = True,
    separator: str = "/",
    short_names: bool = False,
) -> str:
    """``digits/ae/none model.latent_dim=8``: the plugins, then the ``params`` columns that tell
    this configuration apart. The report's tables, one per dataset, leave the dataset out and
    write ``ae / none latent_dim=8`` (``short_names``: without the ``model.`` prefix)."""
    names = separator.join(str(row[c]) for c in (IDENTITY if dataset else IDENTITY[1:]))
    shown = [
        f"{p.split('.', 1)[-1] if short_names else p}={cell_text(row[p])}"
        for p in params
        if not is_missing(row[p])
    ]
    return " ".join([names, *shown])
