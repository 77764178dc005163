"""The report as a document: a list of blocks (headings, paragraphs, tables, figures, and figures
folded away), laid out once and written out as Markdown or HTML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

NOTE_CHARS = 120  # a warning's note beside its row; the whole text is in its tooltip


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Paragraph:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)  # (row, column) cells
    tips: list[str] = field(default_factory=list)  # per header cell: what the column is
    notes: dict[int, str] = field(default_factory=dict)  # row -> its warnings: ⚠ by its label
    show_notes: bool = False  # the warnings' text in the row itself, not only in the tooltip
    numbers: bool = True  # numbers stay on one line; text tables wrap
    wrap: set[int] = field(default_factory=set)  # columns of text in a table of numbers
    estimates: dict[int, str] = field(default_factory=dict)  # row -> its estimate notes: ⓘ


@dataclass
class Images:
    items: list[tuple[str, Path]]  # (caption, png)


@dataclass
class Details:
    """Folded away: in HTML a ``<details>`` one click opens; in Markdown, links."""

    summary: str
    items: list[tuple[str, list[tuple[str, Path]]]]  # (title, its (caption, png) figures)


Block = Heading | Paragraph | Table | Images | Details


WARNED, NOTED = "⚠", "ⓘ"  # a row's training warnings; its estimates' notes


def row_notes(table: Table, row: int) -> list[tuple[str, str]]:
    """A row's marks and their whole text: ``(⚠, warnings)`` and ``(ⓘ, estimate: notes)``."""
    marks = [(WARNED, table.notes.get(row, ""))]
    marks.append((NOTED, f"estimate: {table.estimates[row]}" if row in table.estimates else ""))
    return [(mark, text) for mark, text in marks if text]


def short_note(note: str) -> str:
    """A row's warnings as shown beside it: cut to ``NOTE_CHARS``."""
    return note if len(note) <= NOTE_CHARS else note[: NOTE_CHARS - 1].rstrip() + "…"
