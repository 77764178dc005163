"""The report of a results folder, written as ``report.md`` and ``report.html`` beside its table.

Per dataset: a headline table (each group's headline column, each mean with its interval, ranked
best first, "best" only where tests over seeds say so), a detail table per group of metrics, and
each configuration's figures for its median seed (the other seeds one click away); with two
datasets or more, the ranks across them. Built from ``results.parquet`` (the source of truth),
the column declarations saved beside it (``columns.json``) and the per-trial ``figures.npz``
files, so it can be rebuilt at any time without a model. The HTML embeds its figures and stands
alone; the Markdown links the PNGs beside it.

Where the parts are: ``ranking`` (leaderboards, best values, the ranked order; its tests in
``ranking_stats``), ``across`` (ranks across datasets), ``layout`` and ``figure_blocks`` (the
document as blocks), ``reproduction`` (published values), ``markdown`` and ``html`` (the blocks
written out).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable
from pathlib import Path

from aebench.plugins.listing import vocabulary_of
from aebench.results.confined import check_links
from aebench.results.files import cannot_write, write_atomically
from aebench.results.table import PARQUET, read_results
from aebench.run.observing import SuiteObserver, SuiteRun
from aebench.views.background import drawings_done
from aebench.views.html import to_html
from aebench.views.layout import report_blocks
from aebench.views.markdown import to_markdown
from aebench.views.ranking import SharedLeaderboards

REPORT_MD = "report.md"
REPORT_HTML = "report.html"


def build_report(folder: Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into the results folder; returns their paths.

    Each is written to a temporary file and renamed: a full disk leaves the previous report whole.
    A table that cannot be read, a file that cannot be written, or a link where figures go
    (``trials/``, ``figures/``: written only inside the folder) is a ``FolderError`` (one line).
    """
    folder = Path(folder)
    drawings_done()  # the trials' PNGs a worker is still drawing: else drawn here a second time
    check_links(folder)  # figures go in figures/ and trial folders: none may lead elsewhere
    table = read_results(folder)  # with the rows of a run still going, or killed
    if table.empty and not (folder / PARQUET).is_file():
        raise FileNotFoundError(f"{folder}: no {PARQUET} here; run a suite into it first")
    try:
        blocks = report_blocks(folder, table, vocabulary_of(folder))  # draws the figures
    except OSError as exc:
        raise cannot_write(folder, exc) from None
    drawings_done()  # the report's own figures, drawn beside its tables when a run's worker is up
    md, page = folder / REPORT_MD, folder / REPORT_HTML
    texts = {
        md: to_markdown(blocks, folder),
        page: to_html(blocks, f"aebench report: {folder.resolve().name}"),
    }
    for path, text in texts.items():
        try:
            write_atomically(path, lambda p, text=text: p.write_text(text, encoding="utf-8"))
        except OSError as exc:
            raise cannot_write(path, exc) from None
    return md, page


def report_is_current(folder: Path) -> bool:
    """Both report files are there and newer than the results table: a run that added no row
    (every trial already finished) would rebuild the same report, figures and all."""
    folder = Path(folder)
    try:
        table = (folder / PARQUET).stat().st_mtime_ns
        return all((folder / name).stat().st_mtime_ns >= table for name in (REPORT_MD, REPORT_HTML))
    except OSError:  # no table, or a report file missing
        return False


class ReportBuilder(SuiteObserver):
    """Builds the report once, when a suite run ends (before the MLflow observer logs it); a run
    that added no row leaves a current report as it is (``aebench report`` rebuilds it). It keeps
    the report's leaderboards for what ranks the same results after it: ``sharing_leaderboards``."""

    def __init__(self) -> None:
        self.paths: tuple[Path, Path] | None = None
        self.leaderboards = SharedLeaderboards()

    def suite_finished(self, run: SuiteRun) -> None:
        if run.interrupted and not (run.output / PARQUET).is_file():
            return  # stopped before any trial finished: nothing to report, nothing failed
        if not run.rows and report_is_current(run.output):
            self.paths = (run.output / REPORT_MD, run.output / REPORT_HTML)
            return
        try:
            with self.leaderboards.shared():
                self.paths = build_report(run.output)
        except Exception as exc:  # the results are written; a report can be rebuilt later
            print(f"aebench: the report of {run.output} failed: {exc}", file=sys.stderr)


def sharing_leaderboards(observers: Iterable[object]) -> contextlib.AbstractContextManager[object]:
    """A scope in which ranking the results a run's report ranked (the best configurations its
    summary prints) reuses the report's leaderboards instead of testing every pair again."""
    for observer in observers:
        if isinstance(observer, ReportBuilder):
            return observer.leaderboards.shared()
    return contextlib.nullcontext()
