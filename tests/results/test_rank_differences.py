"""The post-hoc test of ranks across datasets (``rank_differences``): each pair's p against the
permutation distribution of the largest difference of mean ranks, checked by counting every
shuffle, and its error rate with every configuration alike, counted over every table of ranks."""

from __future__ import annotations

import math
from itertools import permutations, product

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp

from aebench.results.stats import RESHUFFLES, friedman, rank_differences
from aebench.views import across


def _largest(rows: tuple[tuple[float, ...], ...]) -> float:
    means = np.mean(rows, axis=0)
    return float(means.max() - means.min())


def test_each_pair_p_is_the_share_of_shuffles_whose_largest_difference_is_as_large() -> None:
    ranks = np.array([[1, 2, 3], [2, 1, 3], [1, 3, 2], [1, 2, 3]], dtype=float)
    found = rank_differences(ranks)
    assert found.exact and len(found.largest) == 6**4
    shuffled = np.array(
        [_largest(rows) for rows in product(*(list(permutations(row)) for row in ranks))]
    )
    means = ranks.mean(axis=0)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        by_count = np.mean(shuffled >= abs(means[i] - means[j]) - 1e-9)
        assert found.p[i, j] == found.p[j, i] == pytest.approx(by_count)
    assert found.p[0, 2] == pytest.approx(0.125)  # mean ranks 1.25 and 2.75: not apart
    # The critical difference: the smallest largest-difference that chance reaches <= 5%.
    levels = sorted(set(np.round(shuffled, 9)))
    critical = min(d for d in levels if np.mean(shuffled >= d - 1e-9) <= 0.05)
    assert found.critical(0.95) == pytest.approx(critical) == pytest.approx(1.75)


def test_with_every_configuration_alike_a_pair_is_told_apart_at_most_as_often_as_stated() -> None:
    # Three configurations on three datasets: every table of ranks, each as likely under the
    # null. Counted, not drawn: the share of tables where some pair is told apart at 95%.
    orders = list(permutations((1.0, 2.0, 3.0)))
    tables = [np.array(rows) for rows in product(orders, repeat=3)]
    ours = np.mean([(rank_differences(t).p <= 0.05).any() for t in tables])
    assert 0 < ours <= 0.05
    nemenyi = np.mean([(sp.posthoc_nemenyi_friedman(t).to_numpy() < 0.05).any() for t in tables])
    assert ours >= nemenyi  # never says less than the studentized range's limit here


def test_two_datasets_that_rank_six_alike_tell_the_best_from_the_worst() -> None:
    # The second dataset puts the first's best first and its worst last 1 time in 6 x 5 = 30;
    # Nemenyi's limit calls the pair alike (p > 0.05).
    ranks = np.array([range(1, 7), range(1, 7)], dtype=float)
    found = rank_differences(ranks)
    assert not found.exact  # 6!^2 shuffles: drawn
    assert abs(found.p[0, 5] - 1 / 30) < 4 * math.sqrt(1 / 30 / RESHUFFLES)
    assert (found.p[0, 5] <= 0.05) and (found.p[np.triu_indices(6, 1)] <= 0.05).sum() == 1
    assert sp.posthoc_nemenyi_friedman(ranks).to_numpy()[0, 5] > 0.05


def test_too_few_datasets_tell_nothing_apart_and_say_so() -> None:
    # Two datasets and three configurations: the same ranking on both comes 1 time in 3! = 6.
    found = rank_differences(np.array([[1, 2, 3], [1, 2, 3]], dtype=float))
    assert found.exact and found.p[0, 2] == pytest.approx(1 / 6)
    assert found.critical(0.95) == math.inf


def test_configurations_that_tie_on_every_dataset_rank_alike_by_friedman() -> None:
    # before: the statistic was 0/0 and the permutation test's p 0, "they do not all rank alike"
    # of configurations that all ranked alike (a saturated accuracy, say).
    statistic, p, exact = friedman(np.full((3, 4), 2.5))
    assert math.isnan(statistic) and p == 1.0 and exact
    assert friedman(np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))[1] < 1.0  # ties in no block


def test_a_setting_a_configuration_lacks_does_not_tell_it_apart_across_datasets() -> None:
    # before: where another configuration of one dataset had model.beta, this one's key held
    # ("model.beta", "nan"), and on a dataset without the column none: two configurations, the
    # ranks across datasets gone and their left-out lines wrong.
    with_column = pd.Series({"dataset": "d1", "model": "ae", "model.beta": math.nan})
    without = pd.Series({"dataset": "d2", "model": "ae"})
    assert across._key(with_column) == across._key(without) == (("model", "ae"),)
