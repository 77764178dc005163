"""What ``aebench compare`` concludes about one column of one configuration: a test of NEW's seeds
against the baseline's.

Each side's seeds are a sample. With the column's floor ``δ`` as the smallest change that matters
(for a speed column, ``--speed-tolerance`` of the baseline, which the tests read as NEW against
the baseline's values scaled by 1 ± that share, ``_scaled_tests``), three one-sided tests are
made (``aebench.results.stats.better_p``):

- worse: "the baseline beats NEW by more than δ" (a regression),
- better: "NEW beats the baseline by more than δ" (an improvement),
- same: "neither beats the other by δ or more", two one-sided tests (TOST) at once.

Where at least ``MIN_SEEDS`` seeds of the configuration were measured in both tables from the
same start (their trials' ``start_digest`` agree: the same initial weights, ``aebench.run.start``),
the tests pair the two tables over those seeds: a t-test on the differences, or Wilcoxon's
signed-rank test where the column declares itself heavy-tailed. A change that left the start as
it was moves each seed's values together, and the differences are far less spread than the
seeds: a 5-epoch digits VAE trained at a learning rate of 3e-3 instead of 2e-3, over 8 seeds, had
its ELBO correlated 0.72 across the tables (Welch's p 9e-4, paired 9e-5); the quick suite against
a rerun of the same code, its values equal to 1e-5, was 12 times ``inconclusive`` unpaired
("needs about 25,971 seeds a side"), 8 times paired (speed, and the heavy-tailed column a rank
test cannot settle with 3 seeds). A change that drew other weights shares little to pair on
(the VAE's hidden layer halved: its ELBO correlated -0.3 to 0.4 by seed, over 8 and 12 seeds at
two learning rates), and a paired test would lose degrees of freedom for it (4 seeds: Welch's p
0.006, paired 0.02). Those, other seeds, tables without the column, and too few seeds alike:
independent samples, Welch's t, or Mann–Whitney U where the column is heavy-tailed.

The worse and better p-values of everything compared form one family, corrected by
Benjamini–Hochberg (``settle``); the equivalence test is not corrected, since calling a change
``unchanged`` is what the family's rejections are tested against, not a discovery of its own.
What is neither shown changed nor shown the same is ``inconclusive``: too few seeds to tell, with
the seeds per side that would settle it either way (``_needed``): enough to show it ``unchanged``
were the true change zero, and to call it changed were the true change twice the floor (one floor
past the test's margin), each 80% of the time, from the spread the test used (the differences',
paired), and never fewer than a rank test needs to reach the level at all. The second is counted
at the level the family asks of one more call: Benjamini–Hochberg calls a p-value of rank ``k``
among ``m`` at ``k alpha / m``, so beside the ``R`` calls made now one more needs
``(R + 1) alpha / m``. Counted at ``alpha`` alone, the named seeds found such a change 70% of the
time in a family of 2 p-values (one column compared) and 14-17% in one of 162 (the quick suite),
for changes of 0.3 to 1 standard deviation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aebench.contract.columns import Column
from aebench.results.stats import (
    CHANCE,
    MIN_SEEDS,
    MOST_SEEDS,
    Interval,
    benjamini_hochberg,
    better_p,
    interval,
    seeds_for_a_rank_test,
    seeds_needed,
)

Samples = pd.Series  # one side's values of a column, indexed by seed


@dataclass(frozen=True)
class Tested:
    """The tests of one column of one configuration, before the family's correction."""

    baseline: Interval
    new: Interval
    floor: float  # the smallest change that matters, in the column's unit
    p_worse: float
    p_better: float
    p_same: float
    spread: float  # the seeds' standard deviation pooled over both sides, or, paired, the
    # differences' (NaN: unknown)
    pairs: int  # the seeds the tests paired (0: the sides tested as independent samples)

    @property
    def gain(self) -> float:
        """NEW's mean minus the baseline's, or their medians' for a heavy-tailed column (in the
        better direction: > 0 is better)."""
        return self.new.centre - self.baseline.centre


