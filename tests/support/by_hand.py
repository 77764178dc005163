"""Statistics computed by hand, for tests to hold aebench's against: from the formulas, with only
a distribution's tail taken from scipy."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats


def welch_p(x: Sequence[float], y: Sequence[float], margin: float = 0.0) -> float:
    """P(T > t) of "mean(x) - mean(y) > margin", Welch's t with Welch–Satterthwaite's df."""
    nx, ny = len(x), len(y)
    mx, my = sum(x) / nx, sum(y) / ny
    vx = sum((v - mx) ** 2 for v in x) / (nx - 1) / nx
    vy = sum((v - my) ** 2 for v in y) / (ny - 1) / ny
    t = (mx - my - margin) / math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx**2 / (nx - 1) + vy**2 / (ny - 1))
    return float(stats.t.sf(t, df))  # the t distribution's tail, not the test


def seeds_for(spread: float, change: float, confidence: float = 0.95, power: float = 0.8) -> int:
    """Seeds per side of a two-sample test, by the normal approximation (a t-test's count for
    many seeds; it undercounts few), at least 3."""
    z = stats.norm.ppf(confidence) + stats.norm.ppf(power)
    return max(3, math.ceil(2 * (z * spread / change) ** 2))
