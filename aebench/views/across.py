"""Ranks across datasets (Demšar, JMLR 2006): with two datasets or more, each configuration's
rank on each dataset by that dataset's first ranking column, their mean, the Friedman test of
"every configuration ranks alike", the pairs that rank differently (``rank_differences``: the
statistic of Nemenyi's post-hoc test, from its permutation distribution) and their
critical-difference diagram (drawn by scikit-posthocs): configurations joined by a bar are not
shown to rank differently.

A configuration is counted only where it was measured on every dataset (a rank among some is not
one among all); it is the same configuration on two datasets where every setting but the
dataset's own is the same. scipy.stats is imported where the ranks are computed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from aebench.contract.columns import Vocabulary
from aebench.results.confined import FIGURES, confined
from aebench.results.files import write_atomically
from aebench.results.rows import is_missing
from aebench.results.stats import RESHUFFLES, RankDifferences, friedman, rank_differences
from aebench.views.blocks import Block, Heading, Images, Paragraph, Table
from aebench.views.cells import format_number
from aebench.views.ranking import Leaderboards, leaderboards, ranking_columns

CD_PNG = "critical_difference.png"  # in the report's figures folder


def _key(config: pd.Series) -> tuple[tuple[str, str], ...]:
    """What a configuration is apart from its dataset: its other settings, as text; a setting it
    does not have is left out (a dataset where another configuration has it holds its column,
    NaN, and one where none does, no column: the same configuration either way)."""
    return tuple(
        (str(column), str(value))
        for column, value in config.items()
        if column != "dataset" and not str(column).startswith("dataset.") and not is_missing(value)
    )


def _first_column_values(
    table: pd.DataFrame, vocabulary: Vocabulary, boards: Leaderboards | None
) -> tuple[dict[str, dict[tuple, float]], dict[tuple, str], dict[str, str]]:
    """Per rankable dataset, each configuration's value of its first ranking column (signed:
    higher is better), where it has one; each configuration's label; each dataset's column."""
    boards = leaderboards(table, vocabulary) if boards is None else boards
    values: dict[str, dict[tuple, float]] = {}
    names: dict[tuple, str] = {}
    ranked_by: dict[str, str] = {}
    for dataset in boards.datasets():
        board = boards.of(dataset)
        columns = ranking_columns(board, vocabulary) if board is not None else []
        if board is None or not columns:
            continue
        ranked_by[dataset] = columns[0]
        sign = vocabulary.direction(columns[0])
        means = board.centre[columns[0]].to_numpy(dtype=float) * sign
        for i, (_, config) in enumerate(board.configs.iterrows()):
            key = _key(config)
            names.setdefault(key, board.label(i))
            if np.isfinite(means[i]):
                values.setdefault(dataset, {})[key] = float(means[i])
    return values, names, ranked_by


def left_out(
    table: pd.DataFrame, vocabulary: Vocabulary, boards: Leaderboards | None = None
) -> list[str]:
    """``ae / none (no score on d2, d3)``: each configuration the ranks leave out, and the
    datasets whose ranking column it has no value of (or was not run on)."""
    values, names, ranked_by = _first_column_values(table, vocabulary, boards)
    if len(values) < 2:
        return []
    out = []
    for key in sorted(names, key=lambda k: names[k]):
        lacking: dict[str, list[str]] = {}  # column -> the datasets it has no value on
        for dataset, column in ranked_by.items():
            if key not in values.get(dataset, {}):
                lacking.setdefault(column, []).append(dataset)
        if lacking:
            said = "; ".join(f"{c} on {', '.join(ds)}" for c, ds in lacking.items())
            out.append(f"{names[key]} (no {said})")
    return out


def rank_matrix(
    table: pd.DataFrame, vocabulary: Vocabulary, boards: Leaderboards | None = None
) -> pd.DataFrame:
    """Datasets (rows) by configurations (columns, named by label): each configuration's rank on
    each dataset, 1 the best, ties sharing their mean rank; only configurations with a value on
    every dataset that can be ranked. Empty with fewer than two such datasets. ``boards``: the
    table's leaderboards where the report has them already."""
    from scipy import stats

    values, names, _ = _first_column_values(table, vocabulary, boards)
    if len(values) < 2:
        return pd.DataFrame()
    everywhere = set.intersection(*(set(v) for v in values.values()))
    keys = sorted(everywhere, key=lambda k: names[k])
    scores = pd.DataFrame(
        [[values[d][k] for k in keys] for d in values],
        index=list(values),
        columns=[names[k] for k in keys],
    )
    # Higher (after the sign) is better: the best gets rank 1.
    return scores.apply(lambda row: pd.Series(stats.rankdata(-row), index=row.index), axis=1)