def two_sample(
    base: Samples,
    new: Samples,
    column: Column,
    floor: float,
    confidence: float,
    same_start: Collection[int] = (),
    tolerance: float | None = None,
) -> Tested:
    """The three tests of NEW's seeds against the baseline's, each side's values indexed by seed,
    paired over the seeds ``same_start`` names (see the module's docstring). With a relative
    ``tolerance`` (a speed column's), ``floor`` is only what the verdict shows: the tests take
    NEW against the baseline's values scaled by ``1 ± tolerance`` (``_scaled_tests``)."""
    base, new = base[np.isfinite(base)], new[np.isfinite(new)]
    shown = {"confidence": confidence, "heavy_tailed": column.heavy_tailed}
    shown |= {"at_least": column.at_least, "at_most": column.at_most}
    intervals = interval(base.to_numpy(float), **shown), interval(new.to_numpy(float), **shown)
    x, y, paired = _pairs(base, new, same_start)
    spread = _std(x - y) if paired else _pooled_std(x, y)
    pairs = len(x) if paired else 0
    if len(base) == len(new) and np.array_equal(np.sort(base), np.sort(new)):
        # The same sample on both sides (a table against itself, even with one seed): a change of
        # exactly zero, which no test with a spread could otherwise confirm from two seeds.
        return Tested(*intervals, floor, 1.0, 1.0, 0.0, spread, pairs)
    better = column.better or "higher"
    tested = {"heavy_tailed": column.heavy_tailed, "paired": paired}
    with warnings.catch_warnings():  # seeds that agree to many digits: the test is still valid
        warnings.simplefilter("ignore", RuntimeWarning)
        if tolerance is not None:
            p_worse, p_better, p_same = _scaled_tests(x, y, better, tolerance, tested)
        else:
            p_worse = better_p(x, y, better, margin=floor, **tested)
            p_better = better_p(y, x, better, margin=floor, **tested)
            # Equivalence: NEW is not worse by the floor, and not better by it either.
            p_same = max(
                better_p(y, x, better, margin=-floor, **tested),
                better_p(x, y, better, margin=-floor, **tested),
            )
    return Tested(*intervals, floor, p_worse, p_better, p_same, spread, pairs)


def _scaled_tests(
    base: np.ndarray, new: np.ndarray, better: str, tolerance: float, tested: dict
) -> tuple[float, float, float]:
    """Worse, better and same for a relative ``tolerance``: "NEW is worse than the baseline by
    more than ``tolerance`` of it" is "the baseline times (1 - tolerance) beats NEW" (higher is
    better; 1 + tolerance where lower is), a test of NEW against the scaled baseline, whose
    spread it counts. A floor read off the baseline's mean (``tolerance`` times it) would be a
    constant to the test, its spread not counted: at the edge of "unchanged", 8 seeds a side,
    the equivalence test passed 6.4% of the time at 5% (scaled: 4.9%)."""
    low, high = base * (1 - tolerance), base * (1 + tolerance)
    worse_than, better_than = (low, high) if better == "higher" else (high, low)
    p_worse = better_p(worse_than, new, better, **tested)
    p_better = better_p(new, better_than, better, **tested)
    p_same = max(
        better_p(new, worse_than, better, **tested), better_p(better_than, new, better, **tested)
    )
    return p_worse, p_better, p_same


