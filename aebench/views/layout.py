"""The report laid out from a results table, as blocks: a summary, the reproduction section, per
dataset a ranked headline table (each group's headline column), a detail table per group and the
figures, then the trials trained with warnings, the metrics that gave NaN and why, and the trials
that failed, were skipped or diverged.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
from pandas.api.types import is_numeric_dtype

from aebench.contract.columns import Vocabulary
from aebench.results.rows import label
from aebench.results.table import PARQUET
from aebench.views.blocks import Block, Heading, Paragraph, Table
from aebench.views.cells import arrow, format_cell
from aebench.views.figure_blocks import figure_blocks
from aebench.views.ranking import (
    OTHER,
    Leaderboard,
    headline_columns,
    leaderboard,
    ordered_groups,
    ranked,
    ranking_columns,
    warning_note,
)
from aebench.views.reproduction import reproduction_blocks


def _tip(metric: str, vocabulary: Vocabulary) -> str:
    declared = vocabulary.get(metric)
    better = f"{declared.better} is better" if declared.better else "no better direction"
    parts = [declared.description, f"unit: {declared.unit}" if declared.unit else "", better]
    return "; ".join(p for p in parts if p) + (
        "; noisy: never marked best" if declared.noisy else ""
    )


def metric_table(
    board: Leaderboard,
    vocabulary: Vocabulary,
    metrics: list[str],
    order: list[int],
    *,
    protocol: bool = False,
    show_notes: bool = False,
) -> Table:
    """The configurations at ``order`` (positions) with ``metrics``, the best ones bold, the warned
    ones marked ⚠; with ``protocol``, a column of each configuration's likelihood protocol."""
    fixed = ["configuration", "seeds", *(["protocol"] if protocol else [])]
    header = [*fixed, *(m + arrow(m, vocabulary) for m in metrics)]
    tips = ["", "seeds averaged", *(["p(x|z), binarization"] if protocol else [])]
    tips += [_tip(m, vocabulary) for m in metrics]
    rows, bold, notes = [], set(), {}
    for r, i in enumerate(order):
        cells = [board.label(i), str(int(board.n.iloc[i]))]
        cells += [board.protocol[i] or "–"] if protocol else []
        for j, metric in enumerate(metrics):
            cells.append(format_cell(board.mean[metric].iloc[i], board.std[metric].iloc[i]))
            if i in board.best.get(metric, []):
                bold.add((r, len(fixed) + j))
        if note := warning_note(board.trials[i]):
            notes[r] = note
        rows.append(cells)
    return Table(header, rows, bold, tips, notes, show_notes, wrap={2} if protocol else set())


def _ranking_sentence(columns: list[str], vocabulary: Vocabulary) -> str:
    if not columns:
        return (
            "Not ranked: no headline metric with a direction and a value; by configuration. "
            "Mean ± standard deviation over seeds."
        )
    first = columns[0]
    text = f"Ranked by {first} ({vocabulary.get(first).better} is better), best first"
    if len(columns) > 1:
        text += f"; configurations without it (or tied) by {', then '.join(columns[1:])}"
    return text + "; configurations with none of these last. Mean ± standard deviation over seeds."


BOLD_RULE = (
    "Sample standard deviation (n−1); ↑ higher is better, ↓ lower is better. Bold: the best mean "
    "of a column, only where the column declares a direction and is not noisy (timings and memory "
    "move with the machine), and only among comparable configurations: likelihood columns are "
    "compared within one likelihood protocol (p(x|z) and binarization), so each protocol has its "
    "own best. ⚠: the configuration trained with warnings (hover for all of them)."
)


def _detail_blocks(board: Leaderboard, vocabulary: Vocabulary, order: list[int]) -> list[Block]:
    """One table per group of columns, rows in the ranked order (those without any value of the
    group left out)."""
    by_group: dict[str, list[str]] = {}
    for column in board.mean.columns:
        by_group.setdefault(vocabulary.get(column).group or OTHER, []).append(column)
    blocks: list[Block] = [Heading(3, "Details by group")]
    for group in ordered_groups(by_group, vocabulary):
        columns = by_group[group]
        rows = [i for i in order if board.mean[columns].iloc[i].notna().any()]
        protocol = any(vocabulary.get(c).per_protocol for c in columns)
        table = metric_table(board, vocabulary, columns, rows, protocol=protocol)
        blocks += [Heading(4, group), table]
    return blocks


