"""``aebench compare NEW BASELINE``: what got worse between two results tables.

Configurations are matched on every parameter column (dataset, model, regularizer and their
``dataset.*``, ``model.*``, ``regularizer.*``, ``train.*``, ``eval.*`` columns) but not the seed:
each side's seeds are averaged. Only rows with status ``ok`` count.

A metric regressed when the NEW mean is worse than the BASELINE mean by more than it is allowed
to move by chance:

- quality columns (those that declare a ``floor``, ``aebench.Column``):
  ``max(floor, k * baseline std over seeds)``, ``k`` = ``quality_k`` (default 2: about a 5% false
  alarm rate per column for normal seed noise when the baseline has several seeds);
- speed columns (those that declare ``speed``, such as the training throughput):
  ``max(speed_tolerance * baseline mean, k * baseline std)``, ``speed_tolerance`` default 0.2
  (timings on shared machines move by 10% easily).

Which columns are compared, and which way each improves, is read from the tables' declarations
(``columns.json`` beside each table; the new table's win), never from a list kept here.

A configuration whose seeds disagree too much to compare on a quality column (a standard deviation
over seeds, on either side, above ``unstable_spread`` times the column's floor; default 10) is
reported ``unstable`` for it, and fails like a quality regression: a seed that collapsed would
otherwise widen the allowance until nothing could fail.

A change as large in the better direction is reported as improved. A configuration that has ok rows
in the baseline and none in NEW (all failed or diverged) is a quality regression. A configuration
whose likelihood protocol (the ``likelihood`` and ``binarize`` columns) differs between the tables
is not compared at all: it is reported ``incomparable``, which fails like a quality regression.

The NEW table's folder may carry published values (a suite's ``[[references]]``,
``aebench.references``): each is checked against the configuration of NEW it names, a row of kind
``reproduction``, ``inside`` or ``outside`` its tolerance (``outside`` also when not measured). It
fails only where asked (``--fail-on reproduction``): a shortened run is outside by design.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from aebench.contract.columns import IDENTITY, Column, Vocabulary, is_config_column
from aebench.plugins.listing import vocabulary_of
from aebench.results.files import FolderError
from aebench.results.references import Outcome, Reference, outcomes, read_references
from aebench.results.rows import canonical, label
from aebench.results.table import PARQUET, read_results

Kind = Literal["quality", "speed", "reproduction"]
KINDS: tuple[Kind, ...] = ("quality", "speed")  # what regresses between tables ("both")
EVERY_KIND: tuple[Kind, ...] = (*KINDS, "reproduction")  # and published values matched ("all")
DEFAULT_QUALITY_K = 2.0
DEFAULT_SPEED_TOLERANCE = 0.2
DEFAULT_UNSTABLE_SPREAD = 10.0  # in floors: a seed std above it is a configuration out of control
FAILING = ("regressed", "incomparable", "unstable", "outside")
PROTOCOL = ("likelihood", "binarize")  # the row's likelihood protocol: compared only if equal


class CompareError(ValueError):
    """Bad input (a missing or unreadable table); the message is the one line to show."""


@dataclass
class Comparison:
    """One row per (configuration, metric) compared, and what could not be compared."""

    rows: (
        pd.DataFrame
    )  # config, metric, kind, baseline, baseline_std, new, change, allowed, verdict
    only_in_baseline: list[str] = field(default_factory=list)  # configurations NEW lacks
    only_in_new: list[str] = field(default_factory=list)
    unmatched_columns: list[str] = field(default_factory=list)  # parameters in one table only

    def regressions(self, kinds: tuple[Kind, ...] = KINDS) -> pd.DataFrame:
        """Rows that fail a check: regressed, not comparable at all (another protocol), or with
        seeds that disagree beyond the limit (unstable)."""
        rows = self.rows
        failed = rows["verdict"].isin(FAILING)
        return rows[failed & rows["kind"].isin(kinds)]

    def changed(self) -> pd.DataFrame:
        return self.rows[self.rows["verdict"] != "same"]


def table_references(path: str | Path) -> list[Reference]:
    """The published values saved with a table (its folder's ``suite.json``), if any."""
    path = Path(path)
    return read_references(path if path.is_dir() else path.parent)


def table_vocabulary(path: str | Path) -> Vocabulary:
    """The column declarations saved beside a table (``load_table``'s path)."""
    path = Path(path)
    return vocabulary_of(path if path.is_dir() else path.parent)


def compared_columns(vocabulary: Vocabulary) -> list[Column]:
    """The columns ``compare`` checks: those with a quality floor or marked as speed."""
    return [c for c in vocabulary.columns.values() if c.floor is not None or c.speed]


def load_table(path: str | Path) -> pd.DataFrame:
    """A results table from a results.parquet (or .csv) file or the folder holding it."""
    path = Path(path)
    if path.is_dir():  # a results folder: its table with the rows recorded since (a run going on)
        try:
            table = read_results(path)
        except FolderError as exc:
            raise CompareError(str(exc)) from None
        if table.empty:
            raise CompareError(f"{path / PARQUET}: no such results table")
        path = path / PARQUET
    elif not path.exists():
        raise CompareError(f"{path}: no such results table")
    else:
        try:
            table = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
        except Exception as exc:  # pyarrow and pandas raise many kinds for a damaged file
            lines = str(exc).strip().splitlines()
            why = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
            raise CompareError(f"{path}: cannot read the results table: {why}") from None
    missing = [c for c in ("status", *IDENTITY) if c not in table.columns]
    if missing:
        raise CompareError(f"{path}: not an aebench results table (no {', '.join(missing)} column)")
    return table


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


def _label(key: str, varying: list[str]) -> str:
    """``digits/ae/none model.latent_dim=8``: the names, and the parameters that tell apart."""
    return label(json.loads(key), varying)


def compare(
    new: pd.DataFrame,
    baseline: pd.DataFrame,
    *,
    quality_k: float = DEFAULT_QUALITY_K,
    speed_tolerance: float = DEFAULT_SPEED_TOLERANCE,
    unstable_spread: float = DEFAULT_UNSTABLE_SPREAD,
    vocabulary: Vocabulary | None = None,
    references: list[Reference] | None = None,
) -> Comparison:
    """Compare matching configurations' seed means; see the module's docstring for the rule.

    ``vocabulary`` declares the columns (default: the core's own alone); ``references`` are
    published values NEW is checked against (rows of kind ``reproduction``)."""
    vocabulary = vocabulary or Vocabulary()
    new_columns, base_columns = config_columns(new), config_columns(baseline)
    columns = [c for c in base_columns if c in new_columns]
    unmatched = sorted(set(new_columns) ^ set(base_columns))
    new = new.assign(config=_config_keys(new, columns))
    baseline = baseline.assign(config=_config_keys(baseline, columns))
    new_ok, base_ok = new[new["status"] == "ok"], baseline[baseline["status"] == "ok"]

    keys = sorted(set(baseline["config"]) | set(new["config"]))
    varying = [
        c
        for c in columns
        if c not in IDENTITY and len({json.loads(k)[c] for k in keys} - {None}) > 1
    ]
    metrics = [
        c
        for c in compared_columns(vocabulary)
        if c.name in new.columns and c.name in baseline.columns
    ]
    new_groups = dict(tuple(new_ok.groupby("config")))
    rows = []
    for key, base_rows in base_ok.groupby("config"):
        label = _label(key, varying)
        if key not in set(new["config"]):
            continue  # reported as only in the baseline
        if key not in new_groups:
            statuses = ", ".join(sorted(set(new.loc[new["config"] == key, "status"])))
            rows.append(_row(label, "status", "quality", verdict="regressed", note=statuses))
            continue
        base_protocol, new_protocol = _protocol(base_rows), _protocol(new_groups[key])
        if base_protocol != new_protocol:
            note = f"{base_protocol} -> {new_protocol}"
            rows.append(_row(label, "protocol", "quality", verdict="incomparable", note=note))
            continue
        for column in metrics:
            base_values = base_rows[column.name].astype(float).dropna()
            if base_values.empty:
                continue  # not measured for this configuration (a deterministic model's ELBO)
            new_values = new_groups[key][column.name].astype(float).dropna()
            limits = Limits(quality_k, speed_tolerance, unstable_spread)
            rows.append(_compared(label, column, base_values, new_values, limits))
    for outcome in outcomes(new, references or []):
        rows.append(_reproduced(outcome, vocabulary))
    base_keys, new_keys = set(baseline["config"]), set(new["config"])
    return Comparison(
        rows=pd.DataFrame(rows, columns=ROW_COLUMNS),
        only_in_baseline=[_label(k, varying) for k in sorted(base_keys - new_keys)],
        only_in_new=[_label(k, varying) for k in sorted(new_keys - base_keys)],
        unmatched_columns=unmatched,
    )


ROW_COLUMNS = [
    "config",
    "metric",
    "kind",
    "baseline",
    "baseline_std",
    "n_baseline",
    "new",
    "n_new",
    "change",
    "allowed",
    "verdict",
    "note",
]


def _row(label: str, metric: str, kind: Kind, *, verdict: str, note: str = "", **numbers) -> dict:
    nan = float("nan")
    row = dict.fromkeys(ROW_COLUMNS, nan)
    row |= {"config": label, "metric": metric, "kind": kind, "verdict": verdict, "note": note}
    return row | numbers


@dataclass(frozen=True)
class Limits:
    """How far a seed mean may move by chance, and how far seeds may disagree."""

    quality_k: float = DEFAULT_QUALITY_K
    speed_tolerance: float = DEFAULT_SPEED_TOLERANCE
    unstable_spread: float = DEFAULT_UNSTABLE_SPREAD


def _std(values: pd.Series) -> float:
    return float(values.std()) if len(values) > 1 else 0.0  # over seeds, ddof 1


def _compared(
    label: str, column: Column, base_values: pd.Series, new_values: pd.Series, limits: Limits
) -> dict:
    metric, kind = column.name, "speed" if column.speed else "quality"
    base_mean, base_std = float(base_values.mean()), _std(base_values)
    numbers = {"baseline": base_mean, "baseline_std": base_std, "n_baseline": len(base_values)}
    if new_values.empty:
        return _row(label, metric, kind, verdict="regressed", note="not measured", **numbers)
    new_mean, new_std = float(new_values.mean()), _std(new_values)
    change = new_mean - base_mean
    numbers |= {"new": new_mean, "n_new": len(new_values), "change": change}
    if column.floor is not None:  # seeds that disagree this much make any allowance meaningless
        limit = limits.unstable_spread * column.floor
        if max(base_std, new_std) > limit:
            note = f"seed std {base_std:.3g} -> {new_std:.3g}, limit {limit:.3g}"
            return _row(label, metric, kind, verdict="unstable", note=note, **numbers)
    if column.speed:
        floor = limits.speed_tolerance * abs(base_mean)
    else:
        floor = column.floor or 0.0
    allowed = max(floor, limits.quality_k * base_std)
    gain = change * column.direction  # > 0: better
    verdict = "regressed" if gain < -allowed else "improved" if gain > allowed else "same"
    return _row(label, metric, kind, verdict=verdict, allowed=allowed, **numbers)


def _reproduced(outcome: Outcome, vocabulary: Vocabulary) -> dict:
    """A row of ``outcome``: the published value as the baseline, ours as the new value."""
    reference = outcome.reference
    notes = [reference.label()]
    if not math.isfinite(outcome.mean):
        notes.append("not measured")
    if outcome.shortened:
        notes.append(f"shortened: {outcome.epochs:,} of {reference.epochs:,} epochs")
    inside = outcome.inside(vocabulary.direction(reference.metric))
    label = outcome.configuration or f"no ok trial matches {reference.where}"
    return _row(
        label,
        reference.metric,
        "reproduction",
        verdict="inside" if inside else "outside",
        note="; ".join(notes),
        baseline=reference.value,
        new=outcome.mean,
        n_new=outcome.seeds,
        change=outcome.difference,
        allowed=reference.tolerance,
    )


def format_comparison(comparison: Comparison, *, show_all: bool = False) -> str:
    """A plain-text table of what changed (or of everything compared), and what was not."""
    shown = comparison.rows if show_all else comparison.changed()
    lines = []
    if not shown.empty:
        lines.append(_table(shown).to_string(index=False))
    published = comparison.rows[comparison.rows["kind"] == "reproduction"]
    rows = comparison.rows[comparison.rows["kind"] != "reproduction"]
    regressed = rows[rows["verdict"] == "regressed"]
    by_kind = ", ".join(f"{(regressed['kind'] == k).sum()} {k}" for k in KINDS)
    incomparable = (rows["verdict"] == "incomparable").sum()
    unstable = (rows["verdict"] == "unstable").sum()
    lines.append(
        f"{len(rows)} comparisons over {rows['config'].nunique()} configurations:"
        f" {len(regressed)} regressed ({by_kind}), {(rows['verdict'] == 'improved').sum()} improved"
        + (f", {incomparable} incomparable (another likelihood protocol)" if incomparable else "")
        + (f", {unstable} unstable (seeds disagree beyond the limit)" if unstable else "")
    )
    if not published.empty:
        outside = (published["verdict"] == "outside").sum()
        lines.append(
            f"{len(published)} published values (the baseline column) checked against the new"
            f" table: {len(published) - outside} inside their tolerance, {outside} outside"
        )
    for title, labels in (
        ("only in the baseline", comparison.only_in_baseline),
        ("only in the new table", comparison.only_in_new),
        ("parameters in one table only (not matched on)", comparison.unmatched_columns),
    ):
        if labels:
            lines.append(f"{title}: {', '.join(labels)}")
    return "\n".join(lines)


def _table(rows: pd.DataFrame) -> pd.DataFrame:
    verdicts = [
        v + (f" ({n})" if n else "") for v, n in zip(rows["verdict"], rows["note"], strict=True)
    ]
    return pd.DataFrame(
        {
            "verdict": verdicts,
            "configuration": rows["config"],
            "metric": rows["metric"],
            "baseline": rows["baseline"].map(_number),
            "new": rows["new"].map(_number),
            "change": rows["change"].map(_signed),
            "allowed": rows["allowed"].map(_number),
        }
    )


def _number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.4g}"


def _signed(value: float) -> str:
    return "" if math.isnan(value) else f"{value:+.3g}"


def parse_kinds(text: str) -> tuple[Kind, ...]:
    """``--fail-on``: some of ``quality``, ``speed``, ``reproduction`` joined by commas, ``both``
    (quality and speed), ``all`` (the three) or ``none``."""
    if text.strip() == "none":
        return ()
    if text.strip() == "both":
        return KINDS
    if text.strip() == "all":
        return EVERY_KIND
    kinds = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [k for k in kinds if k not in EVERY_KIND]
    if bad or not kinds:
        raise CompareError(
            f"--fail-on: {', '.join(bad) or 'nothing'} is not one of quality, speed,"
            " reproduction, both, all, none"
        )
    return kinds  # type: ignore[return-value]
