"""The report's verdicts over seeds, on synthetic tables: each mean with its interval and n, the
best decided by tests (Holm-corrected) or a tied top group named, the probability that each
configuration beats the next, ranks across datasets with the Friedman test and a
critical-difference diagram, and estimate notes apart from training warnings. Every statistic is
checked against its formula, computed here by hand."""

from __future__ import annotations

import math
from itertools import permutations, product
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from score_tables import score_table

from aebench.contract.columns import Column, Vocabulary
from aebench.results.stats import RESHUFFLES, friedman, interval
from aebench.views.across import CD_PNG, rank_matrix
from aebench.views.blocks import Heading, Images, Paragraph, Table
from aebench.views.cells import format_number, interval_cell
from aebench.views.layout import report_blocks
from aebench.views.markdown import to_markdown
from aebench.views.ranking import leaderboard
from aebench.views.ranking_stats import beats_next, top_verdict
from aebench.views.verdict_words import best_configurations, verdict_text

DESCRIPTION = "classifier features, not Inception"


def _vocabulary() -> Vocabulary:
    vocabulary = Vocabulary(columns={})
    vocabulary.add(
        [
            Column("score", "higher", group="g", headline=True, description=DESCRIPTION),
            Column("wobble", group="g", flag_above=0.1),
        ]
    )
    return vocabulary


def _paired_p(a: list[float], b: list[float]) -> float:
    """Two-sided p of "a is higher than b" on the same seeds (the top was picked by its values):
    t of the differences by formula."""
    d = np.subtract(a, b)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    return min(1.0, 2 * float(stats.t.sf(t, len(d) - 1)))


def _welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided p of "a is higher than b" (the top was picked by its values), Welch's t with
    Welch–Satterthwaite df, by formula."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return min(1.0, 2 * float(stats.t.sf(t, df)))


def _headline(blocks: list) -> Table:
    start = blocks.index(Heading(3, "Headline"))
    return blocks[start + 1]


def _column(table: Table, name: str) -> dict[str, str]:
    j = next(j for j, h in enumerate(table.header) if h.split(" ")[0] == name)
    return {row[0]: row[j] for row in table.rows}


def _bold(table: Table, name: str) -> set[str]:
    j = next(j for j, h in enumerate(table.header) if h.split(" ")[0] == name)
    return {table.rows[r][0] for r, c in table.bold if c == j}


# Overlapping seeds: a's mean is the highest, but b is not shown worse; c clearly is.
OVERLAPPING = {
    "a": {0: 1.0, 1: 1.2, 2: 0.9},
    "b": {0: 1.1, 1: 0.8, 2: 1.0},
    "c": {0: 0.2, 1: 0.3, 2: 0.25},
}
# Clearly apart, each on its own seeds (unpaired: Welch's t).
APART = {
    "a": {0: 5.0, 1: 5.2, 2: 4.9, 3: 5.1},
    "b": {4: 4.0, 5: 4.1, 6: 3.9, 7: 4.2},
    "c": {8: 3.0, 9: 3.3, 10: 3.1, 11: 2.9},
}


def _values(samples: dict[int, float]) -> list[float]:
    return [samples[s] for s in sorted(samples)]


