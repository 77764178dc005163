"""What a report and ``aebench run``'s closing line say of each dataset's top configuration:
best, tied with some (not shown worse), or untested against some, with the confidence and the
correction the tests were decided at."""

from __future__ import annotations

import math

import pandas as pd

from aebench.contract.columns import Vocabulary
from aebench.results.stats import DEFAULT_CONFIDENCE
from aebench.views.cells import arrow, interval_cell
from aebench.views.ranking import (
    Leaderboard,
    headline_verdict,
    leaderboards,
    note_text,
    ranking_columns,
)
from aebench.views.ranking_stats import TopVerdict


def verdict_text(board: Leaderboard, verdict: TopVerdict) -> str:
    """``best`` (better than each other one) or ``tied with a, b`` (not shown worse), with the
    confidence and the correction it was decided at; those it could not be tested against (a
    side of one seed, or of two whose differences are all equal) named apart, as untested."""
    n, tests = len(verdict.adjusted), verdict.comparisons
    at = f"at {board.confidence:.0%}"
    at += f", Holm-corrected over {tests} comparisons" if tests > 1 else ", one comparison"
    if verdict.best:
        return f"best (better than {'the other' if n == 1 else f'each of the other {n}'}, {at})"
    untested = [i for i in verdict.tied[1:] if math.isnan(verdict.adjusted.get(i, math.nan))]
    tied = [i for i in verdict.tied[1:] if i not in untested]
    parts = []
    if tied:
        parts.append(f"tied with {', '.join(board.label(i) for i in tied)} (not shown worse {at})")
    if untested:
        names = ", ".join(board.label(i) for i in untested)
        parts.append(f"untested against {names} (too few seeds to test)")
    return "; ".join(parts)


def best_configurations(
    table: pd.DataFrame, vocabulary: Vocabulary, confidence: float = DEFAULT_CONFIDENCE
) -> dict[str, str]:
    """Per dataset, its top configuration and whether tests make it best, as the headline table
    ranks them: ``{"digits": "vae / none: log_px -21.3 ± 0.25 (95% CI, 5 seeds) ↑, best
    (better than each of the other 5, …); estimate: …"}``; a dataset whose configurations cannot
    be ranked (no headline with a direction and a value) is left out."""
    out = {}
    boards = leaderboards(table, vocabulary, confidence)
    for dataset in boards.datasets():
        board = boards.of(dataset)
        verdict = headline_verdict(board, vocabulary) if board is not None else None
        if board is None or verdict is None:
            continue
        column = ranking_columns(board, vocabulary)[0]
        found = board.interval(verdict.top, column, vocabulary)
        shown = interval_cell(found) + (f" ({found.note()})" if found.exists else "")
        text = f"{board.label(verdict.top)}: {column} {shown}{arrow(column, vocabulary)}, "
        run, ok = board.run_count(verdict.top), int(board.n.iloc[verdict.top])
        text += f"{ok} of its {run} seeds trained, " if run > ok else ""
        text += verdict_text(board, verdict)
        if notes := note_text(board.trials[verdict.top], "notes"):
            text += f"; estimate: {notes}"
        out[dataset] = text
    return out
