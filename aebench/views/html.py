"""The report written as one HTML page that stands alone: its figures embedded as data URLs, its
tables in scroll boxes no wider than the page, each warning behind a ⚠ (an estimate's note
behind a ⓘ) with its text on hover."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from aebench.views.blocks import Block, Heading, Images, Paragraph, Table, row_notes, short_note

STYLE = """
body { font-family: system-ui, sans-serif; color: #222; max-width: 1320px; margin: 1.5em auto;
       padding: 0 1em; box-sizing: border-box; }
p { max-width: 60em; }
.scroll { overflow-x: auto; max-width: 100%; margin: 0.6em 0 1.2em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f4f4f4; vertical-align: bottom; font-weight: 600; }
table.numbers td { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
table.numbers td:first-child { white-space: normal; min-width: 12em; max-width: 26em; }
td.best { font-weight: bold; background: #e8f4e8; }
table.numbers td.wrap { white-space: normal; min-width: 9em; text-align: left; }
.warn { color: #b36b00; cursor: help; }
.note { font-size: 0.85em; color: #8a5300; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; max-width: 100%; }
figcaption { font-size: 0.8em; color: #555; }
img { max-width: 100%; height: auto; }
details { margin: 0.3em 0 1.5em; }
summary { cursor: pointer; color: #0550ae; }
"""


def _embedded(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _header(text: str) -> str:
    # Long metric names may break after an underscore: a header no wider than its numbers.
    return escape(text).replace("_", "_<wbr>")


def _label(table: Table, row: int, text: str) -> str:
    out = escape(text)
    notes = row_notes(table, row)
    for mark, note in notes:
        out += f' <span class="warn" title="{escape(note)}">{mark}</span>'
    for _, note in notes if table.show_notes else []:
        out += f'<div class="note" title="{escape(note)}">{escape(short_note(note))}</div>'
    return out


def _table(table: Table) -> list[str]:
    kind = "numbers" if table.numbers else "text"
    parts = [f'<div class="scroll"><table class="{kind}"><thead><tr>']
    tips = table.tips or [""] * len(table.header)
    for text, tip in zip(table.header, tips, strict=True):
        title = f' title="{escape(tip)}"' if tip else ""
        parts.append(f"<th{title}>{_header(text)}</th>")
    parts.append("</tr></thead><tbody>")
    for i, row in enumerate(table.rows):
        cells = [_label(table, i, row[0]) if table.numbers else escape(row[0])]
        cells += [escape(c) for c in row[1:]]
        kinds = [
            " ".join(
                name
                for name, on in (("best", (i, j) in table.bold), ("wrap", j in table.wrap))
                if on
            )
            for j in range(len(cells))
        ]
        parts.append(
            "<tr>"
            + "".join(
                f'<td class="{k}">{c}</td>' if k else f"<td>{c}</td>"
                for k, c in zip(kinds, cells, strict=True)
            )
            + "</tr>"
        )
    parts.append("</tbody></table></div>")
    return parts


def _figures(items: list[tuple[str, Path]]) -> list[str]:
    return [
        f'<figure><img src="{_embedded(path)}" alt="{escape(caption)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
        for caption, path in items
    ]


def to_html(blocks: list[Block], title: str) -> str:
    """The report as one HTML page titled ``title``, its figures embedded."""
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<style>{STYLE}</style></head><body>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{escape(block.text)}</p>")
        elif isinstance(block, Table):
            parts += _table(block)
        elif isinstance(block, Images):
            parts += _figures(block.items)
        else:
            parts.append(f"<details><summary>{escape(block.summary)}</summary>")
            for heading, items in block.items:
                parts.append(f"<p>{escape(heading)}</p>")
                parts += _figures(items) or ["<p>No figures were saved.</p>"]
            parts.append("</details>")
    parts.append("</body></html>")
    return "\n".join(parts)
