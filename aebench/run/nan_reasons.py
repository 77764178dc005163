"""Why a row's columns are NaN: its ``nan_reasons``, written from the metrics' reasons and read
back for the metrics that ``aebench evaluate`` keeps.

A reason is keyed by a metric (all its columns are NaN: it did not apply) or by one column (the
metric measured its other columns, ``aebench.Measurement(reasons=...)``). A NaN that its metric
gave no reason for is said to be one (``NO_REASON``): a number that is missing without a word
reads as if nothing were wrong.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from aebench.results.rows import is_missing

NO_REASON = "the metric returned NaN and gave no reason"


def column_reasons(values: Mapping[str, float], reasons: Mapping[str, str]) -> dict[str, str]:
    """Each NaN column of a metric that measured: its reason, else ``NO_REASON``."""
    return {column: reasons.get(column, NO_REASON) for column, v in values.items() if is_missing(v)}


def nan_reasons(reasons: Mapping[str, str]) -> str:
    """``"metric_a, metric_b: why; column_c: why"``: names sharing a reason share its entry."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in reasons.items():
        by_reason.setdefault(reason, []).append(name)
    return "; ".join(f"{', '.join(names)}: {reason}" for reason, names in by_reason.items())


def parse_nan_reasons(text: str, known: Collection[str]) -> dict[str, str]:
    """Name -> reason, read back from what ``nan_reasons`` wrote. An entry starts where a part
    names ``known`` metrics or columns only; any other part is the previous reason's own text
    (a reason may hold "; ")."""
    parsed: dict[str, str] = {}
    names: list[str] = []
    for part in text.split("; ") if text else []:
        head, colon, reason = part.partition(": ")
        if colon and set(head.split(", ")) <= set(known):
            names = head.split(", ")
            parsed |= dict.fromkeys(names, reason)
        elif names:
            parsed |= {name: f"{parsed[name]}; {part}" for name in names}
    return parsed
