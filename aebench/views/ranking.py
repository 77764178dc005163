"""The leaderboard of one dataset: its configurations (every parameter but the seed) with the mean
of their metrics over seeds (the median of a heavy-tailed column) and its interval, the best among
comparable configurations as tests decide it (``verdicts``), the configurations ranked by the
groups' headline columns, and the median seed of each. Columns are chosen and compared only through
what they declare (``columns.json``), never by name.

A leaderboard is computed once per table and dataset (``Leaderboards``) and shared by all that
shows it: the report's dataset blocks and its ranks across datasets, and, within a
``SharedLeaderboards`` scope, the lines a run ends with after its report (issue 31: its verdicts,
one test per pair of configurations and column, were most of the report's own time).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from aebench.contract.columns import (
    IDENTITY,
    TEST_DATA,
    Vocabulary,
    is_metric_column,
    is_param_column,
)
from aebench.results.rows import cell_text, is_missing, label
from aebench.results.stats import DEFAULT_CONFIDENCE, Interval, interval
from aebench.views.ranking_stats import TopVerdict, beats_next, samples_of, top_verdict

OTHER = "other"  # the group of the columns that declare none


@dataclass
class Leaderboard:
    """One dataset's configurations (every param but the seed) and their metrics over seeds."""

    dataset: str
    shown: list[str]  # configuration columns that differ between configurations
    configs: pd.DataFrame  # one row per configuration: its configuration columns
    n: pd.Series  # seeds per configuration (those that trained: status ok)
    # seeds per configuration of any status (NaN where a failed row's settings matched none)
    run: pd.Series
    centre: pd.DataFrame  # configuration x metric: the mean, or a heavy-tailed column's median
    trials: list[pd.DataFrame]  # per configuration: its ok trials, one row per seed
    protocol: list[str]  # per configuration: its likelihood protocol, "" without one
    # per configuration: the test split its rows were measured on (``test_data_of``)
    test_data: list[str]
    confidence: float = DEFAULT_CONFIDENCE
    best: dict[str, list[int]] = field(default_factory=dict)  # metric -> row positions
    verdicts: dict[str, list[TopVerdict]] = field(default_factory=dict)  # per comparable set
    # Worked out once each: the verdicts, the intervals and the tables ask for them again and again.
    _samples: dict[tuple[int, str], pd.Series] = field(default_factory=dict, init=False, repr=False)
    _labels: dict[int, str] = field(default_factory=dict, init=False, repr=False)

    def samples(self, position: int, metric: str) -> pd.Series:
        """A configuration's values of ``metric`` by (seed, start) (``ranking_stats.samples_of``);
        the same Series each time (read it, do not change it)."""
        key = (position, metric)
        if key not in self._samples:
            unknown = f"configuration {position}"  # a start no other configuration has
            self._samples[key] = samples_of(self.trials[position], metric, unknown)
        return self._samples[key]

    def interval(self, position: int, metric: str, vocabulary: Vocabulary) -> Interval:
        """The mean of ``metric`` over the configuration's seeds and its interval (the median and
        its distribution-free interval where the column declares itself heavy-tailed)."""
        column = vocabulary.get(metric)  # heavy-tailed, and the values it can take: how it reads
        range_ = {"at_least": column.at_least, "at_most": column.at_most}
        samples = self.samples(position, metric)
        return interval(samples, self.confidence, heavy_tailed=column.heavy_tailed, **range_)

    def run_count(self, position: int) -> int:
        """The seeds a configuration ran, of any status (its ``n`` where none was counted)."""
        counted = self.run.iloc[position]
        return int(self.n.iloc[position]) if pd.isna(counted) else int(counted)

    def label(self, position: int) -> str:
        """``vae / none beta=1 latent_dim=2``: the plugins and the settings that tell it apart
        (worked out once: each filters the configurations per shown parameter, and a report asks
        for each label a dozen times: tables, figure headings, one plane point per trial)."""
        if position not in self._labels:
            self._labels[position] = self._label(position)
        return self._labels[position]

    def _label(self, position: int) -> str:
        row = self.configs.iloc[position]
        params = []
        for column in self.shown:
            if column in IDENTITY or is_missing(row[column]):
                continue
            # A model's parameter is compared among configurations of that same model only
            # (likewise a regularizer's), so one model's defaults do not clutter another's label.
            owner = column.split(".", 1)[0]
            peers = self.configs[column]  # filtered as a column, not as the whole frame
            if owner in ("model", "regularizer"):
                peers = peers[self.configs[owner] == row[owner]]
            if peers.nunique(dropna=False) > 1:
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