def _friedman(ranks: pd.DataFrame) -> str:
    if ranks.shape[1] < 3:
        return "The Friedman test needs three configurations or more: not run."
    statistic, p, exact = friedman(ranks.to_numpy(dtype=float))
    how = "exact" if exact else f"over {RESHUFFLES:,} shuffles"
    return (
        f"Friedman test over {ranks.shape[0]} datasets and {ranks.shape[1]} configurations: "
        f"χ² = {format_number(statistic, 3)}, p = {format_number(p, 2)} (its permutation "
        f"distribution, {how}; a small p: the configurations do not all rank alike)."
    )


def _told_apart(ranks: pd.DataFrame, differences: RankDifferences, confidence: float) -> str:
    """The critical difference and the pairs it tells apart, best first; or that none could be,
    where even the same ranking on every dataset is too common by chance."""
    n, k = ranks.shape
    critical = differences.critical(confidence)
    if not np.isfinite(critical):
        return (
            f"No two of {k} configurations can be told apart at {confidence:.0%} on {n} "
            f"datasets: even the largest difference there can be (the same ranking on every "
            f"dataset) comes by chance more than {1 - confidence:.0%} of the time."
        )
    mean = ranks.mean().to_numpy()
    order = np.argsort(mean, kind="stable")
    apart = [
        f"{ranks.columns[i]} ahead of {ranks.columns[j]} (p = "
        f"{format_number(float(differences.p[i, j]), 2)})"
        for position, i in enumerate(order)
        for j in order[position + 1 :]
        if differences.p[i, j] <= 1 - confidence
    ]
    how = "exact" if differences.exact else f"over {RESHUFFLES:,} shuffles"
    return (
        f"Critical difference at {confidence:.0%}: {format_number(critical, 3)} in mean rank "
        f"(the largest difference's permutation distribution, {how}; every pair tested at "
        f"once). " + (f"Told apart: {'; '.join(apart)}." if apart else "No pair is told apart.")
    )


def draw_critical_difference(
    path: Path, ranks: pd.DataFrame, differences: RankDifferences, alpha: float
) -> Path:
    """The critical-difference diagram of ``ranks`` (datasets x configurations) into ``path``:
    mean ranks on an axis, bars joining those ``differences`` does not tell apart at ``alpha``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scikit_posthocs as sp

    # Ours decides, the diagram draws: 0 is a pair told apart (p <= alpha), 1 one that is not.
    apart = np.where(differences.p <= alpha, 0.0, 1.0)
    significance = pd.DataFrame(apart, index=ranks.columns, columns=ranks.columns)
    figure, ax = plt.subplots(figsize=(8, 1 + 0.3 * ranks.shape[1]))
    sp.critical_difference_diagram(ranks.mean(), significance, alpha=alpha, ax=ax)
    ax.set_title(f"mean rank over {ranks.shape[0]} datasets (1 = best)", fontsize=9, pad=18)
    try:  # through a temporary file and a rename: never half a PNG, never through a link
        write_atomically(
            path, lambda p: figure.savefig(p, format="png", dpi=100, bbox_inches="tight")
        )
    finally:
        plt.close(figure)
    return path


def across_blocks(
    folder: Path,
    table: pd.DataFrame,
    vocabulary: Vocabulary,
    confidence: float = 0.95,
    *,
    boards: Leaderboards | None = None,
) -> list[Block]:
    """The section "Ranks across datasets": nothing with fewer than two datasets, or fewer than
    two configurations measured on every one. ``boards``: as ``rank_matrix``'s."""
    ranks = rank_matrix(table, vocabulary, boards)
    if ranks.shape[1] < 2:
        return []
    mean = ranks.mean().sort_values(kind="stable")
    header = ["configuration", "mean rank", *ranks.index]
    rows = [
        [name, format_number(float(mean[name]), 3)]
        + [format_number(float(ranks.loc[d, name]), 3) for d in ranks.index]
        for name in mean.index
    ]
    said = (
        "Each configuration with a value of every dataset's first ranking column, ranked on each"
        " by it (1 = best, ties share their mean rank)."
    )
    if lost := left_out(table, vocabulary, boards):  # not measured by that column somewhere
        said += f" Left out: {'; '.join(lost)}."
    blocks: list[Block] = [
        Heading(2, "Ranks across datasets"),
        Paragraph(said),
        Table(header, rows),
        Paragraph(_friedman(ranks)),
    ]
    if ranks.shape[1] >= 3:
        differences = rank_differences(ranks.to_numpy(dtype=float))
        blocks.append(Paragraph(_told_apart(ranks, differences, confidence)))
        path = confined(folder, FIGURES, CD_PNG)
        draw_critical_difference(path, ranks, differences, 1 - confidence)
        caption = (
            "critical-difference diagram: configurations joined by a bar are not shown to rank "
            f"differently ({confidence:.0%}, every pair tested at once)"
        )
        blocks.append(Images([(caption, path)]))
    return blocks
