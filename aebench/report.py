"""The report of a results folder: leaderboards per dataset and figures, as Markdown and HTML.

Built from ``results.parquet`` (the source of truth) and the per-trial ``figures.npz`` files, so it
can be rebuilt at any time without a model. The HTML embeds its figures and stands alone; the
Markdown links the PNGs beside it.
"""

from __future__ import annotations

import base64
import html
import math
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api.types import is_numeric_dtype

from aebench.columns import (
    IDENTITY,
    Vocabulary,
    is_metric_column,
    is_param_column,
    vocabulary_of,
)
from aebench.results import PARQUET, read_results
from aebench.runner import SuiteObserver, SuiteRun

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES = "figures"
MAX_LATENT_PANELS = 24


# --- leaderboards -------------------------------------------------------------------------------


@dataclass
class Leaderboard:
    """One dataset's configurations (every param but the seed) and their metrics over seeds."""

    dataset: str
    shown: list[str]  # configuration columns that differ between configurations
    configs: pd.DataFrame  # one row per configuration: its configuration columns
    n: pd.Series  # seeds per configuration
    mean: pd.DataFrame  # configuration x metric
    std: pd.DataFrame  # sample standard deviation (ddof=1); NaN with a single seed
    best: dict[str, list[int]] = field(default_factory=dict)  # metric -> row positions

    def label(self, position: int) -> str:
        """``vae / none beta=1 latent_dim=2``: the plugins and the settings that tell it apart."""
        row = self.configs.iloc[position]
        params = []
        for column in self.shown:
            if column in IDENTITY or _missing(row[column]):
                continue
            # A model's parameter is compared among configurations of that same model only
            # (likewise a regularizer's), so one model's defaults do not clutter another's label.
            owner = column.split(".", 1)[0]
            peers = self.configs
            if owner in ("model", "regularizer"):
                peers = peers[peers[owner] == row[owner]]
            if peers[column].nunique(dropna=False) > 1:
                params.append(f"{column.split('.', 1)[1]}={_plain(row[column])}")
        return " ".join([f"{row['model']} / {row['regularizer']}", *params])


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def metric_columns(table: pd.DataFrame, vocabulary: Vocabulary) -> list[str]:
    """Numeric metric columns with at least one finite value; quality first, noisy ones (timings,
    memory) last."""
    metrics = [
        c
        for c in table.columns
        if is_metric_column(c)
        and pd.api.types.is_numeric_dtype(table[c])
        and not pd.api.types.is_bool_dtype(table[c])
        and np.isfinite(table[c].to_numpy(dtype=float)).any()
    ]
    return sorted(metrics, key=lambda m: vocabulary.get(m).noisy)  # stable: declared order kept


def leaderboard(
    table: pd.DataFrame, dataset: str, vocabulary: Vocabulary | None = None
) -> Leaderboard | None:
    """Mean and standard deviation over seeds of every ``ok`` configuration of ``dataset``; the
    best per column where the column declares a direction and is not noisy."""
    vocabulary = vocabulary or Vocabulary()
    ok = table[(table["dataset"] == dataset) & (table["status"] == "ok")]
    if ok.empty:
        return None
    keys = [c for c in ok.columns if is_param_column(c) and c != "seed"]
    keys = [c for c in keys if c in IDENTITY or ok[c].notna().any()]
    # Lists were flattened to JSON text; the rest are scalars, so every key groups as it is.
    grouped = ok.groupby(keys, dropna=False, sort=True)
    metrics = metric_columns(ok, vocabulary)
    numbers = ok[metrics].astype(float).replace([np.inf, -np.inf], np.nan)
    mean = numbers.groupby([ok[k] for k in keys], dropna=False, sort=True).mean()
    std = numbers.groupby([ok[k] for k in keys], dropna=False, sort=True).std(ddof=1)
    n = grouped.size()
    configs = n.index.to_frame(index=False)
    shown = [
        c for c in keys if c in ("model", "regularizer") or configs[c].nunique(dropna=False) > 1
    ]
    board = Leaderboard(
        dataset=dataset,
        shown=shown,
        configs=configs,
        n=n.reset_index(drop=True),
        mean=mean.reset_index(drop=True),
        std=std.reset_index(drop=True),
    )
    for metric in metrics:
        sign, noisy = vocabulary.direction(metric), vocabulary.get(metric).noisy
        values = board.mean[metric].to_numpy(dtype=float) * sign
        if sign == 0 or noisy or len(values) < 2 or not np.isfinite(values).any():
            continue
        top = np.nanmax(values)
        board.best[metric] = [i for i, v in enumerate(values) if np.isclose(v, top, rtol=1e-12)]
    return board


