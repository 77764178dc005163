"""The leaderboard of one dataset: its configurations (every parameter but the seed) with the mean
of their metrics over seeds and its interval, the best among comparable configurations as tests
decide it (``verdicts``), the configurations ranked by the groups' headline columns, and the
median seed of each. Columns are chosen and compared only through what they declare
(``columns.json``), never by name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from aebench.contract.columns import IDENTITY, Vocabulary, is_metric_column, is_param_column
from aebench.results.rows import cell_text, is_missing, label
from aebench.results.stats import DEFAULT_CONFIDENCE, Interval, interval
from aebench.views.cells import arrow, interval_cell
from aebench.views.ranking_stats import TopVerdict, beats_next, top_verdict

OTHER = "other"  # the group of the columns that declare none


@dataclass
class Leaderboard:
    """One dataset's configurations (every param but the seed) and their metrics over seeds."""

    dataset: str
    shown: list[str]  # configuration columns that differ between configurations
    configs: pd.DataFrame  # one row per configuration: its configuration columns
    n: pd.Series  # seeds per configuration
    mean: pd.DataFrame  # configuration x metric
    std: pd.DataFrame  # sample standard deviation (ddof=1); NaN with a single seed
    trials: list[pd.DataFrame]  # per configuration: its ok trials, one row per seed
    protocol: list[str]  # per configuration: its likelihood protocol, "" without one
    confidence: float = DEFAULT_CONFIDENCE
    best: dict[str, list[int]] = field(default_factory=dict)  # metric -> row positions
    verdicts: dict[str, list[TopVerdict]] = field(default_factory=dict)  # per comparable set

    def samples(self, position: int, metric: str) -> pd.Series:
        """A configuration's values of ``metric``, indexed by seed (NaN: not measured)."""
        trials = self.trials[position]
        return pd.Series(trials[metric].to_numpy(dtype=float), index=trials["seed"].to_numpy())

    def interval(self, position: int, metric: str, vocabulary: Vocabulary) -> Interval:
        """The mean of ``metric`` over the configuration's seeds and its interval (a bootstrap
        where the column declares itself heavy-tailed)."""
        heavy = bool(getattr(vocabulary.get(metric), "heavy_tailed", False))
        return interval(self.samples(position, metric), self.confidence, bootstrap=heavy)

    def label(self, position: int) -> str:
        """``vae / none beta=1 latent_dim=2``: the plugins and the settings that tell it apart."""
        row = self.configs.iloc[position]
        params = []
        for column in self.shown:
            if column in IDENTITY or is_missing(row[column]):
                continue
            # A model's parameter is compared among configurations of that same model only
            # (likewise a regularizer's), so one model's defaults do not clutter another's label.
            owner = column.split(".", 1)[0]
            peers = self.configs
            if owner in ("model", "regularizer"):
                peers = peers[peers[owner] == row[owner]]
            if peers[column].nunique(dropna=False) > 1:
                params.append(column)
        return label(row, params, dataset=False, separator=" / ", short_names=True)


def metric_columns(table: pd.DataFrame, vocabulary: Vocabulary) -> list[str]:
    """Numeric metric columns with at least one finite value; quality first, noisy ones (timings,
    memory) last."""
    metrics = [
        c
        for c in table.columns
        if is_metric_column(c)
        and pd.api.types.is_numeric_dtype(table[c])
        and not pd.api.types.is_bool_dtype(table[c])
        and np.isfinite(table[c].to_numpy(dtype=float)).any()
    ]
    return sorted(metrics, key=lambda m: vocabulary.get(m).noisy)  # stable: declared order kept


def _rows_of(ok: pd.DataFrame, config: pd.Series) -> pd.DataFrame:
    """The trials (one per seed) of one configuration."""
    match = pd.Series(True, index=ok.index)
    for column, value in config.items():
        match &= ok[column].isna() if is_missing(value) else ok[column] == value
    return ok[match]


def protocol_of(trials: pd.DataFrame) -> str:
    """``bernoulli, binarize=static``: what a configuration's likelihoods are of (its p(x|z) and
    how the data was binarized); "" for a model without a likelihood."""
    if "likelihood" not in trials:
        return ""
    binarize = trials["binarize"] if "binarize" in trials else pd.Series("", index=trials.index)
    found = sorted(
        {
            f"{cell_text(name)}, binarize={cell_text(how) or 'none'}"
            for name, how in zip(trials["likelihood"], binarize, strict=True)
            if cell_text(name)
        }
    )
    return " | ".join(found)


def comparable(board: Leaderboard, metric: str, vocabulary: Vocabulary) -> list[list[int]]:
    """The sets of configurations whose values of ``metric`` may be compared: all of them, but for
    a column that declares itself ``per_protocol`` those of one protocol each (a log-likelihood of
    binarized data is not one of grey levels, nor a Bernoulli one a Gaussian one)."""
    everyone = list(range(len(board.configs)))
    if not vocabulary.get(metric).per_protocol:
        return [everyone]
    sets: dict[str, list[int]] = {}
    for i in everyone:
        sets.setdefault(board.protocol[i], []).append(i)
    return list(sets.values())


