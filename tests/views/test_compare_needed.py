"""The seeds an inconclusive ``compare`` row says it needs: with that many a side, simulated runs
settle it (80% of the time or more) whether the truth is no change or a change of twice the floor
(one floor past the test's margin), the change called beside the rest of its Benjamini–Hochberg
family; and the count rises with the family's size and falls with the calls already made."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from aebench.results.stats import seeds_needed
from aebench.views.compare_verdicts import settle

ALPHA = 0.05
DRAWS = 2_000
SPREAD, FLOOR = 1.0, 0.5  # the seeds' standard deviation, the column's floor


def family(tests: int, calls: int) -> pd.DataFrame:
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
            "note": "",
            "p": np.nan,
        },
        index=range(tests),
    )
    rows.loc[1:calls, ["p_worse", "change"]] = [1e-12, -10 * FLOOR]
    rows.loc[0, ["p_worse", "p_better", "p_same"]] = 0.5
    return rows


def named(tests: int, calls: int) -> int:
    settled = settle(family(tests, calls), 1 - ALPHA)
    assert list(settled["verdict"]).count("regressed") == calls
    assert settled.loc[0, "verdict"] == "inconclusive"
    return int(settled.loc[0, "note"].removeprefix("needs about ").removesuffix(" seeds a side"))


def welch_p(better: np.ndarray, worse: np.ndarray, margin: float) -> np.ndarray:
    """Per draw (rows), the one-sided p of "better beats worse by more than margin"."""
    return stats.ttest_ind(better - margin, worse, axis=1, equal_var=False, alternative="greater")[
        1
    ]


@pytest.mark.parametrize(("tests", "calls"), [(1, 0), (81, 0), (81, 20)])
def test_the_named_seeds_settle_the_row_either_way_among_its_family(tests, calls) -> None:
    n = named(tests, calls)
    rng = np.random.default_rng(tests + calls)
    base = rng.normal(0.0, SPREAD, (DRAWS, n))

    # No change: two one-sided tests at the plain level (equivalence is not corrected).
    same = rng.normal(0.0, SPREAD, (DRAWS, n))
    tost = np.maximum(welch_p(same, base, -FLOOR), welch_p(base, same, -FLOOR))
    assert np.mean(tost < ALPHA) >= 0.8 - 0.03

    # Worse by twice the floor: called by Benjamini–Hochberg beside the family's other p-values
    # (2 per column: worse and better), the calls certain, the rest p = 1.
    worse = rng.normal(-2 * FLOOR, SPREAD, (DRAWS, n))
    p_worse = welch_p(base, worse, FLOOR)
    others = np.r_[np.full(calls, 1e-12), np.ones(2 * tests - calls - 1)]
    adjusted = [stats.false_discovery_control(np.r_[p, others])[0] for p in p_worse]
    assert np.mean(np.asarray(adjusted) < ALPHA) >= 0.8 - 0.03

    # The count of one test at the plain level is short of this once the family is large.
    plain = seeds_needed(SPREAD, FLOOR, 1 - ALPHA)
    if tests > 1 and calls == 0:
        p_plain = welch_p(base[:, :plain], worse[:, :plain], FLOOR)
        adjusted = [stats.false_discovery_control(np.r_[p, others])[0] for p in p_plain]
        assert np.mean(np.asarray(adjusted) < ALPHA) < 0.5


def test_the_count_rises_with_the_family_and_falls_with_its_calls() -> None:
    assert named(1, 0) < named(10, 0) < named(81, 0)
    assert named(81, 40) < named(81, 10) < named(81, 0)
