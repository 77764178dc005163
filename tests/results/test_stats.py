"""aebench.results.stats against independent computations: the t interval by its formula with a
tabled quantile, Welch's p by hand with the Welch–Satterthwaite degrees of freedom, an exact
Mann–Whitney p by counting, Holm and Benjamini–Hochberg on worked examples, the probability of
improvement by brute force, the seeds needed by the normal formula, and a median's interval by
its order statistics, counted by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from by_hand import welch_p
from scipy import stats as scipy_stats

from aebench.results.stats import (
    benjamini_hochberg,
    better_p,
    holm,
    improvement_interval,
    interval,
    probability_of_improvement,
    seeds_for_a_median,
    seeds_needed,
    summary_interval,
)

NAN = float("nan")


def test_the_t_interval_is_the_mean_plus_minus_the_tabled_quantile_times_the_standard_error():
    values = [1.0, 2.0, 4.0, 7.0, 11.0]  # mean 5, sample variance 16.5
    mean, sem = 5.0, math.sqrt(16.5 / 5)
    t_975_4 = 2.7764451  # Student's t, 4 degrees of freedom, 97.5% quantile (a printed table)
    found = interval(values)
    assert found.centre == pytest.approx(mean) and found.statistic == "mean"
    assert (found.low, found.high) == pytest.approx((mean - t_975_4 * sem, mean + t_975_4 * sem))
    assert found.n == 5 and found.note() == "95% CI, 5 seeds"


def test_fewer_than_three_seeds_have_no_interval_and_say_so():
    found = interval([1.0, 2.0, NAN])  # a failed seed's NaN is not a sample
    assert found.n == 2 and not found.exists and math.isnan(found.half_width)
    assert found.note() == "2 seeds: no interval"
    assert interval([3.0]).note() == "1 seed: no interval"


@pytest.mark.parametrize("margin", [0.0, 0.5, -0.5])
def test_welchs_p_is_the_hand_computed_one_with_welch_satterthwaite_df(margin):
    a, b = [10.0, 11.5, 12.0, 10.8], [9.0, 9.4, 10.9]
    assert better_p(a, b, "higher", margin=margin) == pytest.approx(welch_p(a, b, margin))
    # Lower is better: the same test on the negated values.
    neg_a, neg_b = [-v for v in a], [-v for v in b]
    assert better_p(neg_a, neg_b, "lower", margin=margin) == pytest.approx(welch_p(a, b, margin))


def test_the_paired_p_is_a_one_sample_t_on_the_seeds_differences():
    a, b = [3.0, 4.5, 5.0, 6.5], [2.0, 4.0, 3.5, 6.0]
    d = [x - y for x, y in zip(a, b, strict=True)]  # 1, 0.5, 1.5, 0.5
    mean, sd = sum(d) / 4, math.sqrt(sum((v - sum(d) / 4) ** 2 for v in d) / 3)
    t = mean / (sd / 2)
    assert better_p(a, b, "higher", paired=True) == pytest.approx(scipy_stats.t.sf(t, 3))


@pytest.mark.parametrize("margin", [0.0, 0.25])
def test_a_heavy_tailed_paired_p_is_wilcoxons_exact_by_flipping_signs(margin):
    # Paired seeds of a heavy-tailed column: the signed ranks of the differences. Under "no
    # difference" each difference's sign is a coin flip: p is the share of the 2**6 flips whose
    # sum of positive ranks is at least the observed one.
    a, b = [4.0, 5.5, 3.0, 9.0, 60.0, 4.3], [3.0, 5.0, 3.2, 7.0, 2.0, 4.0]
    d = [x - y - margin for x, y in zip(a, b, strict=True)]  # no ties, no zeros in |d|
    ranks = [sorted(abs(v) for v in d).index(abs(v)) + 1 for v in d]
    observed = sum(r for r, v in zip(ranks, d, strict=True) if v > 0)
    flips = list(itertools.product([False, True], repeat=len(d)))
    at_least = [sum(r for r, up in zip(ranks, f, strict=True) if up) >= observed for f in flips]
    found = better_p(a, b, "higher", paired=True, heavy_tailed=True, margin=margin)
    assert found == pytest.approx(sum(at_least) / len(flips))
    # The far-off seed (60 against 2) is one rank: the t-test on the differences is swayed by it.
    assert found != pytest.approx(better_p(a, b, "higher", paired=True, margin=margin))


def test_the_mann_whitney_p_with_few_seeds_is_exact_by_counting():
    # Every a above every b: of the C(6, 3) = 20 equally likely splits, one is as extreme.
    assert better_p([4.0, 5.0, 6.0], [1.0, 2.0, 3.0], "higher", heavy_tailed=True) == (
        pytest.approx(1 / 20)
    )
    # By counting, in general: the share of splits whose U is at least the observed one.
    a, b = [4.0, 1.5, 6.0], [1.0, 2.0, 3.0]
    pooled = a + b
    observed = sum(x > y for x in a for y in b)
    splits = list(itertools.combinations(range(6), 3))
    extreme = sum(
        sum(pooled[i] > pooled[j] for i in s for j in set(range(6)) - set(s)) >= observed
        for s in splits
    )
    assert better_p(a, b, "higher", heavy_tailed=True) == pytest.approx(extreme / len(splits))


def test_holm_on_a_worked_example():
    # Sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 -> max(0.06, 0.04).
    adjusted = holm([0.01, 0.04, 0.03, 0.005, NAN])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])


def test_benjamini_hochberg_on_a_worked_example():
    # Sorted p x m / rank: 0.005 x 4/1 = 0.02, 0.01 x 4/2 = 0.02, 0.03 x 4/3 = 0.04,
    # 0.04 x 4/4 = 0.04; each the minimum of those at or above its rank.
    adjusted = benjamini_hochberg([0.01, 0.04, 0.03, 0.005, NAN])
    assert adjusted[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert math.isnan(adjusted[4])
    # Step-up: a larger p can lift a smaller one's rank (0.02 x 3/2 = 0.03 > 0.021 x 3/3).
    assert benjamini_hochberg([0.001, 0.02, 0.021]) == pytest.approx([0.003, 0.021, 0.021])


def test_the_probability_of_improvement_counts_every_pair_of_seeds():
    a, b = [3.0, 1.0, 2.0, NAN], [2.0, 0.5, 4.0]
    pairs = [(x, y) for x in a for y in b if not (math.isnan(x) or math.isnan(y))]
    brute = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in pairs) / len(pairs)
    assert probability_of_improvement(a, b, "higher") == pytest.approx(brute)
    assert probability_of_improvement(a, b, "lower") == pytest.approx(1 - brute)
    paired = probability_of_improvement([3.0, 1.0, 2.0], [2.0, 1.0, 4.0], "higher", paired=True)
    assert paired == pytest.approx((1 + 0.5 + 0) / 3)


def test_the_probability_of_improvement_has_clopper_pearsons_interval_over_paired_seeds():
    from scipy.stats import beta

    won = improvement_interval([3.0, 2.0, 5.0], [1.0, 1.0, 1.0], "higher", paired=True)
    assert (won.centre, won.high, won.n) == (1.0, 1.0, 3)
    assert won.low == pytest.approx(0.025 ** (1 / 3))  # all n won: the lower bound is (a/2)^(1/n)
    # 2 wins, 1 tie, 1 loss of 4: the tie a loss below and a win above (beta quantiles)
    tied = improvement_interval([2.0, 2.0, 5.0, 0.0], [1.0, 2.0, 1.0, 1.0], "higher", paired=True)
    assert tied.centre == pytest.approx(2.5 / 4)
    assert tied.low == pytest.approx(beta.ppf(0.025, 2, 3))
    assert tied.high == pytest.approx(beta.ppf(0.975, 4, 1))
    assert not improvement_interval([3.0, 2.0], [1.0, 1.0], "higher", paired=True).exists
    unpaired = improvement_interval([3.0, 2.0, 5.0], [1.0, 1.0, 1.0], "higher", paired=False)
    assert unpaired.centre == 1.0 and unpaired.note() == "unpaired seeds: no interval"


def test_seeds_needed_are_the_fewest_whose_t_test_has_the_power_by_simulation():
    # 1 sd of spread, a change of 1 sd: simulated one-sided t-tests at 95% (40,000 each) find the
    # change 80% of the time or more with the seeds it names, and less with one seed fewer.
    needed = seeds_needed(1.0, 1.0)
    rng = np.random.default_rng(0)

    def simulated_power(n: int, change: float = 1.0) -> float:
        base, new = rng.normal(0.0, 1.0, (40_000, n)), rng.normal(change, 1.0, (40_000, n))
        p = scipy_stats.ttest_ind(new, base, axis=1, alternative="greater").pvalue
        return float(np.mean(p < 0.05))

    assert simulated_power(needed) >= 0.8 - 0.006 and simulated_power(needed - 1) < 0.8
    # Few seeds: 3 a side find a change of 2.2 sd 72% of the time, 4 86%, so 4 are named; the
    # normal formula, 2 (z_0.95 + z_0.8)^2 / 2.2^2 = 2.55, named 3.
    assert simulated_power(3, 2.2) < 0.8 <= simulated_power(4, 2.2)
    assert seeds_needed(1.0 / 2.2, 1.0) == 4
    # Many: the normal formula, 2 x (1.6449 + 0.8416)^2 x 12^2 = 1781.1, to a seed.
    assert abs(seeds_needed(12.0, 1.0) - 1781.1) <= 1
    assert seeds_needed(0.01, 1.0) == 3  # never below the seeds an interval needs
    assert seeds_needed(NAN, 1.0) is None and seeds_needed(1.0, 0.0) is None


def _median_bounds_by_hand(n: int, confidence: float) -> tuple[int, int] | None:
    """The 1-based ranks (k, n - k + 1) of the widest-k order statistics whose interval holds the
    median with probability 1 - 2 P(Binomial(n, 1/2) <= k - 1) >= confidence: the largest such
    k; None where even the lowest and highest values fall short (2 / 2**n > 1 - confidence)."""

    def outside(k: int) -> float:  # P(median below x_(k)) + P(above x_(n-k+1))
        return 2 * sum(math.comb(n, j) for j in range(k)) / 2**n

    ks = [k for k in range(1, n // 2 + 1) if outside(k) <= 1 - confidence]
    return (max(ks), n - max(ks) + 1) if ks else None


@pytest.mark.parametrize("n", [6, 7, 9, 10, 16, 25])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_a_heavy_tailed_interval_is_the_median_between_order_statistics(n, confidence):
    values = np.random.default_rng(n).standard_cauchy(n) * 10 + 100
    found = interval(values, confidence, heavy_tailed=True)
    assert found.statistic == "median" and found.centre == pytest.approx(np.median(values))
    ranks = _median_bounds_by_hand(n, confidence)
    if ranks is None:
        assert not found.exists and n < seeds_for_a_median(confidence)
        return
    ordered = np.sort(values)
    assert (found.low, found.high) == (ordered[ranks[0] - 1], ordered[ranks[1] - 1])


def test_a_median_needs_six_seeds_for_a_95_percent_interval_and_says_so():
    # 1 - 2 / 2**n >= 0.95 first at n = 6 (0.969); 0.9 at 5 (0.9375), 0.99 at 8 (0.992)
    assert [seeds_for_a_median(c) for c in (0.9, 0.95, 0.99)] == [5, 6, 8]
    five = interval([1.0, 2.0, 3.0, 50.0, 4.0, NAN], heavy_tailed=True)
    assert not five.exists and five.centre == 3.0 and five.n == 5
    assert five.note() == "5 seeds: no interval, a median's needs 6"
    six = interval([1.0, 2.0, 3.0, 50.0, 4.0, 5.0], heavy_tailed=True)
    assert (six.centre, six.low, six.high) == (3.5, 1.0, 50.0)


def test_the_median_interval_covers_a_heavy_tailed_median_as_often_as_it_says():
    # A seed far off the others one time in ten: 2,000 samples of 10 seeds. The median interval
    # covers the median at least 95% of the time (for 10 seeds, [x_(2), x_(9)]: 97.9%); the
    # mean's t interval covers the mean (106) far less: a sample without a far seed misses it.
    rng = np.random.default_rng(0)
    draws = rng.normal(100.0, 5.0, (2000, 10)) + 60.0 * (rng.random((2000, 10)) < 0.1)
    median = 100.0 + 5.0 * _contaminated_median_offset()
    medians = [interval(d, heavy_tailed=True) for d in draws]
    means = [interval(d) for d in draws]
    covered = np.mean([m.low <= median <= m.high for m in medians])
    assert covered >= 0.95
    assert np.mean([m.low <= 106.0 <= m.high for m in means]) < 0.9


def _contaminated_median_offset() -> float:
    """The median of 0.9 N(0, 1) + 0.1 N(12, 1) in units of the sd: where the mixture's cdf is
    one half (scipy's root finder on the cdf; an independent check of nothing but the target)."""
    from scipy import optimize
    from scipy.stats import norm

    return optimize.brentq(lambda z: 0.9 * norm.cdf(z) + 0.1 * norm.cdf(z - 12) - 0.5, -3, 3)


def test_a_summary_gives_the_interval_of_its_values() -> None:
    values = np.array([1.0, 2.5, 2.0, 4.0])
    kept = summary_interval(values.mean(), values.std(ddof=1), len(values))
    assert kept == interval(values)
    assert not summary_interval(1.0, 0.5, 2).exists  # 2 seeds: no interval


def test_an_interval_is_cut_at_the_values_its_column_can_take() -> None:
    # Three accuracies near 1: the t interval, 0.98 +- 4.303 x 0.0265 / sqrt(3), reaches 1.046;
    # an accuracy's mean cannot, so the interval stops at 1 and keeps its lower end.
    values = [0.95, 0.99, 1.0]
    t = scipy_stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)
    cut = interval(values, at_least=0.0, at_most=1.0)
    assert cut.centre == pytest.approx(0.98)
    assert (cut.low, cut.high) == (pytest.approx(0.98 - t), 1.0) and 0.98 + t > 1.0
    # A throughput's: never below 0.
    assert interval([100.0, 5.0, 9000.0], at_least=0.0).low == 0.0
    # Within the range, nothing changes.
    assert interval([0.5, 0.6, 0.7], at_least=0.0, at_most=1.0) == interval([0.5, 0.6, 0.7])