def format_cell(mean: float, std: float) -> str:
    """``mean ± std`` to four significant digits (the mean alone with a single seed)."""
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(std):
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {std:.2g}"


# --- the document: a list of blocks, written out as Markdown or HTML ----------------------------


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


@dataclass
class Images:
    items: list[tuple[str, Path]]  # (caption, png)


Block = Heading | Paragraph | Table | Images


def _arrow(metric: str, vocabulary: Vocabulary) -> str:
    return {1: " ↑", -1: " ↓"}.get(vocabulary.direction(metric), "")


def leaderboard_table(
    board: Leaderboard, vocabulary: Vocabulary, warned: frozenset[int] = frozenset()
) -> Table:
    """The leaderboard; configurations in ``warned`` (positions) are marked ⚠."""
    metrics = list(board.mean.columns)
    header = ["configuration", "seeds", *(m + _arrow(m, vocabulary) for m in metrics)]
    rows, bold = [], set()
    for i in range(len(board.configs)):
        label = board.label(i) + (" ⚠" if i in warned else "")
        cells = [label, str(int(board.n.iloc[i]))]
        for j, metric in enumerate(metrics):
            cells.append(format_cell(board.mean[metric].iloc[i], board.std[metric].iloc[i]))
            if i in board.best.get(metric, []):
                bold.add((i, j + 2))
        rows.append(cells)
    return Table(header, rows, bold)


def _trial_label(row: pd.Series) -> str:
    return f"{row['model']} / {row['regularizer']} seed={row['seed']}"


def _rows_of(ok: pd.DataFrame, config: pd.Series) -> pd.DataFrame:
    """The trials (one per seed) of one configuration."""
    match = pd.Series(True, index=ok.index)
    for column, value in config.items():
        match &= ok[column].isna() if _missing(value) else ok[column] == value
    return ok[match]


def _representatives(table: pd.DataFrame, board: Leaderboard) -> list[tuple[str, str]]:
    """(configuration label with its seed, trial id) of every ok trial: each seed's figures, so
    that one seed that trained badly is seen, not hidden behind another."""
    ok = table[(table["dataset"] == board.dataset) & (table["status"] == "ok")]
    out = []
    for i, config in board.configs.iterrows():
        for _, trial in _rows_of(ok, config).sort_values("seed").iterrows():
            out.append((f"{board.label(i)} seed={trial['seed']}", str(trial["trial_id"])))
    return out


def _trial_pngs(folder: Path, trial_id: str, title: str) -> dict[str, Path]:
    """A trial's PNGs, redrawn from its arrays when the PNGs are missing."""
    from aebench import figures

    trial = figures.trial_folder(folder, trial_id)
    pngs = {name: trial / name for name in figures.TRIAL_PNGS}
    if (trial / figures.ARRAYS).is_file() and not any(p.is_file() for p in pngs.values()):
        figures.render_trial(trial, title)
    return {name: path for name, path in pngs.items() if path.is_file()}


