"""The report written as Markdown: its tables as pipe tables, its figures as links to the PNGs in
the results folder."""

from __future__ import annotations

from pathlib import Path

from aebench.views.blocks import Block, Heading, Images, Paragraph, Table, row_notes, short_note


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _label(table: Table, row: int, text: str) -> str:
    for mark, note in row_notes(table, row):
        text += f" {mark} {short_note(note)}" if table.show_notes else f" {mark}"
    return text


def _legend(table: Table) -> list[str]:
    """What the columns are, as the HTML page's tooltips say it (a Markdown table has none):
    under a table that shows its notes, the headline table."""
    if not (table.show_notes and table.tips):
        return []
    named = [f"{h}: {t}" for h, t in zip(table.header, table.tips, strict=True) if t]
    return ["Columns: " + "; ".join(_cell(n) for n in named) + ".", ""]


def _table(table: Table) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in table.header) + " |"]
    lines.append("|" + "---|" * len(table.header))
    for i, row in enumerate(table.rows):
        cells = [_label(table, i, row[0]), *row[1:]] if table.numbers else row
        cells = [
            f"**{_cell(c)}**" if (i, j) in table.bold else _cell(c) for j, c in enumerate(cells)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, "", *_legend(table)]


def to_markdown(blocks: list[Block], folder: Path) -> str:
    """The report as Markdown; figures are linked by their path relative to ``folder``."""

    def link(path: Path) -> str:
        return path.relative_to(folder).as_posix()

    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            lines += _table(block)
        elif isinstance(block, Images):
            for caption, path in block.items:
                lines += [f"![{caption}]({link(path)})", ""]
        else:  # the folded figures as links: a Markdown page has no <details> everywhere
            lines.append(f"{block.summary}:")
            for title, items in block.items:
                figures = ", ".join(f"[{caption}]({link(path)})" for caption, path in items)
                lines.append(f"- {title}: {figures or 'no figures were saved'}")
            lines.append("")
    return "\n".join(lines)
