"""The report laid out from a results table, as blocks: a summary, the reproduction section, per
dataset a ranked headline table (each group's headline column, each mean with its interval, the
verdict on the top and how likely each configuration beats the next), a detail table per group
and the figures, the ranks across datasets, then the trials trained with warnings, the estimates
with notes (an estimator's diagnostics), the metrics that gave NaN and why, and the trials that
failed, were skipped or diverged.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import pandas as pd
from pandas.api.types import is_numeric_dtype

from aebench.contract.columns import Vocabulary
from aebench.results.stats import MIN_SEEDS, Interval, seeds_for_a_median
from aebench.results.table import PARQUET, read_load_errors
from aebench.views.across import across_blocks
from aebench.views.blocks import Block, Heading, Paragraph, Table
from aebench.views.cells import arrow, format_number, interval_cell
from aebench.views.figure_blocks import figure_blocks
from aebench.views.ranking import (
    OTHER,
    Leaderboard,
    Leaderboards,
    chances_of_beating_next,
    comparison_key,
    headline_columns,
    headline_verdict,
    leaderboards,
    note_text,
    ordered_groups,
    ranked,
    ranking_columns,
)
from aebench.views.reproduction import reproduction_blocks
from aebench.views.trial_labels import configuration_labels, untrained
from aebench.views.verdict_words import verdict_text

SEARCH_REPORT = "search.md"  # written beside the table by a suite's [search]


def _tip(metric: str, vocabulary: Vocabulary) -> str:
    declared = vocabulary.get(metric)
    better = f"{declared.better} is better" if declared.better else "no better direction"
    parts = [declared.description, f"unit: {declared.unit}" if declared.unit else "", better]
    return "; ".join(p for p in parts if p) + (
        "; noisy: never marked best" if declared.noisy else ""
    )


def _verdict_cells(board: Leaderboard, vocabulary: Vocabulary, order: list[int]) -> list[list[str]]:
    """Per configuration in ``order``: ``best`` or ``tied`` (the top group of the first ranking
    column, as tests decide it; ``untested`` where no test could reach it), and the probability
    that it beats the next one."""
    verdict = headline_verdict(board, vocabulary)
    words: dict[int, str] = {}
    if verdict is not None:
        words = dict.fromkeys(verdict.tied, "best" if verdict.best else "tied")
        words |= {i: "untested" for i in verdict.tied[1:] if math.isnan(verdict.adjusted[i])}
        if not verdict.best and all(words[i] == "untested" for i in verdict.tied[1:]):
            words[verdict.top] = "untested"  # tied with none that a test reached
    chances = chances_of_beating_next(board, vocabulary, order)
    return [[words.get(i, ""), _chance_cell(chances[i]) if i in chances else "–"] for i in order]


def _chance_cell(chance: Interval) -> str:
    """A probability to two digits, with its interval or why it has none."""
    shown = format_number(chance.centre, 2)
    if not chance.exists:
        return f"{shown} ({chance.note()})" if math.isfinite(chance.centre) else "–"
    return f"{shown} [{format_number(chance.low, 2)}, {format_number(chance.high, 2)}]"


def metric_table(
    board: Leaderboard,
    vocabulary: Vocabulary,
    metrics: list[str],
    order: list[int],
    *,
    protocol: bool = False,
    show_notes: bool = False,
    verdicts: bool = False,
) -> Table:
    """The configurations at ``order`` (positions) with ``metrics`` (each a mean with its
    interval), the best ones bold, the warned ones marked ⚠ and those with estimate notes ⓘ;
    with ``protocol``, a column of each configuration's likelihood protocol; with ``verdicts``,
    the top group's verdict and each one's probability of beating the next."""
    fixed = ["configuration", "seeds", *(["protocol"] if protocol else [])]
    tips = [
        "",
        "seeds averaged: those that trained ('3 of 5': 2 failed or diverged, listed below)",
        *(["p(x|z), binarization"] if protocol else []),
    ]
    if verdicts:
        fixed += ["top", "P(beats next)"]
        tips += [
            "best: better than every other configuration (tests over seeds, Holm); "
            "tied: not shown worse than the top",
            "probability that a seed of it beats a seed of the next one (paired over the seeds "
            "both have, from 3), with its Clopper-Pearson interval over those seeds",
        ]
        extra = _verdict_cells(board, vocabulary, order)
    header = [*fixed, *(m + arrow(m, vocabulary) for m in metrics)]
    tips += [_tip(m, vocabulary) for m in metrics]
    rows, bold, notes, estimates = [], set(), {}, {}
    for r, i in enumerate(order):
        seeds = int(board.n.iloc[i])
        run = board.run_count(i)
        cells = [board.label(i), str(seeds) if run == seeds else f"{seeds} of {run}"]
        cells += [board.protocol[i] or "–"] if protocol else []
        cells += extra[r] if verdicts else []
        for j, metric in enumerate(metrics):
            cells.append(interval_cell(board.interval(i, metric, vocabulary), seeds))
            if i in board.best.get(metric, []):
                bold.add((r, len(fixed) + j))
        if note := note_text(board.trials[i], "warnings"):
            notes[r] = note
        if note := note_text(board.trials[i], "notes"):
            estimates[r] = note
        rows.append(cells)
    wrap = {2} if protocol else set()
    return Table(header, rows, bold, tips, notes, show_notes, wrap=wrap, estimates=estimates)


def _ranking_sentence(board: Leaderboard, vocabulary: Vocabulary) -> str:
    columns = ranking_columns(board, vocabulary)
    if not columns:
        splits = {comparison_key(board, i, per_protocol=False) for i in range(len(board.configs))}
        if len(splits) > 1:  # each metric is compared within a split (bold), none across
            return (
                f"Not ranked: the configurations were measured on {len(splits)} different test"
                " splits (their datasets' parameters differ), which no metric compares; by"
                " configuration."
            )
        return (
            "Not ranked: no headline metric with a direction and a value that compares every"
            " configuration (a likelihood compares one protocol only); by configuration."
        )
    first = columns[0]
    declared = vocabulary.get(first)
    centre = "median" if declared.heavy_tailed else "mean"  # what its cells show and rank by
    text = f"Ranked by {first} ({declared.better} is better), best {centre} first"
    if len(columns) > 1:
        text += f"; configurations without it (or tied) by {', then '.join(columns[1:])}"
    text += "; configurations with none of these last."
    if (verdict := headline_verdict(board, vocabulary)) is not None:
        text += f" By {first}, {board.label(verdict.top)} is {verdict_text(board, verdict)}."
    return text


BOLD_RULE = (
    "Seeds: those that trained; '3 of 5': 2 more failed or diverged (listed below), and the "
    "values and tests are of the 3, which may flatter a configuration that often fails. "
    "Each value: the mean over seeds ± the half-width of its {confidence:.0%} interval (Student's "
    "t over the seeds), (n=…) where fewer seeds than the row's have a value; with fewer than 3 "
    "seeds there is no interval and the cell says so. A heavy-tailed column's value is 'median m "
    "[low, high]': the median over seeds, between the order statistics that hold it at "
    "{confidence:.0%} whatever the distribution (none below {median_seeds} seeds: the mean of a "
    "column whose seeds can lie far apart is not pinned down by a few). ↑ higher is better, ↓ "
    "lower is better. Bold: a configuration better than every other comparable one by a "
    "two-sided test over seeds (paired over the seeds whose trials started from the same "
    "weights in both, where there are {min_seeds}, else Welch's t; for a heavy-tailed column "
    "Wilcoxon's signed-rank test, else Mann–Whitney U), at {confidence:.0%} after Holm's "
    "correction for the number of comparisons; where none "
    "is, nothing is bold. Only columns that declare a direction and are not noisy (timings and "
    "memory move with the machine) are tested, and only among comparable "
    "configurations: those measured on one test split (a dataset's parameters, its "
    "binarization or its test draw, can change it), likelihood columns also within one "
    "likelihood protocol (p(x|z) and binarization). ⚠: the configuration trained with "
    "warnings; ⓘ: an estimate with a note (an "
    "estimator's diagnostic, such as a bound that has not converged); hover for the text."
)


def _detail_blocks(board: Leaderboard, vocabulary: Vocabulary, order: list[int]) -> list[Block]:
    """One table per group of columns, rows in the ranked order (those without any value of the
    group left out)."""
    by_group: dict[str, list[str]] = {}
    for column in board.centre.columns:
        by_group.setdefault(vocabulary.get(column).group or OTHER, []).append(column)
    blocks: list[Block] = [Heading(3, "Details by group")]
    for group in ordered_groups(by_group, vocabulary):
        columns = by_group[group]
        rows = [i for i in order if board.centre[columns].iloc[i].notna().any()]
        protocol = any(vocabulary.get(c).per_protocol for c in columns)
        table = metric_table(board, vocabulary, columns, rows, protocol=protocol)
        blocks += [Heading(4, group), table]
    return blocks


def _dataset_blocks(folder: Path, boards: Leaderboards, dataset: str) -> list[Block]:
    blocks: list[Block] = [Heading(2, f"Dataset: {dataset}")]
    board, vocabulary = boards.of(dataset), boards.vocabulary
    if board is None:
        return [*blocks, Paragraph("No trial of this dataset finished.")]
    order = ranked(board, vocabulary)
    if lost := untrained(boards.table, dataset):
        blocks.append(Paragraph(f"Not in the tables, no seed trained: {'; '.join(lost)}."))
    # First, though shown last: a run's worker draws them while the tables are laid out here.
    figures = figure_blocks(folder, board, vocabulary, order)
    headlines = headline_columns(board, vocabulary)
    blocks += [
        Heading(3, "Headline"),
        metric_table(board, vocabulary, headlines, order, show_notes=True, verdicts=True),
        Paragraph(_ranking_sentence(board, vocabulary)),
        Paragraph(
            BOLD_RULE.format(
                confidence=board.confidence,
                median_seeds=seeds_for_a_median(board.confidence),
                min_seeds=MIN_SEEDS,
            )
        ),
    ]
    blocks += _detail_blocks(board, vocabulary, order)
    return blocks + figures


NOTED = {  # a row column of notes -> the report's section of the trials that have them
    "warnings": ("Warnings", "Trained, but look before you trust their numbers (⚠ in the tables)."),
    "notes": (
        "Estimate notes",
        "Trained well, but an estimate's own diagnostic says to read it with care (ⓘ in the "
        "tables): its value is shown, and is not a training warning.",
    ),
}


def _noted_blocks(table: pd.DataFrame, column: str) -> list[Block]:
    """The ``ok`` trials whose ``column`` (warnings or estimate notes) is not empty."""
    if column not in table:
        return []
    noted = table[(table["status"] == "ok") & (table[column].fillna("").astype(str) != "")]
    if noted.empty:
        return []
    name = configuration_labels(table)
    rows = [
        [str(r["trial_id"]), str(r["dataset"]), f"{name(r)} seed={r['seed']}", str(r[column])]
        for _, r in noted.sort_values(["dataset", "model", "seed"]).iterrows()
    ]
    heading, text = NOTED[column]
    return [
        Heading(2, heading),
        Paragraph(text),
        Table(["trial", "dataset", "configuration", column], rows, numbers=False),
    ]


def _problem_blocks(table: pd.DataFrame) -> list[Block]:
    bad = table[table["status"] != "ok"]
    if bad.empty:
        return []
    name = configuration_labels(table)
    rows = [
        [str(r[c]) for c in ("trial_id", "dataset")]
        + [f"{name(r)} seed={r['seed']}", str(r["status"]), str(r["reason"])]
        for _, r in bad.sort_values(["status", "dataset", "model", "seed"]).iterrows()
    ]
    header = ["trial", "dataset", "configuration", "status", "reason"]
    return [Heading(2, "Failed, skipped and diverged trials"), Table(header, rows, numbers=False)]


def _tuning_blocks(folder: Path, table: pd.DataFrame) -> list[Block]:
    """How the configurations were tuned ([search]): the budget each got, the same for all or
    flagged, with the search's own report beside."""
    if "search_trials" not in table or table["search_trials"].isna().all():
        return []
    per_configuration = table.groupby(["dataset", "model", "regularizer"])["search_trials"].max()
    budgets = sorted({int(n) for n in per_configuration.dropna()})
    has_report = (folder / SEARCH_REPORT).is_file()
    where = f" (histories and parameter importances: {SEARCH_REPORT})" if has_report else ""
    if len(budgets) == 1 and not per_configuration.isna().any():
        return [Paragraph(f"Tuned with {budgets[0]} trials each on validation{where}.")]
    spread = ", ".join(str(n) for n in budgets) + " trials"
    if per_configuration.isna().any():
        spread += "; some not tuned"
    return [
        Paragraph(
            f"⚠ Tuned on validation with different budgets ({spread}): the comparison is not"
            f" between equally tuned configurations{where}."
        )
    ]