def test_data_of(trials: pd.DataFrame) -> str:
    """The digest of the test split a configuration was measured on (``aebench.run.data``);
    several joined where its rows disagree (the dataset's code changed between runs); "" where
    the table is older than the column."""
    if TEST_DATA not in trials:
        return ""
    return " | ".join(sorted({cell_text(d) for d in trials[TEST_DATA] if cell_text(d)}))


def comparison_key(board: Leaderboard, i: int, per_protocol: bool) -> tuple[str, str]:
    """What configuration ``i`` must share with another for a column to compare them: its test
    split (an unrecorded one is taken as the table's, where the table holds one), and for a
    ``per_protocol`` column its likelihood protocol."""
    recorded = {d for d in board.test_data if d}
    data = board.test_data[i] or (next(iter(recorded)) if len(recorded) == 1 else "")
    return data, board.protocol[i] if per_protocol else ""


def comparable(board: Leaderboard, metric: str, vocabulary: Vocabulary) -> list[list[int]]:
    """The sets of configurations whose values of ``metric`` may be compared: those measured on
    one test split (a reconstruction error of binarized digits is not one of grey levels, nor a
    score on one test draw a score on another), and for a column that declares itself
    ``per_protocol`` of one likelihood protocol too (a log-likelihood of binarized data is not
    one of grey levels, nor a Bernoulli one a Gaussian one)."""
    per_protocol = vocabulary.get(metric).per_protocol
    sets: dict[tuple[str, str], list[int]] = {}
    for i in range(len(board.configs)):
        sets.setdefault(comparison_key(board, i, per_protocol), []).append(i)
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
    """Mean (a heavy-tailed column's median) over seeds of every ``ok`` configuration of
    ``dataset``, and the verdicts on the best per column (``verdicts_of``) at ``confidence``;
    None where no trial of it is ``ok``. The one already computed for an equal table where one is
    shared."""
    return leaderboards(table, vocabulary, confidence).of(dataset)


def _computed(
    table: pd.DataFrame, dataset: str, vocabulary: Vocabulary, confidence: float
) -> Leaderboard | None:
    every = table[table["dataset"] == dataset]
    ok = every[every["status"] == "ok"]
    if ok.empty:
        return None
    keys = [c for c in ok.columns if is_param_column(c) and c != "seed"]
    keys = [c for c in keys if c in IDENTITY or ok[c].notna().any()]
    # Lists were flattened to JSON text; the rest are scalars, so every key groups as it is.
    grouped = ok.groupby(keys, dropna=False, sort=True)
    n = grouped.size()
    configs = n.index.to_frame(index=False)
    group = grouped.ngroup().to_numpy()  # each trial's configuration: its position in ``n``
    metrics = metric_columns(ok, vocabulary)
    numbers = ok[metrics].astype(float).replace([np.inf, -np.inf], np.nan).groupby(group)
    centre = numbers.mean()
    heavy = [m for m in metrics if vocabulary.get(m).heavy_tailed]
    if heavy:  # what their cells show, and what ranks them
        centre[heavy] = numbers[heavy].median()
    shown = [
        c for c in keys if c in ("model", "regularizer") or configs[c].nunique(dropna=False) > 1
    ]
    trials = [ok[group == i] for i in range(len(n))]
    board = Leaderboard(
        dataset=dataset,
        shown=shown,
        configs=configs,
        n=n.reset_index(drop=True),
        # seeds that failed or diverged too: a mean of the seeds that trained may flatter
        run=every.groupby(keys, dropna=False).size().reindex(n.index).reset_index(drop=True),
        centre=centre.reset_index(drop=True),
        trials=trials,
        protocol=[protocol_of(rows) for rows in trials],
        test_data=[test_data_of(rows) for rows in trials],
        confidence=confidence,
    )
    for metric in metrics:
        if verdicts := verdicts_of(board, metric, vocabulary):
            board.verdicts[metric] = verdicts
        if best := sorted(v.top for v in verdicts if v.best):
            board.best[metric] = best
    return board


