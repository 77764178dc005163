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


@dataclass
class Images:
    items: list[tuple[str, Path]]  # (caption, png)


@dataclass
class Details:
    """Folded away: in HTML a ``<details>`` one click opens; in Markdown, links."""

    summary: str
    items: list[tuple[str, list[tuple[str, Path]]]]  # (title, its (caption, png) figures)


Block = Heading | Paragraph | Table | Images | Details


def short_note(note: str) -> str:
    """A row's warnings as shown beside it: cut to ``NOTE_CHARS``."""
    return note if len(note) <= NOTE_CHARS else note[: NOTE_CHARS - 1].rstrip() + "…"