def _dataset_blocks(
    folder: Path, table: pd.DataFrame, dataset: str, vocabulary: Vocabulary
) -> list[Block]:
    from aebench import figures

    blocks: list[Block] = [Heading(2, f"Dataset: {dataset}")]
    board = leaderboard(table, dataset, vocabulary)
    if board is None:
        return [*blocks, Paragraph("No trial of this dataset finished.")]
    blocks += [
        Heading(3, "Leaderboard"),
        Paragraph(
            "Mean ± standard deviation over seeds (sample std, n−1). ↑ higher is better, "
            "↓ lower is better; the best configuration per column is in bold (never for timings "
            "and memory, which move with the machine)."
        ),
        leaderboard_table(board, vocabulary, _warned(table, board)),
    ]
    representatives = _representatives(table, board)
    figure_dir = folder / FIGURES
    figure_dir.mkdir(exist_ok=True)
    panels = [
        (label, figures.trial_folder(folder, tid) / figures.ARRAYS)
        for label, tid in representatives[:MAX_LATENT_PANELS]
    ]
    panels = [(label, npz) for label, npz in panels if npz.is_file()]
    grid = figures.latent_grid(figure_dir / f"latent_{dataset}.png", panels) if panels else None
    if grid is not None:
        blocks += [Heading(3, "Latent spaces"), Images([("latent codes of the test split", grid)])]
    ok = table[(table["dataset"] == dataset) & (table["status"] == "ok")]
    for x, y in vocabulary.planes:  # pairs of columns that metrics ask to see plotted
        if not {x, y} <= set(table.columns):
            continue
        points = [
            (board.label(i), float(r[x]), float(r[y]))
            for i, config in board.configs.iterrows()
            for _, r in _rows_of(ok, config).iterrows()
            if pd.notna(r[x]) and pd.notna(r[y])
        ]
        labels = (vocabulary.get(x), vocabulary.get(y))
        path = figure_dir / f"{x}_{y}_{dataset}.png"
        plane = figures.plane(path, points, *labels)
        if plane is not None:
            blocks += [
                Heading(3, f"{x}–{y} plane"),
                Images([("one point per trial", plane)]),
            ]
    blocks += [
        Heading(3, "Trials"),
        Paragraph("The figures of every trial, each seed of each configuration."),
    ]
    for label, trial_id in representatives:
        pngs = _trial_pngs(folder, trial_id, label)
        captions = {
            figures.RECON_PNG: "test inputs and reconstructions",
            figures.SAMPLES_PNG: "samples from the prior",
            figures.CURVES_PNG: "training curves",
        }  # the latent scatter is in the grid above
        items = [(captions[name], pngs[name]) for name in captions if name in pngs]
        blocks += [Heading(4, f"{label} ({trial_id})")]
        blocks += [Images(items)] if items else [Paragraph("No figures were saved.")]
    return blocks


def _has_warnings(rows: pd.DataFrame) -> pd.Series:
    if "warnings" not in rows:
        return pd.Series(False, index=rows.index)
    return rows["warnings"].fillna("").astype(str).str.len() > 0


def _warned(table: pd.DataFrame, board: Leaderboard) -> frozenset[int]:
    """Positions of the configurations with a warning on any of their seeds."""
    ok = table[(table["dataset"] == board.dataset) & (table["status"] == "ok")]
    return frozenset(
        i for i, config in board.configs.iterrows() if _has_warnings(_rows_of(ok, config)).any()
    )


def _warning_blocks(table: pd.DataFrame) -> list[Block]:
    warned = table[(table["status"] == "ok") & _has_warnings(table)]
    if warned.empty:
        return []
    rows = [
        [str(r["trial_id"]), str(r["dataset"]), _trial_label(r), str(r["warnings"])]
        for _, r in warned.sort_values(["dataset", "model", "seed"]).iterrows()
    ]
    return [
        Heading(2, "Warnings"),
        Paragraph("Trained, but look before you trust their numbers (⚠ in the leaderboards)."),
        Table(["trial", "dataset", "configuration", "warnings"], rows),
    ]


def _problem_blocks(table: pd.DataFrame) -> list[Block]:
    bad = table[table["status"] != "ok"]
    if bad.empty:
        return []
    rows = [
        [str(r["trial_id"]), str(r["dataset"]), _trial_label(r), str(r["status"]), str(r["reason"])]
        for _, r in bad.sort_values(["status", "dataset", "model", "seed"]).iterrows()
    ]
    header = ["trial", "dataset", "configuration", "status", "reason"]
    return [Heading(2, "Failed, skipped and diverged trials"), Table(header, rows)]


def report_blocks(
    folder: Path, table: pd.DataFrame, vocabulary: Vocabulary | None = None
) -> list[Block]:
    vocabulary = vocabulary or Vocabulary()
    counts = table["status"].value_counts().sort_index()
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    blocks: list[Block] = [
        Heading(1, f"aebench report: {folder.resolve().name}"),
        Paragraph(
            f"{len(table)} trials ({summary}), from {PARQUET}; "
            f"built {datetime.now().isoformat(timespec='seconds')}."
        ),
    ]
    table = with_flags(table, vocabulary)
    for dataset in sorted(table["dataset"].dropna().unique()):
        blocks += _dataset_blocks(folder, table, str(dataset), vocabulary)
    return blocks + _warning_blocks(table) + _not_measured_blocks(table) + _problem_blocks(table)


