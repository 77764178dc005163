"""A plugin for the tests of why a column is NaN: metrics that count their calls (``CALLS``),
each with a ``scale`` to set: one that gives a NaN column its reason (``aebench.Measurement``),
one whose NaN column has none, and one that gives a reason for a column it measured."""

from __future__ import annotations

import math
from collections import Counter

from aebench import Column, Measurement, Metric, MetricContext, hookimpl

CALLS: Counter[str] = Counter()
WHY = "b is undefined here; its score needs two factors"  # a reason holding "; "


def partly(context: MetricContext, scale: float = 1.0) -> Measurement:
    """Measures a; b is NaN, for a reason it gives."""
    CALLS["partly"] += 1
    return Measurement({"partly_a": scale, "partly_b": math.nan}, reasons={"partly_b": WHY})


def silent(context: MetricContext, scale: float = 1.0) -> dict[str, float]:
    """Measures c; d is NaN, with no reason given."""
    CALLS["silent"] += 1
    return {"silent_c": scale, "silent_d": math.nan}


def overclaims(context: MetricContext) -> Measurement:
    """Gives a reason for a column it measured."""
    CALLS["overclaims"] += 1
    return Measurement({"overclaims_e": 1.0}, reasons={"overclaims_e": "not measured"})


METRICS = {
    "partly": Metric(partly, columns=[Column("partly_a"), Column("partly_b")]),
    "silent": Metric(silent, columns=[Column("silent_c"), Column("silent_d")]),
    "overclaims": Metric(overclaims, columns=[Column("overclaims_e")]),
}


@hookimpl
def aebench_register_metrics(register):
    for name, metric in METRICS.items():
        register(name, metric)
