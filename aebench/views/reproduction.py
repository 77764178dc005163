"""How a results folder stands against the published values its suite names (``[[references]]``)."""

from __future__ import annotations

from pathlib import Path

from aebench.plugins.listing import vocabulary_of
from aebench.results.references import outcomes, read_references
from aebench.results.table import read_results


def summary(folder: Path) -> str:
    """One line on how the results in ``folder`` stand against the references saved with them
    (``reproduction: 1 of 6 published values inside their tolerance, 6 of the runs shortened``);
    "" when there are none."""
    references = read_references(folder)
    if not references:
        return ""
    vocabulary = vocabulary_of(folder)
    results = outcomes(read_results(folder), references)
    inside = sum(o.inside(vocabulary.direction(o.reference.metric)) for o in results)
    shortened = sum(o.shortened for o in results)
    line = f"reproduction: {inside} of {len(results)} published values inside their tolerance"
    return line + (f", {shortened} of the runs shortened" if shortened else "")