def test_overlapping_seeds_are_tied_and_nothing_is_bold(tmp_path: Path) -> None:
    a, b, c = (_values(OVERLAPPING[k]) for k in "abc")
    # Seeds match: paired. a is not best, so what is shown worse than it is tested among every
    # pair at once (a-b, a-c, b-c): Holm over 3, by hand.
    p = {"b": _paired_p(a, b), "c": _paired_p(a, c), "b-c": _paired_p(b, c)}
    assert p["c"] < p["b-c"] < p["b"]
    holm = {"c": 3 * p["c"], "b": max(3 * p["c"], 2 * p["b-c"], p["b"])}
    assert holm["c"] < 0.05 <= holm["b"]  # c shown worse, b not: a and b tied
    verdict = top_verdict({k: pd.Series(OVERLAPPING[k]) for k in "abc"}, "higher")
    assert verdict.adjusted == pytest.approx(holm) and verdict.comparisons == 3

    vocabulary = _vocabulary()
    blocks = report_blocks(tmp_path, score_table(OVERLAPPING), vocabulary)
    headline = _headline(blocks)
    assert _column(headline, "top") == {"a / none": "tied", "b / none": "tied", "c / none": ""}
    assert _bold(headline, "score") == set()
    sentence = blocks[blocks.index(headline) + 1]
    assert isinstance(sentence, Paragraph) and "a / none is tied with b / none" in sentence.text
    # Paired by seed: a beats b on seed 1 only; b beats c on every seed.
    # With intervals: Clopper-Pearson over the 3 paired seeds, not a bare "1" from 3 seeds.
    chances = {"a / none": "0.33 [0.0084, 0.91]", "b / none": "1 [0.29, 1]", "c / none": "–"}
    assert _column(headline, "P(beats") == chances
    line = best_configurations(score_table(OVERLAPPING), vocabulary)["d"]
    assert "tied with b / none" in line and "(95% CI, 3 seeds)" in line


@pytest.mark.parametrize("starts", ["model", None])
def test_the_same_seeds_from_other_starts_are_compared_unpaired(
    tmp_path: Path, starts: str | None
) -> None:
    # a and b on seeds 0, 1, 2, but each seed drew other weights for each (other shapes), or the
    # table does not say what they drew: nothing shared to pair on, Welch's t over all values.
    a, b = (_values(OVERLAPPING[k]) for k in "ab")
    board = leaderboard(score_table(OVERLAPPING, starts=starts), "d", _vocabulary())
    assert board is not None
    (verdict,) = board.verdicts["score"]
    # Not best: every pair's family, in which a-b's p is the largest: Holm's last, as it is.
    c = _values(OVERLAPPING["c"])
    holm = {"b": _welch_p(a, b), "c": _welch_p(a, c), "b-c": _welch_p(b, c)}
    assert max(holm.values()) == holm["b"]
    assert verdict.adjusted[1] == pytest.approx(holm["b"])
    assert 3 * min(holm.values()) < max(holm.values())
    paired = leaderboard(score_table(OVERLAPPING), "d", _vocabulary())
    assert paired.verdicts["score"][0].adjusted[1] != pytest.approx(verdict.adjusted[1])
    # The share of seeds on which each beats the next still pairs them by seed, with its
    # interval: independent pairs, whatever the starts (as in the test above).
    table = score_table(OVERLAPPING, starts=starts)
    headline = _headline(report_blocks(tmp_path, table, _vocabulary()))
    chances = {"a / none": "0.33 [0.0084, 0.91]", "b / none": "1 [0.29, 1]", "c / none": "–"}
    assert _column(headline, "P(beats") == chances


@pytest.mark.parametrize("paired", [True, False])
def test_of_two_equal_configurations_one_is_called_best_at_most_as_often_as_stated(paired) -> None:
    # 1,000 draws of two configurations from one distribution, 5 seeds each (the same seeds, or
    # not). "Best" is a false claim every time; at 95% it may be made 5% of the time (3 standard
    # errors allowed: 7%). One-sided tests of the side that came out on top made it 9-10%.
    rng = np.random.default_rng(7)
    seeds = {0: range(5), 1: range(5) if paired else range(5, 10)}
    called, found = 0, 0
    for draw in range(1000):
        same = {i: pd.Series(rng.normal(0.0, 1.0, 5), index=seeds[i]) for i in (0, 1)}
        called += top_verdict(same, "higher").best
        if draw < 200:  # the power it keeps: 3 sd apart
            found += top_verdict({0: same[0] + 3.0, 1: same[1]}, "higher").best
    assert called / 1000 <= 0.07
    assert found / 200 >= 0.8


