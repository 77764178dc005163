"""Which configuration of a column is best, decided by tests over seeds rather than by a mean.

The configuration with the best mean (a heavy-tailed column's: median) is ``best`` only where tests
say it is better than every other one at the chosen confidence, the p-values corrected for the
number of comparisons (Holm); otherwise the configurations not shown worse than it, among every pair
at once, are ``tied`` with it (``top_verdict``). Each test of the top is two-sided: which
configuration is the top is read off the same seeds, so "the top is better" is a claim in a
direction the data chose (with one-sided tests, one of two equal configurations was called best 10%
of the time at 95%). Two configurations are compared paired over the seeds whose trials started from
the same weights in both (``Leaderboard.samples`` indexes each value by its seed and its trial's
``start_digest``), where they share at least ``MIN_SEEDS`` of them: one model under two
regularizers, say, whose seed draws the same initialisation and batches for both, so a paired test
removes that variation (a t-test on the differences, or Wilcoxon's signed-rank test for a
heavy-tailed column; a failed seed leaves one a seed short, and the test stands on the others).
Otherwise, two models whose seeds draw different weights, they are compared unpaired (Welch's t, or
Mann–Whitney U for a heavy-tailed column): their seeds share the batches' order at most, and pairing
them would cost degrees of freedom for little (a halved hidden layer: its ELBO correlated -0.3 to
0.4 by seed with the full one's; ``on_shared_seeds``). How often each beats the next in a ranking is
the probability of improvement (rliable's P(X > Y)) over the seeds both have, whatever their starts
(``beats_next`` says why its interval holds either way), and unpaired, with no interval, with fewer
than ``MIN_SEEDS`` shared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from aebench.contract.columns import START_DIGEST
from aebench.results.stats import (
    DEFAULT_CONFIDENCE,
    MIN_SEEDS,
    Interval,
    better_p,
    holm,
    improvement_interval,
)

Samples = pd.Series  # one configuration's values of a column, indexed by seed (and start)


@dataclass(frozen=True)
class TopVerdict:
    """The top of one set of comparable configurations (positions in a leaderboard)."""

    top: int  # the best mean
    best: bool  # better than every other one at the confidence, after Holm
    tied: list[int]  # the top and those not shown worse than it (just [top] when ``best``)
    # Per other one: the Holm-adjusted two-sided p of "the top is better", in the family that
    # decided (the top's comparisons where it is best, else every pair's: ``top_verdict``)
    adjusted: dict[int, float]
    comparisons: int  # the p-values of that family (NaN ones, too few values, left out)


def samples_of(trials: pd.DataFrame, metric: str, unknown: str) -> Samples:
    """A configuration's values of ``metric`` (NaN: not measured), indexed by (seed, start): the
    seed and the weights its trial started from (``start_digest``), so that two configurations
    pair over the seeds that started alike. A trial whose start is not known (a table older than
    the column) has ``unknown``, a start of its configuration's own: it pairs with none."""
    starts = trials.get(START_DIGEST, pd.Series(index=trials.index, dtype=object))
    starts = [s if isinstance(s, str) and s else unknown for s in starts]
    # An index of (seed, start) tuples: a report builds hundreds (a MultiIndex took 30x longer)
    keys = list(zip(trials["seed"].tolist(), starts, strict=True))
    index = pd.Index(keys, dtype=object, tupleize_cols=False)
    return pd.Series(trials[metric].to_numpy(dtype=float), index=index)


def by_seed(samples: Samples) -> Samples:
    """The values indexed by seed alone (``samples_of``'s start left out)."""
    seeds = [key[0] if isinstance(key, tuple) else key for key in samples.index]
    return pd.Series(samples.to_numpy(), index=seeds)


def aligned(a: Samples, b: Samples) -> tuple[np.ndarray, np.ndarray, bool]:
    """The two samples as arrays, and whether they pair: both measured on the same seeds."""
    a, b = a.dropna(), b.dropna()
    if len(a) and set(a.index) == set(b.index) and a.index.is_unique and b.index.is_unique:
        return a.sort_index().to_numpy(float), b.sort_index().to_numpy(float), True
    return a.to_numpy(float), b.to_numpy(float), False