def test_two_seeds_without_spread_are_no_test_and_three_are_the_t_tests_limit() -> None:
    # A coarse column (an accuracy on a grid of 1/50) repeats itself on two seeds by chance
    # often: were that certain (p = 0), no correction for the number of rows could undo it.
    assert math.isnan(better_p([0.98, 0.98], [0.96, 0.96], "higher"))
    assert math.isnan(better_p([0.98, 0.98], [0.96, 0.96], "higher", paired=True))
    # From 3 seeds, the limit of the t-test as the spread goes to 0.
    assert better_p([0.98] * 3, [0.96] * 3, "higher") == 0.0
    assert better_p([0.96] * 3, [0.98] * 3, "higher") == 1.0
    assert better_p([0.98] * 3, [0.96] * 3, "higher", paired=True) == 0.0
    nearly = better_p([0.98, 0.98 + 1e-9, 0.98], [0.96, 0.96, 0.96 + 1e-9], "higher")
    assert nearly < 1e-6  # where a sliver of spread leads


def test_seeds_all_equal_give_no_interval_and_say_why() -> None:
    # A count near its bound repeats itself over a few seeds: no evidence the next one will.
    found = interval([8.0, 8.0, 8.0])
    assert found.centre == 8.0 and not found.exists
    assert found.note() == "3 seeds, all equal: no interval"
    assert not summary_interval(8.0, 0.0, 3).exists
    assert interval([8.0, 8.0, 7.0]).exists