@pytest.mark.slow  # 800 verdicts of 28 tests each: 15-20 s
@pytest.mark.parametrize("paired", [True, False])
def test_equal_configurations_are_left_out_of_the_tied_at_most_as_often_as_stated(paired) -> None:
    # 400 draws of 8 configurations from one distribution, 5 seeds each (the same seeds, or
    # not). Leaving one out of the top's tied says it is worse: false every time, at 95% allowed
    # 5% of the time (3 standard errors: 8.3%). Holm over the top's own 7 comparisons left one
    # out 9.5-12% of the time: the top is the widest of 28 gaps, picked by these seeds.
    rng = np.random.default_rng(11)
    left_out = 0
    for draw in range(400):
        seeds = range(5) if paired else range(5 * draw, 5 * draw + 5)
        same = {i: pd.Series(rng.normal(0.0, 1.0, 5), index=seeds) for i in range(8)}
        if not paired:  # each configuration on seeds of its own
            same = {
                i: v.set_axis(range(40 * draw + 5 * i, 40 * draw + 5 * i + 5))
                for i, v in same.items()
            }
        verdict = top_verdict(same, "higher")
        assert verdict is not None
        left_out += len(verdict.tied) < 8
    assert left_out / 400 <= 0.083


def test_a_comparison_that_cannot_be_made_is_not_counted_against_the_others(tmp_path) -> None:
    # b is worse than a by Welch's t (5 seeds each); c and d have one seed: no test of them,
    # which neither dilutes a-b's nor counts as a comparison.
    a, b = [5.0, 5.2, 4.9, 5.1, 5.0], [4.6, 4.8, 4.5, 4.7, 4.9]
    scores = {"a": dict(enumerate(a)), "b": dict(zip(range(5, 10), b, strict=True))}
    scores |= {"c": {20: 4.0}, "d": {21: 3.0}}
    board = leaderboard(score_table(scores), "d", _vocabulary())
    assert board is not None
    (verdict,) = board.verdicts["score"]
    assert verdict.comparisons == 1 and _welch_p(a, b) < 0.05
    assert verdict.adjusted[1] == pytest.approx(_welch_p(a, b))
    assert math.isnan(verdict.adjusted[2]) and not verdict.best and verdict.tied == [0, 2, 3]
    # before: "tied with c / none, d / none (not shown worse ...)", as if a test had said so
    assert verdict_text(board, verdict) == (
        "untested against c / none, d / none (too few seeds to test)"
    )
    headline = _headline(report_blocks(tmp_path, score_table(scores), _vocabulary()))
    assert _column(headline, "top") == {
        "a / none": "untested",  # before: "tied", with none that a test reached
        "b / none": "",
        "c / none": "untested",
        "d / none": "untested",
    }


def test_a_clearly_better_configuration_is_bold_best_with_its_interval(tmp_path: Path) -> None:
    a, b, c = (_values(APART[k]) for k in "abc")
    p = sorted([_welch_p(a, b), _welch_p(a, c)])  # seeds differ: unpaired
    assert max(2 * p[0], p[1]) < 0.05  # Holm by hand: both comparisons survive

    vocabulary = _vocabulary()
    blocks = report_blocks(tmp_path, score_table(APART), vocabulary)
    headline = _headline(blocks)
    assert _bold(headline, "score") == {"a / none"}
    assert _column(headline, "top")["a / none"] == "best"
    # Student's t interval by formula: mean ± t(0.975, n-1) s / sqrt(n)
    half = stats.t.ppf(0.975, 3) * np.std(a, ddof=1) / 2
    assert _column(headline, "score")["a / none"] == (
        f"{format_number(np.mean(a))} ± {format_number(half, 2)}"
    )
    # every pair of seeds: a wins; seeds that differ have no interval of paired draws
    assert _column(headline, "P(beats")["a / none"] == "1 (unpaired seeds: no interval)"
    line = best_configurations(score_table(APART), vocabulary)["d"]
    assert line.startswith("a / none: score 5.05 ± ") and ", best (better than each" in line