def top_verdict(
    samples: dict[int, Samples],
    better: str,
    *,
    heavy_tailed: bool = False,
    confidence: float = DEFAULT_CONFIDENCE,
) -> TopVerdict | None:
    """The verdict on ``samples`` (position -> values by seed) of a column where ``better`` is
    "higher" or "lower"; None with fewer than two configurations that have a value. The top is
    the best mean (median, for a ``heavy_tailed`` column: what its cells show).

    It is best where its tests against each other one, Holm-corrected, all say it is better: a
    claim that fails only if one of those tests does. Where it is not, the ones shown worse than
    it are tested among every pair at once: the top was picked by the same seeds, so its
    comparisons are the widest gaps of all the pairs'. Among equal configurations (5 or 8 of
    them, 5 or 10 seeds, paired or not; 400 draws each) Holm over the top's own comparisons left
    one out of the tied 6-12% of the time at 95%, over every pair 1.5-3.7%."""
    sign = 1.0 if better == "higher" else -1.0
    centre = pd.Series.median if heavy_tailed else pd.Series.mean
    means = {i: float(centre(s)) for i, s in samples.items() if s.notna().any()}
    if len(means) < 2:
        return None
    ranked = sorted(means, key=lambda i: (-sign * means[i], i))  # ties: the first position
    top, others = ranked[0], ranked[1:]

    def two_sided(ahead: int, behind: int) -> float:
        """The p of "ahead is better than behind", doubled: which one is ahead was read off
        the same values (one-sided, one of two equal configurations was called best 10% of
        the time at 95%). NaN where a side has too few values to test."""
        a, b, paired = on_shared_seeds(samples[ahead], samples[behind])
        one_sided = better_p(a, b, better, paired=paired, heavy_tailed=heavy_tailed)
        return min(1.0, 2 * one_sided) if np.isfinite(one_sided) else math.nan

    to_top = [two_sided(top, i) for i in others]
    adjusted = dict(zip(others, holm(to_top), strict=True))
    if all(adjusted[i] < 1 - confidence for i in others):  # NaN: not shown worse
        return TopVerdict(top, True, [top], adjusted, int(np.isfinite(to_top).sum()))
    pairs = list(combinations(ranked, 2))  # (ahead, behind): the top's pairs first
    p = to_top + [two_sided(*pair) for pair in pairs[len(others) :]]
    every = holm(p)
    adjusted = {behind: float(every[k]) for k, (_, behind) in enumerate(pairs[: len(others)])}
    shown_worse = {i for i in others if adjusted[i] < 1 - confidence}
    tied = [top, *(i for i in means if i != top and i not in shown_worse)]  # in position order
    return TopVerdict(top, False, tied, adjusted, int(np.isfinite(p).sum()))


def on_shared_seeds(a: Samples, b: Samples) -> tuple[np.ndarray, np.ndarray, bool]:
    """As ``aligned``, but paired over the seeds both have (by seed and start, as ``samples_of``
    indexes them) where there are ``MIN_SEEDS`` of them (each seed once), the others left out;
    unpaired, all values, otherwise."""
    x, y, paired = aligned(a, b)
    a, b = a.dropna(), b.dropna()
    if paired and len(x) < MIN_SEEDS:  # 2 seeds alike: no pairs to test, as no interval
        return x, y, False
    if paired or not (a.index.is_unique and b.index.is_unique):
        return x, y, paired
    shared = sorted(set(a.index) & set(b.index))
    if len(shared) < MIN_SEEDS:
        return x, y, False
    return a[shared].to_numpy(float), b[shared].to_numpy(float), True


def beats_next(samples: list[Samples], better: str) -> list[Interval]:
    """For configurations in ranked order, the probability that each beats the next (paired over
    the seeds they share, ``on_shared_seeds``, whatever their starts) with its interval; the last
    has no next and is left out.

    Unlike the tests, this pairs seeds that started apart too: it is the share of seeds on which
    one beats the other, and each seed's pair is drawn apart from every other seed's, whatever
    its two values share, so Clopper-Pearson's interval over the pairs holds either way (the
    unpaired share of all n x m pairs has none: they are not independent)."""
    out = []
    for a, b in zip(samples, samples[1:], strict=False):
        x, y, paired = on_shared_seeds(by_seed(a), by_seed(b))
        out.append(improvement_interval(x, y, better, paired=paired))
    return out
