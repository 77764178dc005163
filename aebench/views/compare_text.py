"""What ``aebench compare`` prints: a table of the verdicts, each side's mean with its interval,
a count of the verdicts, and what could not be compared (configurations on one side only,
parameters in one table only), with NEW's training warnings beside their configuration."""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd

from aebench.results.stats import MIN_SEEDS, Interval, all_equal
from aebench.views.compare import KINDS, Comparison

VERDICTS = ("regressed", "improved", "unchanged", "inconclusive")


def format_comparison(comparison: Comparison, *, show_all: bool = False) -> str:
    """A plain-text table of what changed or could not be told (or of everything compared), a
    count of the verdicts and what was not compared."""
    shown = comparison.rows if show_all else comparison.changed()
    lines = []
    if not shown.empty:
        lines.append(_aligned(_table(shown, comparison.confidence)))
    lines.append(_summary(comparison))
    published = comparison.rows[comparison.rows["kind"] == "reproduction"]
    if not published.empty:
        verdicts = published["verdict"]
        lines.append(
            f"{len(published)} published values (the baseline column) checked against the new"
            f" table: {(verdicts == 'inside').sum()} inside their tolerance,"
            f" {(verdicts == 'outside').sum()} outside, {(verdicts == 'inconclusive').sum()}"
            " inconclusive"
        )
    if comparison.without_starts:
        both = len(comparison.without_starts) > 1
        tables = " and the ".join(comparison.without_starts)
        lines.append(
            f"the {tables} table{'s do' if both else ' does'} not say what"
            f" {'their' if both else 'its'} trials started from (no start_digest column: written"
            f" by an older aebench), so no seed was paired; run {'them' if both else 'it'} again"
            " to pair the seeds that started alike"
        )
    new_version, base_version = comparison.versions
    if new_version != base_version:
        lines.append(
            f"tables of other aebench versions: new {new_version}, baseline {base_version}"
        )
    for config, warnings in comparison.warnings.items():
        lines.append(f"⚠ {config} trained with warnings: {warnings}")
    for title, labels in (
        ("only in the baseline", comparison.only_in_baseline),
        ("only in the new table", comparison.only_in_new),
        ("parameters in one table only (not matched on)", comparison.unmatched_columns),
        ("columns the baseline has none of (not compared)", comparison.new_columns),
    ):
        if labels:
            lines.append(f"{title}: {', '.join(labels)}")
    return "\n".join(lines)


def _summary(comparison: Comparison) -> str:
    """``12 comparisons over 6 configurations: 0 regressed (0 quality, 0 speed), …``."""
    rows = comparison.rows[comparison.rows["kind"] != "reproduction"]
    verdicts = rows["verdict"]
    regressed = rows[verdicts == "regressed"]
    by_kind = ", ".join(f"{(regressed['kind'] == k).sum()} {k}" for k in KINDS)
    counts = [f"{(verdicts == v).sum()} {v}" for v in VERDICTS[1:]]
    incomparable = (verdicts == "incomparable").sum()
    tested = rows["p_same"].notna()
    paired = (rows.loc[tested, "pairs"] > 0).sum()
    return (
        f"{len(rows)} comparisons over {rows['config'].nunique()} configurations:"
        f" {len(regressed)} regressed ({by_kind}), {', '.join(counts)}"
        + (
            f", {incomparable} incomparable (another likelihood protocol or test split)"
            if incomparable
            else ""
        )
        + f" (at {comparison.confidence:.0%} confidence; Benjamini–Hochberg over"
        f" {2 * tested.sum()} tests; {paired} of {tested.sum()} paired by seed)"
    )


def _table(rows: pd.DataFrame, confidence: float) -> pd.DataFrame:
    verdicts = [
        v + (f" ({n})" if n else "") for v, n in zip(rows["verdict"], rows["note"], strict=True)
    ]
    width = max(len(v) for v in verdicts)
    verdicts = [v.ljust(width) for v in verdicts]  # read left to right, from the line's start
    return pd.DataFrame(
        {
            "verdict": verdicts,
            "configuration": rows["config"],
            "metric": rows["metric"],
            "baseline": _sides(rows, "baseline", confidence),
            "new": _sides(rows, "new", confidence),
            "change": rows["change"].map(_signed),
            "floor": rows["allowed"].map(_number),
            "p": rows["p"].map(lambda p: "" if math.isnan(p) else f"{p:.2g}"),
        }
    )


def _aligned(table: pd.DataFrame) -> str:
    """The table as text, its first column (the verdicts, padded alike) and header flush left."""
    text = table.to_string(index=False)
    header, _, body = text.partition("\n")
    width = max(len(table.iat[0, 0]), len(table.columns[0]))
    return header[:width].strip().ljust(width) + header[width:] + "\n" + body


def _sides(rows: pd.DataFrame, side: str, confidence: float) -> list[str]:
    """Each row's mean (a heavy-tailed column's median) of ``side`` with its interval and what it
    rests on."""
    cells = []
    for centre, low, high, n, statistic in zip(
        rows[side],
        rows[f"{side}_low"],
        rows[f"{side}_high"],
        rows[f"n_{side}"],
        rows["statistic"],
        strict=True,
    ):
        if math.isnan(centre) or math.isnan(n):  # a published value, or nothing measured
            cells.append(_number(centre))
            continue
        shown = Interval(centre, low, high, int(n), confidence, statistic=statistic)
        if statistic == "mean" and n >= MIN_SEEDS and not shown.exists:  # its only reason
            shown = replace(shown, missing=all_equal(int(n)))
        bounds = f" [{low:.4g}, {high:.4g}]" if shown.exists else ""
        named = "median " if statistic == "median" else ""
        cells.append(f"{named}{centre:.4g}{bounds} ({shown.note()})")
    return cells


def _number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.4g}"


def _signed(value: float) -> str:
    return "" if math.isnan(value) else f"{value:+.3g}"