def test_a_heavy_tailed_column_ranks_and_shows_configurations_by_their_median(tmp_path) -> None:
    # a: five seeds at 1 and one far off at 100 (mean 17.5, median 1); b: every seed at 5. Lower
    # is better: by the mean b would lead, by the median a does; a's cell says which it shows.
    vocabulary = Vocabulary(columns={})
    vocabulary.add([Column("fid", "lower", group="g", headline=True, heavy_tailed=True)])
    seeds = range(6)
    samples = {
        "a": dict(zip(seeds, [1.0, 1.2, 0.9, 1.1, 1.0, 100.0], strict=True)),
        "b": dict.fromkeys(seeds, 5.0),
    }
    table = score_table(samples).rename(columns={"score": "fid"})
    board = leaderboard(table, "d", vocabulary)
    assert board is not None
    a, b = (board.configs["model"].tolist().index(name) for name in ("a", "b"))
    assert board.centre["fid"].iloc[a] == pytest.approx(1.05)
    assert board.verdicts["fid"][0].top == a
    assert interval_cell(board.interval(a, "fid", vocabulary), 6) == "median 1.05 [0.9, 100]"
    blocks = report_blocks(tmp_path, table, vocabulary)
    assert _headline(blocks).rows[0][0] == "a / none"  # ranked first: the lower median
    sentences = [b.text for b in blocks if isinstance(b, Paragraph)]
    assert any(
        s.startswith("Ranked by fid (lower is better), best median first") for s in sentences
    )


def test_cells_say_n_and_that_two_seeds_give_no_interval() -> None:
    two = interval([1.0, 2.0])
    assert interval_cell(two, 2) == "1.5 (2 seeds: no interval)"
    three_of_four = interval([1.0, 2.0, 3.0, math.nan])
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert interval_cell(three_of_four, 4) == f"2 ± {format_number(half, 2)} (n=3)"
    skewed = interval([0.0, 1.0, 0.5, 0.0, 10.0, 0.2], heavy_tailed=True)
    assert interval_cell(skewed, 6) == "median 0.35 [0, 10]"
    too_few = interval([0.0, 1.0, 10.0], heavy_tailed=True)
    assert interval_cell(too_few, 3) == "median 1 (3 seeds: no interval, a median's needs 6)"
    board = leaderboard(score_table({"a": {0: 1.0, 1: 2.0}, "b": {0: 3.0, 1: 4.0}}), "d")
    assert board is not None and not board.interval(0, "score", Vocabulary()).exists


def _across() -> pd.DataFrame:
    scores = {  # dataset -> model -> score (higher is better); "x" only on d1
        "d1": {"a": 3.0, "b": 2.0, "c": 1.0, "x": 9.0},
        "d2": {"a": 2.0, "b": 3.0, "c": 1.0},
        "d3": {"a": 3.0, "b": 1.0, "c": 2.0},
        "d4": {"a": 3.0, "b": 2.0, "c": 1.0},
    }
    return pd.concat(
        [
            score_table({m: dict.fromkeys(range(3), v) for m, v in by.items()}, dataset=d)
            for d, by in scores.items()
        ],
        ignore_index=True,
    )


