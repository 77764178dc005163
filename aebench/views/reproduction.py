"""How a results folder stands against the published values its suite names (``[[references]]``):
one line for the terminal, and the report's "Reproduction" section (ours beside each published
value, and the learning curves of the runs shortened)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from aebench.contract.columns import Vocabulary
from aebench.plugins.listing import vocabulary_of
from aebench.results.references import (
    Outcome,
    ReferencesError,
    Verdict,
    curve_at,
    outcomes,
    read_references,
    stage_ends,
    verdicts,
)
from aebench.results.table import read_results
from aebench.results.trials import read_curves, trial_folder
from aebench.views.blocks import Block, Heading, Paragraph, Table
from aebench.views.cells import arrow, format_number, interval_cell


def summary(folder: Path) -> str:
    """One line on how the results in ``folder`` stand against the references saved with them
    (``reproduction: of 6 published values, 1 inside its tolerance, 2 outside, 3 inconclusive
    (95% over seeds, outside Holm-corrected); 6 of the runs shortened``); "" when there are
    none."""
    try:
        references = read_references(folder)
    except ReferencesError as exc:
        return f"reproduction: not checked: {exc}"
    if not references:
        return ""
    vocabulary = vocabulary_of(folder)
    results = outcomes(read_results(folder), references, vocabulary)
    said = _verdicts(results, vocabulary)
    counts = ", ".join(
        f"{said.count(v)} {v}" + (" its tolerance" if v == "inside" else "")
        for v in ("inside", "outside", "inconclusive")
    )
    line = f"reproduction: of {len(results)} published values, {counts}"
    line += " (95% over seeds, outside Holm-corrected)"
    shortened = sum(o.shortened for o in results)
    return line + (f"; {shortened} of the runs shortened" if shortened else "")


def _verdicts(results: list[Outcome], vocabulary: Vocabulary) -> list[Verdict]:
    """Each outcome's verdict, in the direction its column declares, ``outside`` corrected over
    them all (``aebench.results.references.verdicts``)."""
    return verdicts(results, [vocabulary.direction(o.reference.metric) for o in results])


def verdict_text(outcome: Outcome, said: Verdict) -> str:
    """``said`` (its verdict), ``inconclusive`` with why, or ``not measured``; a shortened run
    says so."""
    notes = []
    if not math.isfinite(outcome.mean):
        text = "not measured"
    else:
        text, ours = said, outcome.interval()
        if said == "inconclusive" and not ours.exists:
            notes.append(ours.note())
    if outcome.shortened:
        notes.append(f"shortened: {outcome.epochs:,} of {outcome.reference.epochs:,} epochs")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def _tolerance(outcome: Outcome) -> str:
    tolerance = format_number(outcome.reference.tolerance)
    return f"±{tolerance}" if outcome.reference.check == "within" else f"worse by ≤ {tolerance}"


def _difference(outcome: Outcome) -> str:
    return "–" if not math.isfinite(outcome.mean) else f"{outcome.difference:+.2f}"


def _curve_blocks(folder: Path, results: list[Outcome]) -> list[Block]:
    """The learning curve of each shortened configuration (its reference's ``curve``, scaled onto
    the metric, mean over seeds) at the end of each stage, beside the published value."""
    shown = [o for o in results if o.shortened and o.reference.curve is not None and o.trials]
    if not shown:
        return []
    lines: list[tuple[Outcome, list[int], list[float]]] = []
    for outcome in shown:
        curve = outcome.reference.curve
        assert curve is not None and outcome.epochs is not None
        epochs = stage_ends(outcome.schedule, outcome.epochs)
        curves = [read_curves(trial_folder(folder, t)) for t in outcome.trials]
        values = [curve.scale * v for v in curve_at(curves, curve.name, epochs)]
        lines.append((outcome, epochs, values))
    every = sorted({e for _, epochs, _ in lines for e in epochs})
    header = ["configuration", "curve", *(f"epoch {e:,}" for e in every), "published"]
    rows = []
    for outcome, epochs, values in lines:
        at = dict(zip(epochs, values, strict=True))
        curve = outcome.reference.curve
        assert curve is not None
        scale = "" if curve.scale == 1 else f"{format_number(curve.scale)} × "
        cells = [format_number(at[e]) if e in at else "" for e in every]
        published = f"{format_number(outcome.reference.value)} (epoch {outcome.reference.epochs:,})"
        rows.append([outcome.configuration, f"{scale}{curve.name}", *cells, published])
    return [
        Heading(3, "Learning curves of the shortened runs"),
        Paragraph(
            "Each curve (as its reference names it, scaled onto the metric's unit and sign), the "
            "mean over seeds at the end of each stage of the schedule, beside the value published "
            "after the full training."
        ),
        Table(header, rows, numbers=False),
    ]


def reproduction_blocks(folder: Path, table: pd.DataFrame, vocabulary: Vocabulary) -> list[Block]:
    """The "Reproduction" section: each reference the results folder carries against the
    configuration it names: ours (the mean over seeds, its interval), published, the difference,
    and whether it is inside the tolerance; nothing when the suite named no references."""
    try:
        references = read_references(folder)
    except ReferencesError as exc:
        return [Heading(2, "Reproduction"), Paragraph(f"Not checked: {exc}")]
    if not references:
        return []
    results = outcomes(table, references, vocabulary)
    said = _verdicts(results, vocabulary)
    header = ["published in", "configuration", "metric", "seeds", "ours", "published"]
    header += ["ours − published", "tolerance", "verdict", "note"]
    rows = [
        [
            o.reference.label(),
            o.configuration or "no ok trial matches " + ", ".join(o.reference.where),
            o.reference.metric + arrow(o.reference.metric, vocabulary),
            o.seeds_text,
            interval_cell(o.interval()),
            format_number(o.reference.value),
            _difference(o),
            _tolerance(o),
            verdict_text(o, verdict),
            o.reference.note,
        ]
        for o, verdict in zip(results, said, strict=True)
    ]
    counts = f"{said.count('outside')} outside, {said.count('inconclusive')} inconclusive"
    return [
        Heading(2, "Reproduction"),
        Paragraph(
            f"{said.count('inside')} of {len(results)} published values reproduced within their "
            f"tolerance ({counts}). "
            "Ours: the mean over the ok seeds of the configuration the reference names, with its "
            "95% interval (Student's t; none with fewer than 3 seeds), or for a heavy-tailed "
            "column the median with the order statistics that hold it (none below 6 seeds) and a "
            "sign test for outside; each published value is in "
            "the column's unit and sign (the note says how the paper's number maps onto it). "
            "Inside: the interval lies wholly within the tolerance (wrong no more often than the "
            "interval misses: 5%, where the seeds' values are roughly normal; the published value "
            "is taken as exact, its own run-to-run spread not counted); outside: a t-test shows "
            "the mean beyond it, the tests of all "
            "these values corrected together (Holm), so that any of them is wrong at most 5% of "
            "the time; inconclusive: neither, or there is no interval. A shortened run trained "
            "for fewer "
            "epochs than the published model: its numbers are where it got, not a reproduction."
        ),
        Table(header, rows, numbers=False),
        *_curve_blocks(folder, results),
    ]