def _pairs(
    base: Samples, new: Samples, same_start: Collection[int]
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The two sides over the seeds both measured from the same start, in seed order, where
    there are ``MIN_SEEDS`` of them; else every value of each, unpaired."""
    seeds = sorted(s for s in set(same_start) if s in base.index and s in new.index)
    if len(seeds) < MIN_SEEDS or not (base.index.is_unique and new.index.is_unique):
        return base.to_numpy(float), new.to_numpy(float), False
    return base[seeds].to_numpy(float), new[seeds].to_numpy(float), True


def trained_share(base: pd.Series, new: pd.Series, confidence: float) -> dict[str, float | str]:
    """The test of a configuration's seeds that trained (status ``ok``), NEW against the
    baseline, where either table has a seed that did not (``share_test``). The other columns
    compare the seeds that trained, and say nothing of those that did not: a change that made 6
    seeds of 8 diverge, the other 2 as before, read "unchanged" there."""

    def told(statuses: pd.Series) -> str:
        return ", ".join(f"{n} {s}" for s, n in sorted(statuses.value_counts().items()))

    base_ok, new_ok = int((base == "ok").sum()), int((new == "ok").sum())
    tested = share_test((base_ok, len(base)), (new_ok, len(new)), confidence)
    return tested | {"note": f"seeds: {told(new)}; baseline {told(base)}"}


def measured_share(base: pd.Series, new: pd.Series, confidence: float) -> dict[str, float | str]:
    """The test of the share of a column's values that are numbers, over the seeds that trained,
    where either table has one that is not (NaN: its metric raised; infinite: a likelihood of a
    collapsed seed). The column's own test reads the numbers alone, and says nothing of the rest:
    a change that broke a metric on 5 seeds of 8, the other 3 as before, read "unchanged"
    there (``share_test``)."""
    base_numbers = int(np.isfinite(base.to_numpy(dtype=float)).sum())
    new_numbers = int(np.isfinite(new.to_numpy(dtype=float)).sum())
    tested = share_test((base_numbers, len(base)), (new_numbers, len(new)), confidence)
    note = f"a number on {new_numbers} of {len(new)} seeds; baseline {base_numbers} of {len(base)}"
    return tested | {"note": note}


def share_test(
    base: tuple[int, int], new: tuple[int, int], confidence: float
) -> dict[str, float | str]:
    """Each side's share (successes, seeds) against the other: Fisher's exact test of each way,
    one-sided, its p-values in the family (``settle``). Never ``unchanged`` (no margin on a share
    of so few seeds); each share is shown with its Clopper-Pearson interval."""
    from scipy import stats

    def interval(hits: int, n: int) -> tuple[float, float]:
        found = stats.binomtest(hits, n).proportion_ci(confidence, method="exact")
        return float(found.low), float(found.high)

    (base_hits, base_n), (new_hits, new_n) = base, new
    table = [[new_n - new_hits, new_hits], [base_n - base_hits, base_hits]]
    (base_low, base_high), (new_low, new_high) = interval(*base), interval(*new)
    return {
        "p_worse": float(stats.fisher_exact(table, alternative="greater").pvalue),
        "p_better": float(stats.fisher_exact(table, alternative="less").pvalue),
        "p_same": 1.0,
        "statistic": CHANCE,
        "baseline": base_hits / base_n,
        "baseline_low": base_low,
        "baseline_high": base_high,
        "new": new_hits / new_n,
        "new_low": new_low,
        "new_high": new_high,
        "change": new_hits / new_n - base_hits / base_n,
        "direction": 1,
        "allowed": 0.0,
        "n_baseline": base_n,
        "n_new": new_n,
    }


def _pooled_std(a: np.ndarray, b: np.ndarray) -> float:
    """The seeds' standard deviation over both sides (each side's own, ddof 1, averaged as
    variances); NaN when neither side has two seeds."""
    variances = [float(np.var(x, ddof=1)) for x in (a, b) if len(x) > 1]
    return math.sqrt(sum(variances) / len(variances)) if variances else math.nan


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def settle(rows: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """The verdicts of the tested ``rows`` (columns ``p_worse``, ``p_better``, ``p_same``,
    ``change``, ``direction``, ``allowed``, ``spread``; the others keep theirs): their worse
    and better p-values corrected together by Benjamini–Hochberg, at ``1 - confidence``."""
    rows = rows.copy()
    tested = rows["verdict"] == "tested"
    if not tested.any():
        return rows
    family = np.concatenate([rows.loc[tested, "p_worse"], rows.loc[tested, "p_better"]])
    adjusted = benjamini_hochberg(family)
    count = int(tested.sum())
    rows.loc[tested, "p_worse"], rows.loc[tested, "p_better"] = adjusted[:count], adjusted[count:]
    alpha = 1 - confidence
    # The level a further change must reach to be called beside the calls the family makes now.
    next_call = (np.count_nonzero(adjusted < alpha) + 1) * alpha / len(family)
    needed = _Needed(confidence, 1 - next_call)
    for index in rows.index[tested]:
        row = rows.loc[index]
        gain = row["change"] * row["direction"]
        # A change inside the floor is never a regression, whatever a rank test says.
        if row["p_worse"] < alpha and gain < -row["allowed"]:
            verdict, p = "regressed", row["p_worse"]
        elif row["p_better"] < alpha and gain > row["allowed"]:
            verdict, p = "improved", row["p_better"]
        elif row["p_same"] < alpha:
            verdict, p = "unchanged", row["p_same"]
        else:
            verdict, p = "inconclusive", math.nan
            if not row["note"]:  # a row that says its own (``trained_share``'s counts)
                rows.loc[index, "note"] = needed.note(row)
        rows.loc[index, ["verdict", "p"]] = [verdict, p]
    return rows


@dataclass(frozen=True)
class _Needed:
    """How many seeds a side would settle an inconclusive row (see the module's docstring)."""

    unchanged: float  # the equivalence test's confidence (uncorrected, as the test is)
    changed: float  # the confidence one more call of the family needs

    def note(self, row: pd.Series) -> str:
        """``needs about N seeds a side`` for a tested row (its ``spread``, ``allowed`` floor,
        ``pairs`` and ``statistic``: a median's is a rank test's)."""
        spread, floor, paired = row["spread"], row["allowed"], row["pairs"] > 0
        # Equivalence needs both one-sided tests: at 90% power each, both pass 80% of the time.
        to_show_unchanged = seeds_needed(spread, floor, self.unchanged, power=0.9, paired=paired)
        to_call_changed = seeds_needed(spread, floor, self.changed, paired=paired)
        if to_show_unchanged is None or to_call_changed is None:
            return "one seed a side: no spread to test against"
        needed = max(to_show_unchanged, to_call_changed)
        if needed > MOST_SEEDS:  # a seed far off the others (one that exploded, still ok)
            return f"needs more than {MOST_SEEDS:,} seeds a side"
        if row["statistic"] == "median":  # ranks: below some count no p-value is small enough
            needed = max(needed, seeds_for_a_rank_test(self.changed, paired=paired))
        return f"needs about {needed} seeds a side"