def verdicts_of(board: Leaderboard, metric: str, vocabulary: Vocabulary) -> list[TopVerdict]:
    """The verdict on the top of each comparable set of ``metric`` (``verdicts.top_verdict``):
    none when the column declares no direction or is noisy (timings, memory), nor for a set with
    fewer than two values."""
    declared = vocabulary.get(metric)
    if declared.direction == 0 or declared.noisy:
        return []
    heavy = bool(getattr(declared, "heavy_tailed", False))
    found = []
    for group in comparable(board, metric, vocabulary):
        samples = {i: board.samples(i, metric) for i in group}
        verdict = top_verdict(
            samples, declared.better or "", heavy_tailed=heavy, confidence=board.confidence
        )
        if verdict is not None:
            found.append(verdict)
    return found


def best_of(board: Leaderboard, metric: str, vocabulary: Vocabulary) -> list[int]:
    """The configurations that are best at ``metric``, one per comparable set at most: each set's
    top where the tests show it better than every other one of its set (``verdicts_of``)."""
    return sorted(v.top for v in verdicts_of(board, metric, vocabulary) if v.best)


def leaderboard(
    table: pd.DataFrame,
    dataset: str,
    vocabulary: Vocabulary | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Leaderboard | None:
    """Mean and standard deviation over seeds of every ``ok`` configuration of ``dataset``, and
    the verdicts on the best per column (``verdicts_of``) at ``confidence``."""
    vocabulary = vocabulary or Vocabulary()
    ok = table[(table["dataset"] == dataset) & (table["status"] == "ok")]
    if ok.empty:
        return None
    keys = [c for c in ok.columns if is_param_column(c) and c != "seed"]
    keys = [c for c in keys if c in IDENTITY or ok[c].notna().any()]
    # Lists were flattened to JSON text; the rest are scalars, so every key groups as it is.
    by = [ok[k] for k in keys]
    metrics = metric_columns(ok, vocabulary)
    numbers = ok[metrics].astype(float).replace([np.inf, -np.inf], np.nan)
    mean = numbers.groupby(by, dropna=False, sort=True).mean()
    std = numbers.groupby(by, dropna=False, sort=True).std(ddof=1)
    n = ok.groupby(keys, dropna=False, sort=True).size()
    configs = n.index.to_frame(index=False)
    shown = [
        c for c in keys if c in ("model", "regularizer") or configs[c].nunique(dropna=False) > 1
    ]
    trials = [_rows_of(ok, config) for _, config in configs.iterrows()]
    board = Leaderboard(
        dataset=dataset,
        shown=shown,
        configs=configs,
        n=n.reset_index(drop=True),
        mean=mean.reset_index(drop=True),
        std=std.reset_index(drop=True),
        trials=trials,
        protocol=[protocol_of(rows) for rows in trials],
        confidence=confidence,
    )
    for metric in metrics:
        if verdicts := verdicts_of(board, metric, vocabulary):
            board.verdicts[metric] = verdicts
        if best := sorted(v.top for v in verdicts if v.best):
            board.best[metric] = best
    return board


# --- which columns, in which order --------------------------------------------------------------


def ordered_groups(groups: Iterable[str], vocabulary: Vocabulary) -> list[str]:
    """Groups in report order: those with a declared place (``Column.group_order``) by it, then
    the others as first seen, then ``other`` (the columns that declare none)."""
    seen = list(dict.fromkeys(groups))
    places = vocabulary.group_places()
    named = sorted((g for g in seen if g != OTHER), key=lambda g: places.get(g, math.inf))
    return named + ([OTHER] if OTHER in seen else [])  # sorted is stable: first seen kept


def headline_columns(board: Leaderboard, vocabulary: Vocabulary) -> list[str]:
    """Each group's declared headline column that has a value here, in group order."""
    headlines = vocabulary.headlines()
    groups = ordered_groups(headlines, vocabulary)
    return [headlines[g] for g in groups if headlines[g] in board.mean]


def ranking_columns(board: Leaderboard, vocabulary: Vocabulary) -> list[str]:
    """The headline columns configurations are ranked by, first one first: those that declare a
    direction, are not noisy, have a value for some configuration, and are comparable among the
    configurations that have one."""
    out = []
    for column in headline_columns(board, vocabulary):
        declared = vocabulary.get(column)
        values = board.mean[column].to_numpy(dtype=float)
        protocols = {board.protocol[i] for i in np.flatnonzero(np.isfinite(values))}
        if declared.direction == 0 or declared.noisy or not protocols:
            continue
        if declared.per_protocol and len(protocols) > 1:
            continue  # no one order across protocols
        out.append(column)
    return out


def ranked(board: Leaderboard, vocabulary: Vocabulary) -> list[int]:
    """Positions of the configurations, best first: by the first ranking column; configurations
    without a value (or tied) by the next one; those with none of them last, by label."""
    columns = ranking_columns(board, vocabulary)

    def key(i: int) -> tuple:
        parts = []
        for column in columns:
            value = float(board.mean[column].iloc[i]) * vocabulary.direction(column)
            parts.append((0, -value) if math.isfinite(value) else (1, 0.0))
        return (*parts, board.label(i))

    return sorted(range(len(board.configs)), key=key)


def headline_verdict(board: Leaderboard, vocabulary: Vocabulary) -> TopVerdict | None:
    """The verdict on the top of the first ranking column (one comparable set: a ranking column
    has a single protocol); None where nothing can be ranked."""
    columns = ranking_columns(board, vocabulary)
    found = board.verdicts.get(columns[0], []) if columns else []
    return found[0] if found else None


def chances_of_beating_next(
    board: Leaderboard, vocabulary: Vocabulary, order: list[int]
) -> dict[int, float]:
    """Per configuration (position), the probability that it beats the next one in ``order``
    by the first ranking column, among those that have a value of it."""
    columns = ranking_columns(board, vocabulary)
    if not columns:
        return {}
    column = columns[0]
    have = [i for i in order if np.isfinite(board.mean[column].iloc[i])]
    samples = [board.samples(i, column) for i in have]
    better = vocabulary.get(column).better or ""
    return dict(zip(have, beats_next(samples, better), strict=False))


def verdict_text(board: Leaderboard, verdict: TopVerdict) -> str:
    """``best`` (better than each other one) or ``tied with a, b`` (not shown worse), with the
    confidence and the correction it was decided at."""
    n = len(verdict.adjusted)
    at = f"at {board.confidence:.0%}"
    at += f", Holm-corrected over {n} comparisons" if n > 1 else ", one comparison"
    if verdict.best:
        return f"best (better than {'the other' if n == 1 else f'each of the other {n}'}, {at})"
    others = ", ".join(board.label(i) for i in verdict.tied[1:])
    return f"tied with {others} (not shown worse {at})"


def best_configurations(
    table: pd.DataFrame, vocabulary: Vocabulary, confidence: float = DEFAULT_CONFIDENCE
) -> dict[str, str]:
    """Per dataset, its top configuration and whether tests make it best, as the headline table
    ranks them: ``{"digits": "vae / none: log_px -21.3 ± 0.25 (95% CI, 5 seeds) ↑, best
    (better than each of the other 5, …); estimate: …"}``; a dataset whose configurations cannot
    be ranked (no headline with a direction and a value) is left out."""
    out = {}
    for dataset in sorted(table["dataset"].dropna().unique()):
        board = leaderboard(table, str(dataset), vocabulary, confidence)
        verdict = headline_verdict(board, vocabulary) if board is not None else None
        if board is None or verdict is None:
            continue
        column = ranking_columns(board, vocabulary)[0]
        found = board.interval(verdict.top, column, vocabulary)
        shown = interval_cell(found) + (f" ({found.note()})" if found.exists else "")
        text = f"{board.label(verdict.top)}: {column} {shown}{arrow(column, vocabulary)}, "
        text += verdict_text(board, verdict)
        if notes := note_text(board.trials[verdict.top], "notes"):
            text += f"; estimate: {notes}"
        out[str(dataset)] = text
    return out


def median_seed(
    trials: pd.DataFrame, columns: list[str], vocabulary: Vocabulary
) -> tuple[pd.Series, str]:
    """The trial of a configuration whose value is the median of its seeds', and the column that
    decided: the first of ``columns`` that the trials have. Of an even number of seeds, the worse of
    the middle two (a report should not flatter); ties by seed; without any value, the first
    seed (and "")."""
    for column in columns:
        if column not in trials:
            continue
        have = trials[np.isfinite(trials[column].to_numpy(dtype=float))]
        if have.empty:
            continue
        worse = -vocabulary.direction(column) * have[column].astype(float)
        order = have.assign(_worse=worse).sort_values(["_worse", "seed"], kind="stable")
        return order.iloc[len(order) // 2].drop("_worse"), column
    return trials.sort_values("seed").iloc[0], ""


def note_text(trials: pd.DataFrame, column: str = "warnings") -> str:
    """A configuration's warnings (or its estimate ``notes``): each once, with its seeds unless
    every seed has it."""
    if column not in trials:
        return ""
    seeds: dict[str, list[str]] = {}
    for seed, text in zip(trials["seed"], trials[column], strict=True):
        for item in filter(None, cell_text(text).split("; ")):
            seeds.setdefault(item, []).append(str(seed))
    return "; ".join(
        item if len(who) == len(trials) else f"{item} (seed {', '.join(who)})"
        for item, who in seeds.items()
    )
