"""How a value is written in a report's cell: numbers to four significant digits, a mean over seeds
with its interval (``mean ± half-width``, or that there is none), and the arrow that says which
way a column is better."""

from __future__ import annotations

import math

import numpy as np

from aebench.contract.columns import Vocabulary
from aebench.results.stats import Interval

ORDINARY = (1e-4, 1e7)  # magnitudes written out in digits; beyond them, scientific notation


def format_number(x: float, digits: int = 4) -> str:
    """``x`` for reading: an integer as an integer, else ``digits`` significant digits, written
    out for ordinary magnitudes (``6182``, ``0.0123``) and in scientific notation beyond them."""
    if not math.isfinite(x):
        return "–"
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))  # 19790, not 1.979e+04; and -0.0 is 0
    if ORDINARY[0] <= abs(x) < ORDINARY[1]:
        return np.format_float_positional(
            x, precision=digits, unique=False, fractional=False, trim="-"
        )
    return f"{x:.{digits - 1}e}"


def format_cell(mean: float, std: float) -> str:
    """``mean ± std``: the mean to four significant digits, the spread to two; the mean alone with
    a single seed (no spread) or a spread of exactly 0."""
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(std) or std == 0:
        return format_number(mean)
    return f"{format_number(mean)} ± {format_number(std, 2)}"


def arrow(metric: str, vocabulary: Vocabulary) -> str:
    """`` ↑`` after a column where higher is better, `` ↓`` where lower is, else nothing."""
    return {1: " ↑", -1: " ↓"}.get(vocabulary.direction(metric), "")


def interval_cell(found: Interval, seeds: int | None = None) -> str:
    """A mean over seeds and its interval: ``mean ± half-width`` (Student's t), ``median 2.5
    [low, high]`` (a heavy-tailed column's median and its distribution-free interval; a
    probability's asymmetric one likewise in brackets), or ``mean (2 seeds: no interval)``; its
    ``(n=4)`` where fewer seeds than the row's ``seeds`` have a value."""
    if not math.isfinite(found.centre):
        return "–"
    shown = format_number(found.centre)
    if found.statistic == "median":
        shown = f"median {shown}"
    if not found.exists:
        return f"{shown} ({found.note()})"
    below, above = found.centre - found.low, found.high - found.centre
    if found.statistic == "mean" and math.isclose(
        below, above, rel_tol=1e-6, abs_tol=1e-12 * abs(found.centre)
    ):
        text = format_cell(found.centre, above)
    else:
        low, high = format_number(found.low, 3), format_number(found.high, 3)
        text = f"{shown} [{low}, {high}]"
    return text + (f" (n={found.n})" if seeds is not None and found.n < seeds else "")
