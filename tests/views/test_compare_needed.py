"""The seeds an inconclusive ``compare`` row says it needs: with that many a side, simulated runs
settle it (80% of the time or more) whether the truth is no change or a change of twice the floor
(one floor past the test's margin), the change called beside the rest of its Benjamini–Hochberg
family, two-sample or paired by seed; the count rises with the family's size and falls with the
calls already made; and a rank test's is never below the seeds its smallest p-value needs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from aebench.results.stats import better_p, seeds_needed
from aebench.views.compare_verdicts import settle

ALPHA = 0.05
DRAWS = 2_000
SPREAD, FLOOR = 1.0, 0.5  # the seeds' standard deviation, the column's floor


def family(tests: int, calls: int, pairs: int = 0, statistic: str = "mean") -> pd.DataFrame:
    """``tests`` compared columns: the first inconclusive, ``calls`` certain regressions, and the
    rest at p = 1 (changes so far inside the floor that neither way is near a call)."""
    rows = pd.DataFrame(
        {
            "verdict": "tested",
            "p_worse": 1.0,
            "p_better": 1.0,
            "p_same": 1.0,
            "change": 0.0,
            "direction": 1,
            "allowed": FLOOR,
            "spread": SPREAD,
            "pairs": pairs,  # 0: two-sample; else, the seeds paired (SPREAD is the differences')
            "statistic": statistic,
            "note": "",
            "p": np.nan,
        },
        index=range(tests),
    )
    rows.loc[1:calls, ["p_worse", "change"]] = [1e-12, -10 * FLOOR]
    rows.loc[0, ["p_worse", "p_better", "p_same"]] = 0.5
    return rows


def named(tests: int, calls: int, pairs: int = 0, statistic: str = "mean") -> int:
    settled = settle(family(tests, calls, pairs, statistic), 1 - ALPHA)
    assert list(settled["verdict"]).count("regressed") == calls
    assert settled.loc[0, "verdict"] == "inconclusive"
    return int(settled.loc[0, "note"].removeprefix("needs about ").removesuffix(" seeds a side"))


def welch_p(better: np.ndarray, worse: np.ndarray, margin: float) -> np.ndarray:
    """Per draw (rows), the one-sided p of "better beats worse by more than margin"."""
    return stats.ttest_ind(better - margin, worse, axis=1, equal_var=False, alternative="greater")[
        1
    ]


def paired_p(better: np.ndarray, worse: np.ndarray, margin: float) -> np.ndarray:
    """As ``welch_p``, paired by seed (columns): a t-test on the differences."""
    return stats.ttest_1samp(better - worse - margin, 0.0, axis=1, alternative="greater")[1]


@pytest.mark.parametrize("paired", [False, True], ids=["two-sample", "paired"])
@pytest.mark.parametrize(("tests", "calls"), [(1, 0), (81, 0), (81, 20)])
def test_the_named_seeds_settle_the_row_either_way_among_its_family(tests, calls, paired) -> None:
    n = named(tests, calls, pairs=3 if paired else 0)
    rng = np.random.default_rng(tests + calls)
    test = paired_p if paired else welch_p
    # Paired, SPREAD is the differences' spread: the baseline's own cancels out of them.
    base = np.zeros((DRAWS, n)) if paired else rng.normal(0.0, SPREAD, (DRAWS, n))

    # No change: two one-sided tests at the plain level (equivalence is not corrected).
    same = rng.normal(0.0, SPREAD, (DRAWS, n))
    tost = np.maximum(test(same, base, -FLOOR), test(base, same, -FLOOR))
    assert np.mean(tost < ALPHA) >= 0.8 - 0.03

    # Worse by twice the floor: called by Benjamini–Hochberg beside the family's other p-values
    # (2 per column: worse and better), the calls certain, the rest p = 1.
    worse = rng.normal(-2 * FLOOR, SPREAD, (DRAWS, n))
    p_worse = test(base, worse, FLOOR)
    others = np.r_[np.full(calls, 1e-12), np.ones(2 * tests - calls - 1)]
    adjusted = [stats.false_discovery_control(np.r_[p, others])[0] for p in p_worse]
    assert np.mean(np.asarray(adjusted) < ALPHA) >= 0.8 - 0.03

    # The count of one test at the plain level is short of this once the family is large.
    plain = seeds_needed(SPREAD, FLOOR, 1 - ALPHA, paired=paired)
    if tests > 1 and calls == 0:
        p_plain = test(base[:, :plain], worse[:, :plain], FLOOR)
        adjusted = [stats.false_discovery_control(np.r_[p, others])[0] for p in p_plain]
        assert np.mean(np.asarray(adjusted) < ALPHA) < 0.5


def test_pairing_needs_fewer_seeds_where_the_differences_are_less_spread() -> None:
    # Each side's spread 1. Sides uncorrelated, the differences' spread is sqrt(2): as many seeds
    # as two samples need, or a few more (a paired test has half the degrees of freedom).
    # Correlated 0.9 over seeds, it is sqrt(2 x 0.1) = 0.45: a tenth of the variance, and a
    # seventh of the seeds (21 against 149: few seeds pay more for their degrees of freedom).
    two_sample = named(81, 0)
    uncorrelated = settle(family(81, 0, pairs=3).assign(spread=np.sqrt(2)), 1 - ALPHA)
    assert two_sample <= int(uncorrelated.loc[0, "note"].split()[2]) <= two_sample + 5
    correlated = settle(family(81, 0, pairs=3).assign(spread=np.sqrt(0.2)), 1 - ALPHA)
    assert int(correlated.loc[0, "note"].split()[2]) <= two_sample / 5


@pytest.mark.parametrize("paired", [False, True], ids=["mann-whitney", "wilcoxon"])
def test_a_rank_test_is_never_named_fewer_seeds_than_its_smallest_p_allows(paired) -> None:
    # Seeds that agree to the sixth digit: a t-test would need the fewest seeds (3), but with 3
    # an exact rank test's smallest p-value is 1/8 (Wilcoxon) or 1/20 (Mann-Whitney), never a
    # call beside 161 others. At the named count, a change past the floor on every seed is called
    # beside them; one seed fewer, it is not.
    rows = family(81, 0, pairs=3 if paired else 0, statistic="median").assign(spread=1e-6)
    n = int(settle(rows, 1 - ALPHA).loc[0, "note"].split()[2])
    others = np.ones(161)
    for seeds, called in ((n, True), (n - 1, False)):
        base = np.arange(seeds, dtype=float)
        # worse on every seed, and below every baseline seed (Mann-Whitney's most extreme case)
        worse = base - seeds - 2 * FLOOR - np.linspace(0, 0.1, seeds)
        p = better_p(base, worse, "higher", margin=FLOOR, paired=paired, heavy_tailed=True)
        adjusted = stats.false_discovery_control(np.r_[p, others])[0]
        assert (adjusted < ALPHA) == called, (seeds, adjusted)


def test_the_count_rises_with_the_family_and_falls_with_its_calls() -> None:
    assert named(1, 0) < named(10, 0) < named(81, 0)
    assert named(81, 40) < named(81, 10) < named(81, 0)