def test_ranks_across_datasets_friedman_and_the_critical_difference_diagram(
    tmp_path: Path,
) -> None:
    vocabulary = _vocabulary()
    ranks = rank_matrix(_across(), vocabulary)
    assert list(ranks.columns) == ["a / none", "b / none", "c / none"]  # x: not on every one
    by_hand = np.array([[1, 2, 3], [2, 1, 3], [1, 3, 2], [1, 2, 3]], dtype=float)
    assert ranks.to_numpy().tolist() == by_hand.tolist()
    # Friedman's statistic by its formula: 12 N / (k (k+1)) * (sum R_j^2 - k (k+1)^2 / 4)
    n, k = by_hand.shape
    mean = by_hand.mean(axis=0)
    chi2 = 12 * n / (k * (k + 1)) * ((mean**2).sum() - k * (k + 1) ** 2 / 4)
    # Its p-value, exact: of every way to shuffle each dataset's ranks (3!^4 = 1,296), the share
    # with a statistic as large; not the chi-square tail, which is 0.105 here.
    shuffled = [
        12 * n / (k * (k + 1)) * ((np.mean(rows, axis=0) ** 2).sum() - k * (k + 1) ** 2 / 4)
        for rows in product(*(list(permutations(row)) for row in by_hand))
    ]
    p = np.mean(np.asarray(shuffled) >= chi2 - 1e-9)
    assert p != pytest.approx(stats.chi2.sf(chi2, k - 1), abs=0.01)

    blocks = report_blocks(tmp_path, _across(), vocabulary)
    start = blocks.index(Heading(2, "Ranks across datasets"))
    said, table, friedman, apart, figure = blocks[start + 1 : start + 6]
    # before: "Each configuration measured on every dataset", x left out without a word
    assert said.text.endswith(" Left out: x / none (no score on d2, d3, d4).")
    assert [row[:2] for row in table.rows] == [
        ["a / none", "1.25"],
        ["b / none", "2"],
        ["c / none", "2.75"],
    ]
    assert f"χ² = {format_number(chi2, 3)}, p = {format_number(p, 2)}" in friedman.text
    assert "(its permutation distribution, exact;" in friedman.text
    # The pairs told apart: none, as the largest difference of mean ranks (a's 1.25 against c's
    # 2.75) is as large in 1 shuffle of 8; chance reaches 1.75 in under 5% of them.
    largest = [
        np.ptp(np.mean(rows, axis=0))
        for rows in product(*(list(permutations(row)) for row in by_hand))
    ]
    assert np.mean(np.asarray(largest) >= 1.5 - 1e-9) == pytest.approx(1 / 8)
    assert np.mean(np.asarray(largest) >= 1.75 - 1e-9) <= 0.05
    assert apart.text == (
        "Critical difference at 95%: 1.75 in mean rank (the largest difference's permutation "
        "distribution, exact; every pair tested at once). No pair is told apart."
    )
    assert isinstance(figure, Images) and figure.items[0][1].name == CD_PNG
    assert figure.items[0][1].is_file() and figure.items[0][1].stat().st_size > 1000
    assert "## Ranks across datasets" in to_markdown(blocks, tmp_path)
    # One dataset: no such section.
    one = report_blocks(tmp_path, _across().query("dataset == 'd1'"), vocabulary)
    assert Heading(2, "Ranks across datasets") not in one


def test_two_datasets_that_rank_six_configurations_alike_are_told_apart_from_chance() -> None:
    # The same ranking on both: under "every configuration ranks alike", the second dataset
    # repeats the first's 1 time in 6! = 720. The chi-square approximation says 0.075.
    ranks = np.array([range(1, 7), range(1, 7)], dtype=float)
    statistic, p, exact = friedman(ranks)
    assert not exact and statistic == pytest.approx(10.0)  # drawn: 6!^2 shuffles are too many
    assert abs(p - 1 / 720) < 4 * math.sqrt(1 / 720 / RESHUFFLES)  # within its draws' error
    assert stats.friedmanchisquare(*ranks.T).pvalue > 0.07


def _ranked_alike(datasets: int, models: str) -> pd.DataFrame:
    """Every dataset ranks ``models`` in their order, the first best."""
    return pd.concat(
        [
            score_table(
                {m: dict.fromkeys(range(3), -float(i)) for i, m in enumerate(models)}, dataset=d
            )
            for d in (f"d{j}" for j in range(datasets))
        ],
        ignore_index=True,
    )


def _told_apart(tmp_path: Path, table: pd.DataFrame) -> str:
    blocks = report_blocks(tmp_path, table, _vocabulary())
    start = blocks.index(Heading(2, "Ranks across datasets"))
    paragraph = blocks[start + 4]
    assert isinstance(paragraph, Paragraph)
    return paragraph.text