def report_blocks(
    folder: Path, table: pd.DataFrame, vocabulary: Vocabulary | None = None
) -> list[Block]:
    vocabulary = vocabulary or Vocabulary()
    counts = table["status"].value_counts().sort_index()
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    blocks: list[Block] = [
        Heading(1, f"aebench report: {folder.resolve().name}"),
        Paragraph(
            f"{len(table)} trials ({summary}), from {PARQUET}; "
            f"built {datetime.now().isoformat(timespec='seconds')}."
        ),
    ]
    # What the installed plugins' load problems took out of the last run (or will, deprecated).
    blocks += [Paragraph(f"⚠ plugin problem: {line}") for line in read_load_errors(folder)]
    blocks += _tuning_blocks(folder, table)
    blocks += reproduction_blocks(folder, table, vocabulary)
    table = with_notes(table, vocabulary)
    boards = leaderboards(table, vocabulary)  # each dataset's computed once, for all that shows it
    for dataset in boards.datasets():
        blocks += _dataset_blocks(folder, boards, dataset)
    blocks += across_blocks(folder, table, vocabulary, boards=boards)
    blocks += _noted_blocks(table, "warnings") + _noted_blocks(table, "notes")
    return blocks + _not_measured_blocks(table) + _problem_blocks(table)


def with_notes(table: pd.DataFrame, vocabulary: Vocabulary) -> pd.DataFrame:
    """The table with every value above its column's declared ``flag_above`` among the row's
    estimate ``notes`` (``estimate_convergence 0.31 > 0.1``), once: a run writes them there
    itself; a table from before it did gets them here. They are notes on an estimate, not
    training warnings."""
    flagged = [
        column
        for column in vocabulary.columns.values()
        if column.flag_above is not None
        and column.name in table
        and is_numeric_dtype(table[column.name])
    ]
    if not flagged and "notes" not in table:
        return table
    table = table.copy()
    notes = table["notes"] if "notes" in table else pd.Series("", index=table.index)
    items = [[n for n in str(text).split("; ") if n] for text in notes.fillna("")]
    for column in flagged:
        name, limit = column.name, column.flag_above
        for row, value in enumerate(table[name].to_numpy(dtype=float)):
            text = f"{name} {value:.3g} > {limit:g}"
            named = any(item.startswith(f"{name} ") for item in items[row])
            if value > limit and not named:  # a run's own note on it is kept as written
                items[row].append(text)
    table["notes"] = ["; ".join(found) for found in items]
    return table


def _not_measured_blocks(table: pd.DataFrame) -> list[Block]:
    """Why metrics gave NaN (errors, reasons), once per configuration (seeds share them)."""
    notes = pd.Series("", index=table.index)
    for column in ("metric_errors", "nan_reasons"):  # errors first: they are bugs to fix
        if column in table:
            text = table[column].fillna("").astype(str)
            notes = notes.str.cat(text, sep="; ").str.strip("; ")
    ok = table[(table["status"] == "ok") & (notes != "")]
    name = configuration_labels(table)
    rows = sorted({(str(r["dataset"]), name(r), notes[i]) for i, r in ok.iterrows()})
    if not rows:
        return []
    return [
        Heading(2, "Not measured"),
        Paragraph("Metrics that gave NaN on trained models, and why (metric errors first)."),
        Table(
            ["dataset", "configuration", "metrics: reason"], [list(r) for r in rows], numbers=False
        ),
    ]