def with_flags(table: pd.DataFrame, vocabulary: Vocabulary) -> pd.DataFrame:
    """The table with every value above its column's declared ``flag_above`` added to the row's
    warnings (``estimate_convergence 0.31 > 0.1``): flagged rows are marked like warned ones."""
    flagged = [
        column
        for column in vocabulary.columns.values()
        if column.flag_above is not None
        and column.name in table
        and is_numeric_dtype(table[column.name])
    ]
    if not flagged:
        return table
    table = table.copy()
    warnings = table["warnings"] if "warnings" in table else pd.Series("", index=table.index)
    notes = warnings.fillna("").astype(str)
    for column in flagged:
        name, limit = column.name, column.flag_above
        above = table[name] > limit
        text = table.loc[above, name].map(lambda v, c=name, t=limit: f"{c} {v:.3g} > {t:g}")
        notes[above] = [f"{n}; {t}" if n else t for n, t in zip(notes[above], text, strict=True)]
    table["warnings"] = notes
    return table


def _not_measured_blocks(table: pd.DataFrame) -> list[Block]:
    """Why metrics gave NaN (errors, reasons), once per configuration (seeds share them)."""
    notes = pd.Series("", index=table.index)
    for column in ("metric_errors", "nan_reasons"):  # errors first: they are bugs to fix
        if column in table:
            text = table[column].fillna("").astype(str)
            notes = notes.str.cat(text, sep="; ").str.strip("; ")
    ok = table[(table["status"] == "ok") & (notes != "")]
    rows = sorted(
        {
            (str(r["dataset"]), f"{r['model']} / {r['regularizer']}", notes[i])
            for i, r in ok.iterrows()
        }
    )
    if not rows:
        return []
    return [
        Heading(2, "Not measured"),
        Paragraph("Metrics that gave NaN on trained models, and why (metric errors first)."),
        Table(["dataset", "configuration", "metrics: reason"], [list(r) for r in rows]),
    ]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block], folder: Path) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
            lines.append("|" + "---|" * len(block.header))
            for i, row in enumerate(block.rows):
                cells = [
                    f"**{_md_cell(c)}**" if (i, j) in block.bold else _md_cell(c)
                    for j, c in enumerate(row)
                ]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        else:
            for caption, path in block.items:
                lines += [f"![{caption}]({path.relative_to(folder).as_posix()})", ""]
    return "\n".join(lines)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.best { font-weight: bold; background: #e8f4e8; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figcaption { font-size: 0.8em; color: #555; }
img { max-width: 100%; }
"""


def _embedded(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def to_html(blocks: list[Block], title: str) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>',
        f"<style>{STYLE}</style></head><body>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{esc(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{esc(block.text)}</p>")
        elif isinstance(block, Table):
            parts.append("<table><thead><tr>")
            parts += [f"<th>{esc(h)}</th>" for h in block.header]
            parts.append("</tr></thead><tbody>")
            for i, row in enumerate(block.rows):
                cells = [
                    f'<td class="best">{esc(c)}</td>'
                    if (i, j) in block.bold
                    else f"<td>{esc(c)}</td>"
                    for j, c in enumerate(row)
                ]
                parts.append("<tr>" + "".join(cells) + "</tr>")
            parts.append("</tbody></table>")
        else:
            for caption, path in block.items:
                parts.append(
                    f'<figure><img src="{_embedded(path)}" alt="{esc(caption)}">'
                    f"<figcaption>{esc(caption)}</figcaption></figure>"
                )
    parts.append("</body></html>")
    return "\n".join(parts)


def build_report(folder: Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into the results folder; returns their paths."""
    folder = Path(folder)
    if not (folder / PARQUET).is_file():
        raise FileNotFoundError(f"{folder}: no {PARQUET} here; run a suite into it first")
    table = read_results(folder)
    blocks = report_blocks(folder, table, vocabulary_of(folder))
    md, page = folder / REPORT_MD, folder / REPORT_HTML
    md.write_text(to_markdown(blocks, folder), encoding="utf-8")
    page.write_text(to_html(blocks, f"aebench report: {folder.resolve().name}"), encoding="utf-8")
    return md, page


class ReportBuilder(SuiteObserver):
    """Builds the report when a suite run ends (before the MLflow observer logs it)."""

    def __init__(self) -> None:
        self.paths: tuple[Path, Path] | None = None

    def suite_finished(self, run: SuiteRun) -> None:
        try:
            self.paths = build_report(run.output)
        except Exception as exc:  # the results are written; a report can be rebuilt later
            print(f"aebench: the report of {run.output} failed: {exc}", file=sys.stderr)