def test_the_report_tells_apart_the_pairs_that_rank_differently_or_says_none_could_be(
    tmp_path: Path,
) -> None:
    # Six ranked alike on two datasets: the best and the worst apart (chance: 1 in 30), and no
    # other pair; Nemenyi's limit joined them all.
    text = _told_apart(tmp_path, _ranked_alike(2, "abcdef"))
    assert text.startswith("Critical difference at 95%: 5 in mean rank (")
    assert "over 9,999 shuffles" in text
    assert text.endswith("Told apart: a / none ahead of f / none (p = 0.034).")
    # Three on two datasets: the same ranking twice comes 1 time in 6, so nothing can be.
    assert _told_apart(tmp_path, _ranked_alike(2, "abc")) == (
        "No two of 3 configurations can be told apart at 95% on 2 datasets: even the largest "
        "difference there can be (the same ranking on every dataset) comes by chance more than "
        "5% of the time."
    )


def test_estimate_notes_are_not_training_warnings(tmp_path: Path) -> None:
    vocabulary = _vocabulary()
    table = score_table(APART)
    table["wobble"] = [0.5 if m == "a" else 0.0 for m in table["model"]]  # over its flag
    table.loc[table["model"] == "b", "warnings"] = "dead units"
    blocks = report_blocks(tmp_path, table, vocabulary)
    headline = _headline(blocks)
    assert set(headline.estimates) == {0} and headline.estimates[0] == "wobble 0.5 > 0.1"
    assert set(headline.notes) == {1}  # b's warnings; a has none
    markdown = to_markdown(blocks, tmp_path)
    assert "| a / none ⓘ estimate: wobble 0.5 > 0.1 |" in markdown
    warnings = markdown.split("## Warnings", 1)[1].split("\n## ", 1)[0]
    notes = markdown.split("## Estimate notes", 1)[1].split("\n## ", 1)[0]
    assert "wobble" not in warnings and "dead units" in warnings
    assert "wobble 0.5 > 0.1" in notes and "dead units" not in notes
    line = best_configurations(table.assign(notes=["wobble 0.5 > 0.1"] * 4 + [""] * 8), vocabulary)
    assert line["d"].endswith("; estimate: wobble 0.5 > 0.1")


def test_the_markdown_headline_names_its_columns_as_the_tooltips_do(tmp_path: Path) -> None:
    markdown = to_markdown(report_blocks(tmp_path, score_table(APART), _vocabulary()), tmp_path)
    headline = markdown.split("### Headline", 1)[1].split("\n### ", 1)[0]
    assert f"score ↑: {DESCRIPTION}; higher is better" in headline


@pytest.mark.parametrize(("a", "b"), product([1, 2], [1, 2]))
def test_too_few_seeds_never_make_a_best(a: int, b: int) -> None:
    samples = {"a": dict.fromkeys(range(a), 9.0), "b": {s: 1.0 + s for s in range(b)}}
    board = leaderboard(score_table(samples), "d", _vocabulary())
    assert board is not None
    # One seed on a side: nothing to test. Two a side: a test, but a or b alone is one seed.
    assert (board.best.get("score") == [0]) == (a == b == 2)


def test_a_failed_seed_leaves_beats_next_paired_over_the_seeds_both_have() -> None:
    # b's seed 3 failed: the shared seeds 0, 1, 2, 4 pair, a winning on each
    a = pd.Series([5.0, 6.0, 7.0, 8.0, 9.0], index=[0, 1, 2, 3, 4])
    b = pd.Series([1.0, 2.0, 3.0, 4.0], index=[0, 1, 2, 4])
    (chance,) = beats_next([a, b], "higher")
    assert chance.centre == 1.0 and chance.n == 4
    expected = stats.binomtest(4, 4).proportion_ci(0.95, method="exact")
    assert (chance.low, chance.high) == pytest.approx((expected.low, expected.high))
    # two shared seeds are too few to pair: unpaired, every value, no interval
    c = pd.Series([1.0, 2.0, 0.0], index=[0, 1, 7])
    (unpaired,) = beats_next([a, c], "higher")
    assert not unpaired.exists and unpaired.n == 3