def _dataset_blocks(
    folder: Path, table: pd.DataFrame, dataset: str, vocabulary: Vocabulary
) -> list[Block]:
    blocks: list[Block] = [Heading(2, f"Dataset: {dataset}")]
    board = leaderboard(table, dataset, vocabulary)
    if board is None:
        return [*blocks, Paragraph("No trial of this dataset finished.")]
    order = ranked(board, vocabulary)
    headlines = headline_columns(board, vocabulary)
    blocks += [
        Heading(3, "Headline"),
        metric_table(board, vocabulary, headlines, order, show_notes=True),
        Paragraph(_ranking_sentence(ranking_columns(board, vocabulary), vocabulary)),
        Paragraph(BOLD_RULE),
    ]
    blocks += _detail_blocks(board, vocabulary, order)
    return blocks + figure_blocks(folder, board, vocabulary, order)


def _has_warnings(rows: pd.DataFrame) -> pd.Series:
    if "warnings" not in rows:
        return pd.Series(False, index=rows.index)
    return rows["warnings"].fillna("").astype(str).str.len() > 0


def _trial_label(row: pd.Series) -> str:
    return label(row, ["seed"], dataset=False, separator=" / ")


def _warning_blocks(table: pd.DataFrame) -> list[Block]:
    warned = table[(table["status"] == "ok") & _has_warnings(table)]
    if warned.empty:
        return []
    rows = [
        [str(r["trial_id"]), str(r["dataset"]), _trial_label(r), str(r["warnings"])]
        for _, r in warned.sort_values(["dataset", "model", "seed"]).iterrows()
    ]
    return [
        Heading(2, "Warnings"),
        Paragraph("Trained, but look before you trust their numbers (⚠ in the tables)."),
        Table(["trial", "dataset", "configuration", "warnings"], rows, numbers=False),
    ]


def _problem_blocks(table: pd.DataFrame) -> list[Block]:
    bad = table[table["status"] != "ok"]
    if bad.empty:
        return []
    rows = [
        [str(r["trial_id"]), str(r["dataset"]), _trial_label(r), str(r["status"]), str(r["reason"])]
        for _, r in bad.sort_values(["status", "dataset", "model", "seed"]).iterrows()
    ]
    header = ["trial", "dataset", "configuration", "status", "reason"]
    return [Heading(2, "Failed, skipped and diverged trials"), Table(header, rows, numbers=False)]


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
    blocks += reproduction_blocks(folder, table, vocabulary)
    table = with_flags(table, vocabulary)
    for dataset in sorted(table["dataset"].dropna().unique()):
        blocks += _dataset_blocks(folder, table, str(dataset), vocabulary)
    return blocks + _warning_blocks(table) + _not_measured_blocks(table) + _problem_blocks(table)


def with_flags(table: pd.DataFrame, vocabulary: Vocabulary) -> pd.DataFrame:
    """The table with every value above its column's declared ``flag_above`` added to the row's
    warnings (``estimate_convergence 0.31 > 0.1``): flagged rows are marked like warned ones."""
    flagged = [
        column
        for column in vocabulary.columns.values()
        if column.flag_above is not None
        and column.name in table
        and is_numeric_dtype(table[column.name])
    ]
    if not flagged:
        return table
    table = table.copy()
    warnings = table["warnings"] if "warnings" in table else pd.Series("", index=table.index)
    notes = warnings.fillna("").astype(str)
    for column in flagged:
        name, limit = column.name, column.flag_above
        above = table[name] > limit
        text = table.loc[above, name].map(lambda v, c=name, t=limit: f"{c} {v:.3g} > {t:g}")
        notes[above] = [f"{n}; {t}" if n else t for n, t in zip(notes[above], text, strict=True)]
    table["warnings"] = notes
    return table


def _not_measured_blocks(table: pd.DataFrame) -> list[Block]:
    """Why metrics gave NaN (errors, reasons), once per configuration (seeds share them)."""
    notes = pd.Series("", index=table.index)
    for column in ("metric_errors", "nan_reasons"):  # errors first: they are bugs to fix
        if column in table:
            text = table[column].fillna("").astype(str)
            notes = notes.str.cat(text, sep="; ").str.strip("; ")
    ok = table[(table["status"] == "ok") & (notes != "")]
    rows = sorted(
        {
            (str(r["dataset"]), f"{r['model']} / {r['regularizer']}", notes[i])
            for i, r in ok.iterrows()
        }
    )
    if not rows:
        return []
    return [
        Heading(2, "Not measured"),
        Paragraph("Metrics that gave NaN on trained models, and why (metric errors first)."),
        Table(
            ["dataset", "configuration", "metrics: reason"], [list(r) for r in rows], numbers=False
        ),
    ]