class Leaderboards:
    """Every dataset's leaderboard of one table, each computed when first asked for and kept:
    the report's dataset blocks, its ranks across datasets and the best configurations show the
    same ones. Read them; do not change the table meanwhile."""

    def __init__(
        self,
        table: pd.DataFrame,
        vocabulary: Vocabulary | None = None,
        confidence: float = DEFAULT_CONFIDENCE,
    ) -> None:
        self.table = table
        self.vocabulary = vocabulary or Vocabulary()
        self.confidence = confidence
        self._boards: dict[str, Leaderboard | None] = {}

    def datasets(self) -> list[str]:
        """The table's datasets, sorted."""
        return [str(d) for d in sorted(self.table["dataset"].dropna().unique())]

    def of(self, dataset: str) -> Leaderboard | None:
        """The leaderboard of ``dataset`` (``leaderboard``), computed the first time."""
        if dataset not in self._boards:
            found = _computed(self.table, dataset, self.vocabulary, self.confidence)
            self._boards[dataset] = found
        return self._boards[dataset]


class SharedLeaderboards:
    """A scope (``shared``) in which every table equal to one already ranked, under an equal
    vocabulary and confidence, gets that one's leaderboards: a run's report keeps its own, and
    the lines the run ends with, computed from the same results read again, reuse them. Outside
    any scope nothing is kept."""

    KEPT = 4  # tables at most: a run ranks one

    def __init__(self) -> None:
        self._kept: list[Leaderboards] = []

    @contextlib.contextmanager
    def shared(self) -> Iterator[SharedLeaderboards]:
        token = _SHARED.set(self)
        try:
            yield self
        finally:
            _SHARED.reset(token)

    def find(self, table: pd.DataFrame, vocabulary: Vocabulary, confidence: float) -> Leaderboards:
        for boards in self._kept:
            if (
                boards.confidence == confidence
                and boards.vocabulary == vocabulary
                and boards.table.equals(table)  # values and dtypes; NaN equals NaN
            ):
                return boards
        # Copies: a caller changing its table or vocabulary later changes nothing kept here.
        boards = Leaderboards(table.copy(), copy.deepcopy(vocabulary), confidence)
        self._kept = [*self._kept[-(self.KEPT - 1) :], boards]
        return boards


_SHARED: ContextVar[SharedLeaderboards | None] = ContextVar("shared_leaderboards", default=None)


def leaderboards(
    table: pd.DataFrame,
    vocabulary: Vocabulary | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Leaderboards:
    """The leaderboards of ``table``: those of an equal table within a ``SharedLeaderboards``
    scope, else new ones."""
    vocabulary = vocabulary or Vocabulary()
    scope = _SHARED.get()
    if scope is None:
        return Leaderboards(table, vocabulary, confidence)
    return scope.find(table, vocabulary, confidence)


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
    return [headlines[g] for g in groups if headlines[g] in board.centre]


def ranking_columns(board: Leaderboard, vocabulary: Vocabulary) -> list[str]:
    """The headline columns configurations are ranked by, first one first: those that declare a
    direction, are not noisy, have a value for some configuration, and are comparable among the
    configurations that have one."""
    out = []
    for column in headline_columns(board, vocabulary):
        declared = vocabulary.get(column)
        values = board.centre[column].to_numpy(dtype=float)
        measured = np.flatnonzero(np.isfinite(values))
        keys = {comparison_key(board, i, declared.per_protocol) for i in measured}
        if declared.direction == 0 or declared.noisy or not keys:
            continue
        if len(keys) > 1:
            continue  # no one order across test splits or likelihood protocols
        out.append(column)
    return out


def ranked(board: Leaderboard, vocabulary: Vocabulary) -> list[int]:
    """Positions of the configurations, best first: by the first ranking column; configurations
    without a value (or tied) by the next one; those with none of them last, by label."""
    columns = ranking_columns(board, vocabulary)

    def key(i: int) -> tuple:
        parts = []
        for column in columns:
            value = float(board.centre[column].iloc[i]) * vocabulary.direction(column)
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
) -> dict[int, Interval]:
    """Per configuration (position), the probability that it beats the next one in ``order``
    by the first ranking column, among those that have a value of it, with its interval."""
    columns = ranking_columns(board, vocabulary)
    if not columns:
        return {}
    column = columns[0]
    have = [i for i in order if np.isfinite(board.centre[column].iloc[i])]
    samples = [board.samples(i, column) for i in have]
    better = vocabulary.get(column).better or ""
    return dict(zip(have, beats_next(samples, better), strict=False))


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