def test_a_seed_failed_in_one_configuration_leaves_the_others_paired() -> None:
    # b's seed 3 failed: the top's test pairs the 4 seeds both have (the seed's shared variation
    # removed, as P(beats next) does), not Welch's t over 5 against 4, which misses it here.
    a = pd.Series([5.0, 6.0, 7.0, 8.0, 9.0], index=range(5))
    b = pd.Series([4.8, 5.7, 6.8, float("nan"), 8.7], index=range(5))
    verdict = top_verdict({0: a, 1: b}, "higher")
    shared = [0, 1, 2, 4]
    assert verdict.adjusted[1] == pytest.approx(_paired_p(a[shared].tolist(), b[shared].tolist()))
    assert verdict.best and _welch_p(a.tolist(), b.dropna().tolist()) > 0.5
    (chance,) = beats_next([a, b], "higher")
    assert chance.n == 4 and chance.centre == 1.0  # the same seeds: a beats b on each
    # Fewer than 3 shared seeds: unpaired, every value.
    c = pd.Series([4.8, 5.7], index=[0, 5])
    unpaired = top_verdict({0: a, 1: c}, "higher").adjusted[1]
    assert unpaired == pytest.approx(_welch_p(a.tolist(), c.tolist()))
    # Two seeds alike in both: too few to pair either (before: a t-test on 2 differences, 1
    # degree of freedom, where the report says "paired where there are 3").
    d = pd.Series([4.8, 5.9], index=[0, 1])
    two = top_verdict({0: a[:2], 1: d}, "higher").adjusted[1]
    assert two == pytest.approx(_welch_p(a[:2].tolist(), d.tolist()))


def test_seeds_that_did_not_train_are_counted_beside_those_averaged(tmp_path: Path) -> None:
    # a ran 6 seeds, 2 diverged: its values are of the 4 that trained, and its seeds cell says
    # "4 of 6", not a bare 4 beside b's 4 of 4.
    table = score_table(APART)
    lost = table[table["model"] == "a"].iloc[:1].assign(seed=[90], trial_id=["x"])
    lost = pd.concat([lost, lost.assign(seed=[91], trial_id=["y"])])
    lost = lost.assign(status="diverged", reason="loss went to NaN", score=np.nan)
    table = pd.concat([table.assign(reason=""), lost], ignore_index=True)
    headline = _headline(report_blocks(tmp_path, table, _vocabulary()))
    seeds = _column(headline, "seeds")
    assert seeds == {"a / none": "4 of 6", "b / none": "4", "c / none": "4"}
    line = best_configurations(table, _vocabulary())["d"]  # aebench run's closing line
    assert line.startswith("a / none: score ") and "4 of its 6 seeds trained, best" in line


def test_a_cell_shows_its_interval_cut_at_the_values_the_column_can_take(tmp_path: Path) -> None:
    # Accuracies near 1 over 3 seeds: the t interval would reach past 1; the cell stops at 1,
    # asymmetric, in brackets, and without a declared range it stays mean ± half-width.
    table = score_table({"a": {0: 0.95, 1: 0.99, 2: 1.0}, "b": {0: 0.5, 1: 0.6, 2: 0.55}})
    for at_most, expected in ((1.0, "0.98 [0.914, 1]"), (None, "0.98 ± 0.066")):
        vocabulary = Vocabulary(columns={})
        vocabulary.add([Column("score", "higher", group="g", headline=True, at_most=at_most)])
        headline = _headline(report_blocks(tmp_path, table, vocabulary))
        assert _column(headline, "score")["a / none"] == expected
