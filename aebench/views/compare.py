"""``aebench compare NEW BASELINE``: what changed between two results tables, by a test.

Configurations are matched on every parameter column (dataset, model, regularizer and their
``dataset.*``, ``model.*``, ``regularizer.*``, ``train.*``, ``eval.*`` columns) but not the seed,
and not the parameters a ``[search]`` chose (``as_tuned``): a tuned configuration is matched on what
was fixed before its search. Only rows with status ``ok`` count, and each side's seeds are a sample:
every compared column of every configuration is a test of NEW against the baseline
(``aebench.views.compare_verdicts``): paired by seed over the seeds whose trials started from the
same weights in both tables (``same_start``), two-sample otherwise; the column's floor the smallest
change that matters (a speed column's is ``speed_tolerance`` of the baseline: NEW against it
scaled), Benjamini–Hochberg over everything compared. The verdicts are ``regressed``, ``improved``,
``unchanged`` (shown to be within the floor) and ``inconclusive`` (too few seeds to tell; the note
says how many would).

Which columns are compared, which way each improves and whether it is heavy-tailed is read from
the tables' declarations (``columns.json`` beside each table; the new table's win), never from a
list kept here.

A configuration that has ok rows in the baseline and none in NEW (all failed or diverged) is a
quality regression, and so is a column it no longer measures. Where some of a configuration's seeds
did not train, in either table, the share that did is tested too (a ``status`` row,
``compare_verdicts.trained_share``): the columns compare only the seeds that trained. So is the
share of a column's values that are numbers, where some are not (NaN, infinite: a ``COLUMN
measured`` row). A configuration whose likelihood protocol (the ``likelihood`` and ``binarize``
columns) or whose test split (the ``test_data`` digest, where both tables record it) differs between
the tables is not compared at all: it is reported ``incomparable``, which fails like a quality
regression. A column with no value in one whole table (or none in NEW) but
values in the other cannot be compared: that is bad input; one the baseline has none of (added
since) is listed.

The NEW table's folder may carry published values (a suite's ``[[references]]``,
``aebench.references``): each is checked against the configuration of NEW it names, a row of kind
``reproduction``, ``inside`` or ``outside`` its tolerance (``outside`` also when not measured). It
fails only where asked (``--fail-on reproduction``): a shortened run is outside by design.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from aebench.contract.columns import (
    IDENTITY,
    START_DIGEST,
    TEST_DATA,
    Column,
    Vocabulary,
    is_config_column,
)
from aebench.results.references import (
    Outcome,
    Reference,
    Verdict,
    outcomes,
    verdicts,
)
from aebench.results.rows import canonical, label
from aebench.results.stats import DEFAULT_CONFIDENCE
from aebench.views.compare_matching import as_tuned, one_per_stack, same_start
from aebench.views.compare_tables import CompareError
from aebench.views.compare_verdicts import measured_share, settle, trained_share, two_sample

Kind = Literal["quality", "speed", "reproduction", "inconclusive"]
KINDS: tuple[Kind, ...] = ("quality", "speed")  # what regresses between tables ("both")
EVERY_KIND: tuple[Kind, ...] = (*KINDS, "reproduction")  # and published values matched ("all")
DEFAULT_SPEED_TOLERANCE = 0.2
FAILING = ("regressed", "incomparable", "outside")
PROTOCOL = ("likelihood", "binarize")  # the row's likelihood protocol: compared only if equal
VERSION = "version.aebench"


@dataclass
class Comparison:
    """One row per (configuration, metric) compared, and what could not be compared."""

    rows: pd.DataFrame  # ROW_COLUMNS
    confidence: float = DEFAULT_CONFIDENCE
    only_in_baseline: list[str] = field(default_factory=list)  # configurations NEW lacks
    only_in_new: list[str] = field(default_factory=list)
    unmatched_columns: list[str] = field(default_factory=list)  # parameters in one table only
    new_columns: list[str] = field(default_factory=list)  # compared columns the baseline lacks
    warnings: dict[str, str] = field(default_factory=dict)  # configuration -> training warnings
    versions: tuple[str, str] = ("", "")  # the aebench versions of NEW and the baseline
    # "new", "baseline": the tables that do not say what their trials started from (older than
    # ``start_digest``), so that none of their seeds could pair
    without_starts: list[str] = field(default_factory=list)

    def regressions(self, kinds: tuple[Kind, ...] = KINDS) -> pd.DataFrame:
        """Rows that fail a check of ``kinds``: regressed, not comparable at all (another
        protocol), outside a published value; and inconclusive where ``kinds`` names it."""
        rows = self.rows
        failed = rows["verdict"].isin(FAILING)
        if "inconclusive" in kinds:
            failed |= rows["verdict"] == "inconclusive"
        return rows[failed & rows["kind"].isin(kinds)]

    def changed(self) -> pd.DataFrame:
        return self.rows[self.rows["verdict"] != "unchanged"]


def compared_columns(vocabulary: Vocabulary) -> list[Column]:
    """The columns ``compare`` checks: those with a quality floor or marked as speed."""
    return [c for c in vocabulary.columns.values() if c.floor is not None or c.speed]


def config_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if is_config_column(c)]


def _config_keys(table: pd.DataFrame, columns: list[str]) -> pd.Series:
    records = table[columns].to_dict("records")
    keys = [json.dumps({c: canonical(r[c]) for c in columns}, sort_keys=True) for r in records]
    return pd.Series(keys, index=table.index)


def _protocol(rows: pd.DataFrame) -> str:
    """What the rows' likelihoods are of (``bernoulli, binarize=dynamic``), as one string: rows of
    different protocols are never compared. ``unrecorded`` for tables older than the columns."""
    parts = []
    for column in PROTOCOL:
        values = sorted({str(v) for v in rows[column].fillna("")}) if column in rows else []
        parts.append(f"{column}={'|'.join(values) if values else 'unrecorded'}")
    return ", ".join(parts)


def _test_split(rows: pd.DataFrame) -> str:
    """The digest of the test split the rows were measured on (``aebench.run.data``); "" for a
    table older than the column: a changed split (a dataset's code, its test draw) is not
    compared."""
    values = {str(v) for v in rows[TEST_DATA].dropna() if str(v)} if TEST_DATA in rows else set()
    return "|".join(sorted(values))


def _label(key: str, varying: list[str]) -> str:
    """``digits/ae/none model.latent_dim=8``: the names, and the parameters that tell apart."""
    return label(json.loads(key), varying)


def compare(
    new: pd.DataFrame,
    baseline: pd.DataFrame,
    *,
    speed_tolerance: float = DEFAULT_SPEED_TOLERANCE,
    confidence: float = DEFAULT_CONFIDENCE,
    vocabulary: Vocabulary | None = None,
    references: list[Reference] | None = None,
) -> Comparison:
    """Test matching configurations' seeds; see the module's docstring for the rule.

    ``vocabulary`` declares the columns (default: the core's own alone); ``references`` are
    published values NEW is checked against (rows of kind ``reproduction``). Raises
    ``CompareError`` for a column that one table lacks values of altogether."""
    vocabulary = vocabulary or Vocabulary()
    new, baseline = as_tuned(new), as_tuned(baseline)
    new_columns, base_columns = config_columns(new), config_columns(baseline)
    columns = [c for c in base_columns if c in new_columns]
    unmatched = sorted(set(new_columns) ^ set(base_columns))
    added = [c.name for c in compared_columns(vocabulary) if c.name in set(new) - set(baseline)]
    new = new.assign(config=_config_keys(new, columns))
    baseline = baseline.assign(config=_config_keys(baseline, columns))
    new_ok, base_ok = new[new["status"] == "ok"], baseline[baseline["status"] == "ok"]

    keys = sorted(set(baseline["config"]) | set(new["config"]))
    varying = [
        c
        for c in columns
        if c not in IDENTITY and len({json.loads(k)[c] for k in keys} - {None}) > 1
    ]
    shared = set(new_ok["config"]) & set(base_ok["config"])  # a column is judged where both are
    metrics = _measured_columns(
        vocabulary, new_ok[new_ok["config"].isin(shared)], base_ok[base_ok["config"].isin(shared)]
    )
    new_groups, base_groups = (
        dict(tuple(new_ok.groupby("config"))),
        dict(tuple(base_ok.groupby("config"))),
    )
    rows = []
    # every configuration in both tables, those whose seeds all failed in the baseline too (a fix
    # that made one train is a change to report): the others are listed as only in one table
    for key in sorted(set(baseline["config"]) & set(new["config"])):
        label = _label(key, varying)
        new_statuses = new.loc[new["config"] == key, "status"]
        if key in base_groups and key not in new_groups:
            statuses = ", ".join(sorted(set(new_statuses)))
            rows.append(_row(label, "status", "quality", verdict="regressed", note=statuses))
            continue
        base_statuses = baseline.loc[baseline["config"] == key, "status"]
        if (base_statuses != "ok").any() or (new_statuses != "ok").any():
            tested = trained_share(base_statuses, new_statuses, confidence)
            rows.append(_row(label, "status", "quality", verdict="tested", **tested))
        if key not in base_groups or key not in new_groups:
            continue  # no seed trained on one side: there are no values to compare
        base_rows = base_groups[key]
        base_protocol, new_protocol = _protocol(base_rows), _protocol(new_groups[key])
        if base_protocol != new_protocol:
            note = f"{base_protocol} -> {new_protocol}"
            rows.append(_row(label, "protocol", "quality", verdict="incomparable", note=note))
            continue
        base_split, new_split = _test_split(base_rows), _test_split(new_groups[key])
        if base_split and new_split and base_split != new_split:  # both recorded, and not alike
            note = f"{TEST_DATA} {base_split} -> {new_split}"
            rows.append(_row(label, TEST_DATA, "quality", verdict="incomparable", note=note))
            continue
        started_alike = same_start(base_rows, new_groups[key])  # one configuration's seeds
        for column in metrics:
            base_values = _values(base_rows, column)
            if not len(base_values):
                continue  # not measured for this configuration (a deterministic model's ELBO)
            new_values = _values(new_groups[key], column)
            base_all, new_all = base_rows[column.name], new_groups[key][column.name]
            every = pd.to_numeric(pd.concat([base_all, new_all]), errors="coerce")
            if len(new_values) and not np.isfinite(every.astype(float)).all():
                shares = measured_share(base_all, new_all, confidence)  # NaN or infinite ones
                kind = "speed" if column.speed else "quality"  # what fails with it (--fail-on)
                rows.append(
                    _row(label, f"{column.name} measured", kind, verdict="tested", **shares)
                )
            tested = (base_values, new_values, started_alike)
            rows.append(_compared(label, column, *tested, speed_tolerance, confidence))
    reproduced = outcomes(new, references or [], vocabulary)
    directions = [vocabulary.direction(o.reference.metric) for o in reproduced]
    said = verdicts(reproduced, directions, confidence)
    for outcome, verdict in zip(reproduced, said, strict=True):
        rows.append(_reproduced(outcome, verdict, confidence))
    base_keys, new_keys = set(baseline["config"]), set(new["config"])
    return Comparison(
        rows=settle(pd.DataFrame(rows, columns=ROW_COLUMNS), confidence),
        confidence=confidence,
        only_in_baseline=[_label(k, varying) for k in sorted(base_keys - new_keys)],
        only_in_new=[_label(k, varying) for k in sorted(new_keys - base_keys)],
        unmatched_columns=unmatched,
        new_columns=added,
        warnings=_warnings(new_ok, varying),
        versions=(_version(new), _version(baseline)),
        without_starts=[
            n for n, t in (("new", new), ("baseline", baseline)) if START_DIGEST not in t
        ],
    )


def _values(rows: pd.DataFrame, column: Column) -> pd.Series:
    """The column's finite values, indexed by seed; a speed column's once a stack."""
    rows, name = one_per_stack(rows) if column.speed else rows, column.name
    values = pd.to_numeric(rows[name], errors="coerce").astype(float)
    values.index = rows["seed"].to_numpy()
    return values[np.isfinite(values)]


def _measured_columns(
    vocabulary: Vocabulary, new_ok: pd.DataFrame, base_ok: pd.DataFrame
) -> list[Column]:
    """The compared columns that both tables measured (of the configurations both trained); one
    measured in one table only is bad input (a metric that broke everywhere, say), unless the
    baseline has no such column: a metric added since, listed as new (``Comparison``)."""
    measured = []
    for column in compared_columns(vocabulary):
        if column.name not in base_ok.columns:
            continue
        in_base = len(_values(base_ok, column))
        in_new = len(_values(new_ok, column)) if column.name in new_ok else 0
        if bool(in_new) != bool(in_base):
            empty = new_ok if in_base else base_ok
            name = "the new table" if in_base else "the baseline"
            how = "is NaN in every row that trained" if column.name in empty else "is no column"
            raise CompareError(
                f"{name}: {column.name} {how}, and the other table has values: cannot compare it"
            )
        if in_new:
            measured.append(column)
    return measured


def _warnings(rows: pd.DataFrame, varying: list[str]) -> dict[str, str]:
    """Configuration -> the training warnings and metric errors of NEW's seeds, each text once,
    with its seeds (``seeds 0, 1, 2: …``: a search's warning is every seed's)."""
    out: dict[str, dict[str, list[str]]] = {}
    for name, prefix in (("warnings", ""), ("metric_errors", "metric errors: ")):
        texts = rows[name] if name in rows else []
        for key, seed, text in zip(rows["config"], rows["seed"], texts, strict=False):
            if isinstance(text, str) and text.strip():
                told = out.setdefault(_label(key, varying), {})
                told.setdefault(prefix + text.strip(), []).append(str(seed))
    return {
        config: "; ".join(
            f"seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}: {text}"
            for text, seeds in notes.items()
        )
        for config, notes in out.items()
    }


def _version(table: pd.DataFrame) -> str:
    """The aebench versions that wrote ``table`` (``?`` for a table older than the column)."""
    if VERSION not in table:
        return "?"
    return ", ".join(sorted({str(v) for v in table[VERSION].dropna()})) or "?"


ROW_COLUMNS = [
    "config",
    "metric",
    "kind",
    # what baseline and new are: "mean", "median" (a heavy-tailed column), or "probability" (the
    # share of seeds that trained, a status row)
    "statistic",
    "baseline",
    "baseline_low",
    "baseline_high",
    "n_baseline",
    "new",
    "new_low",
    "new_high",
    "n_new",
    "change",
    "direction",
    "allowed",
    "spread",
    "pairs",  # the seeds the tests paired (0: tested as independent samples)
    "p_worse",
    "p_better",
    "p_same",
    "p",
    "verdict",
    "note",
]


def _row(
    label: str, metric: str, kind: Kind, *, verdict: str, note: str = "", **numbers: Any
) -> dict:
    row = dict.fromkeys(ROW_COLUMNS, math.nan)
    row |= {"config": label, "metric": metric, "kind": kind, "verdict": verdict, "note": note}
    row["statistic"] = "mean"
    return row | numbers


def _compared(
    label: str,
    column: Column,
    base_values: pd.Series,
    new_values: pd.Series,
    same_start: set[int],
    speed_tolerance: float,
    confidence: float,
) -> dict:
    """The row of one column of one configuration, its verdict ``tested`` until ``settle``."""
    metric, kind = column.name, "speed" if column.speed else "quality"
    base_mean = float(base_values.mean())
    if not len(new_values):
        numbers = {"baseline": base_mean, "n_baseline": len(base_values)}
        return _row(label, metric, kind, verdict="regressed", note="not measured", **numbers)
    floor = speed_tolerance * abs(base_mean) if column.speed else column.floor or 0.0
    tolerance = speed_tolerance if column.speed else None
    tested = two_sample(base_values, new_values, column, floor, confidence, same_start, tolerance)
    return _row(
        label,
        metric,
        kind,
        verdict="tested",
        statistic=tested.new.statistic,
        baseline=tested.baseline.centre,
        baseline_low=tested.baseline.low,
        baseline_high=tested.baseline.high,
        new=tested.new.centre,
        new_low=tested.new.low,
        new_high=tested.new.high,
        n_new=tested.new.n,
        change=tested.gain,
        direction=column.direction,
        allowed=floor,
        spread=tested.spread,
        pairs=tested.pairs,
        p_worse=tested.p_worse,
        p_better=tested.p_better,
        p_same=tested.p_same,
        n_baseline=len(base_values),
    )


def _reproduced(outcome: Outcome, verdict: Verdict, confidence: float) -> dict:
    """A row of ``outcome``: the published value as the baseline, ours as the new value; its
    verdict the test of ours against the tolerance (``aebench.results.references.verdicts``)."""
    reference = outcome.reference
    notes = [reference.label()]
    if not math.isfinite(outcome.mean):
        notes.append("not measured")
    elif outcome.lost:
        notes.append(f"a value on {outcome.seeds_text} seeds")
    if outcome.shortened:
        notes.append(f"shortened: {outcome.epochs:,} of {reference.epochs:,} epochs")
    ours = outcome.interval(confidence)  # shown in the new column, with its seeds or why none
    label = outcome.configuration or f"no ok trial matches {reference.where}"
    return _row(
        label,
        reference.metric,
        "reproduction",
        verdict=verdict,
        note="; ".join(notes),
        baseline=reference.value,
        new=outcome.centre,
        statistic=ours.statistic,
        new_low=ours.low,
        new_high=ours.high,
        n_new=outcome.seeds,
        change=outcome.difference,
        allowed=reference.tolerance,
    )


def parse_kinds(text: str) -> tuple[Kind, ...]:
    """``--fail-on``: some of ``quality``, ``speed``, ``reproduction``, ``inconclusive`` joined by
    commas, ``both`` (quality and speed), ``all`` (the three) or ``none``. ``inconclusive`` fails
    the inconclusive verdicts of the kinds named with it (alone: of quality and speed)."""
    words = [part.strip() for part in text.split(",") if part.strip()]
    named = {"none": (), "both": KINDS, "all": EVERY_KIND}
    if len(words) == 1 and words[0] in named:
        return named[words[0]]
    bad = [w for w in words if w not in (*EVERY_KIND, "inconclusive")]
    if bad or not words:
        raise CompareError(
            f"--fail-on: {', '.join(bad) or 'nothing'} is not one of quality, speed,"
            " reproduction, inconclusive, both, all, none"
        )
    if words == ["inconclusive"]:
        return (*KINDS, "inconclusive")
    return tuple(words)  # type: ignore[return-value]
