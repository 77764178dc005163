"""The report of a results folder, as Markdown and HTML.

Per dataset: a headline table (each group's primary metric, ranked best first), a detail table per
group of metrics, and each configuration's figures for its median seed (the other seeds one click
away). Columns are chosen and compared only through what they declare (``columns.json``), never by
name. Built from ``results.parquet`` (the source of truth) and the per-trial ``figures.npz`` files,
so it can be rebuilt at any time without a model. The HTML embeds its figures and stands alone; the
Markdown links the PNGs beside it.
"""

from __future__ import annotations

import base64
import html
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api.types import is_numeric_dtype

from aebench.contract.columns import GROUPS, IDENTITY, Vocabulary, is_metric_column, is_param_column
from aebench.plugins.listing import vocabulary_of
from aebench.results.files import cannot_write, write_atomically
from aebench.results.references import Outcome, curve_at, outcomes, read_references, stage_ends
from aebench.results.table import PARQUET, read_results
from aebench.results.trials import read_curves, trial_folder
from aebench.run.observing import SuiteObserver, SuiteRun

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES = "figures"
MAX_LATENT_PANELS = 24
LIKELIHOOD = "likelihood"  # its columns compare only within one likelihood protocol
OTHER = "other"  # the detail table of columns that declare no group
ORDINARY = (1e-4, 1e7)  # magnitudes written out in digits; beyond them, scientific notation
NOTE_CHARS = 120  # a warning's note beside its row; the whole text is in its tooltip


# --- numbers ------------------------------------------------------------------------------------


def format_number(x: float, digits: int = 4) -> str:
    """``x`` for reading: an integer as an integer, else ``digits`` significant digits, written
    out for ordinary magnitudes (``6182``, ``0.0123``) and in scientific notation beyond them."""
    if not math.isfinite(x):
        return "–"
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))  # 19790, not 1.979e+04; and -0.0 is 0
    if ORDINARY[0] <= abs(x) < ORDINARY[1]:
        return np.format_float_positional(
            x, precision=digits, unique=False, fractional=False, trim="-"
        )
    return f"{x:.{digits - 1}e}"


def format_cell(mean: float, std: float) -> str:
    """``mean ± std``: the mean to four significant digits, the spread to two; the mean alone with
    a single seed (no spread) or a spread of exactly 0."""
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(std) or std == 0:
        return format_number(mean)
    return f"{format_number(mean)} ± {format_number(std, 2)}"


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
    trials: list[pd.DataFrame]  # per configuration: its ok trials, one row per seed
    protocol: list[str]  # per configuration: its likelihood protocol, "" without one
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


def _text(value: object) -> str:
    """A bookkeeping cell as text; a missing one is empty."""
    return "" if _missing(value) or value is pd.NA else str(value)


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


def _rows_of(ok: pd.DataFrame, config: pd.Series) -> pd.DataFrame:
    """The trials (one per seed) of one configuration."""
    match = pd.Series(True, index=ok.index)
    for column, value in config.items():
        match &= ok[column].isna() if _missing(value) else ok[column] == value
    return ok[match]


def protocol_of(trials: pd.DataFrame) -> str:
    """``bernoulli, binarize=static``: what a configuration's likelihoods are of (its p(x|z) and
    how the data was binarized); "" for a model without a likelihood."""
    if "likelihood" not in trials:
        return ""
    binarize = trials["binarize"] if "binarize" in trials else pd.Series("", index=trials.index)
    found = sorted(
        {
            f"{_text(name)}, binarize={_text(how) or 'none'}"
            for name, how in zip(trials["likelihood"], binarize, strict=True)
            if _text(name)
        }
    )
    return " | ".join(found)


def comparable(board: Leaderboard, metric: str, vocabulary: Vocabulary) -> list[list[int]]:
    """The sets of configurations whose values of ``metric`` may be compared: all of them, but for
    a likelihood column those of one protocol each (a log-likelihood of binarized data is not one
    of grey levels, nor a Bernoulli one a Gaussian one)."""
    everyone = list(range(len(board.configs)))
    if vocabulary.get(metric).group != LIKELIHOOD:
        return [everyone]
    sets: dict[str, list[int]] = {}
    for i in everyone:
        sets.setdefault(board.protocol[i], []).append(i)
    return list(sets.values())


def best_of(board: Leaderboard, metric: str, vocabulary: Vocabulary) -> list[int]:
    """The best configurations of ``metric``: none when it declares no direction or is noisy
    (timings, memory); else the best within each comparable set of two or more values."""
    sign = vocabulary.direction(metric)
    if sign == 0 or vocabulary.get(metric).noisy:
        return []
    values = board.mean[metric].to_numpy(dtype=float) * sign
    best: list[int] = []
    for group in comparable(board, metric, vocabulary):
        finite = [i for i in group if np.isfinite(values[i])]
        if len(finite) < 2:
            continue  # nothing to be better than
        top = max(values[i] for i in finite)
        best += [i for i in finite if np.isclose(values[i], top, rtol=1e-12)]
    return sorted(best)


def leaderboard(
    table: pd.DataFrame, dataset: str, vocabulary: Vocabulary | None = None
) -> Leaderboard | None:
    """Mean and standard deviation over seeds of every ``ok`` configuration of ``dataset``, and
    the best per column (``best_of``)."""
    vocabulary = vocabulary or Vocabulary()
    ok = table[(table["dataset"] == dataset) & (table["status"] == "ok")]
    if ok.empty:
        return None
    keys = [c for c in ok.columns if is_param_column(c) and c != "seed"]
    keys = [c for c in keys if c in IDENTITY or ok[c].notna().any()]
    # Lists were flattened to JSON text; the rest are scalars, so every key groups as it is.
    by = [ok[k] for k in keys]
    metrics = metric_columns(ok, vocabulary)
    numbers = ok[metrics].astype(float).replace([np.inf, -np.inf], np.nan)
    mean = numbers.groupby(by, dropna=False, sort=True).mean()
    std = numbers.groupby(by, dropna=False, sort=True).std(ddof=1)
    n = ok.groupby(keys, dropna=False, sort=True).size()
    configs = n.index.to_frame(index=False)
    shown = [
        c for c in keys if c in ("model", "regularizer") or configs[c].nunique(dropna=False) > 1
    ]
    trials = [_rows_of(ok, config) for _, config in configs.iterrows()]
    board = Leaderboard(
        dataset=dataset,
        shown=shown,
        configs=configs,
        n=n.reset_index(drop=True),
        mean=mean.reset_index(drop=True),
        std=std.reset_index(drop=True),
        trials=trials,
        protocol=[protocol_of(rows) for rows in trials],
    )
    for metric in metrics:
        if best := best_of(board, metric, vocabulary):
            board.best[metric] = best
    return board


# --- which columns, in which order --------------------------------------------------------------


def ordered_groups(groups: Iterable[str]) -> list[str]:
    """Groups in report order: the built-in ``GROUPS``, then the others as first seen, then
    ``other`` (the columns that declare none)."""
    seen = list(dict.fromkeys(groups))
    rest = [g for g in seen if g not in GROUPS and g != OTHER]
    return [g for g in GROUPS if g in seen] + rest + ([OTHER] if OTHER in seen else [])


def headline_columns(board: Leaderboard, vocabulary: Vocabulary) -> list[str]:
    """Each group's declared headline column that has a value here, in group order."""
    headlines = vocabulary.headlines()
    return [headlines[g] for g in ordered_groups(headlines) if headlines[g] in board.mean]


def ranking_columns(board: Leaderboard, vocabulary: Vocabulary) -> list[str]:
    """The headline columns configurations are ranked by, first one first: those that declare a
    direction, are not noisy, have a value for some configuration, and are comparable among the
    configurations that have one."""
    out = []
    for column in headline_columns(board, vocabulary):
        declared = vocabulary.get(column)
        values = board.mean[column].to_numpy(dtype=float)
        protocols = {board.protocol[i] for i in np.flatnonzero(np.isfinite(values))}
        if declared.direction == 0 or declared.noisy or not protocols:
            continue
        if declared.group == LIKELIHOOD and len(protocols) > 1:
            continue  # no one order across protocols
        out.append(column)
    return out


def ranked(board: Leaderboard, vocabulary: Vocabulary) -> list[int]:
    """Positions of the configurations, best first: by the first ranking column; configurations
    without a value (or tied) by the next one; those with none of them last, by label."""
    columns = ranking_columns(board, vocabulary)

    def key(i: int) -> tuple:
        parts = []
        for column in columns:
            value = float(board.mean[column].iloc[i]) * vocabulary.direction(column)
            parts.append((0, -value) if math.isfinite(value) else (1, 0.0))
        return (*parts, board.label(i))

    return sorted(range(len(board.configs)), key=key)


def best_configurations(table: pd.DataFrame, vocabulary: Vocabulary) -> dict[str, str]:
    """Per dataset, its best configuration and why, as the headline table ranks them:
    ``{"digits": "vae / none latent_dim=8: log_px -21.3 ± 0.25 ↑, best of 6 measured"}``
    (configurations without that column are not counted); a dataset whose
    configurations cannot be ranked (no headline with a direction and a value) is left out."""
    out = {}
    for dataset in sorted(table["dataset"].dropna().unique()):
        board = leaderboard(table, str(dataset), vocabulary)
        columns = ranking_columns(board, vocabulary) if board is not None else []
        if board is None or not columns:
            continue
        best, column = ranked(board, vocabulary)[0], columns[0]
        value = format_cell(board.mean[column].iloc[best], board.std[column].iloc[best])
        arrow = _arrow(column, vocabulary)
        of = int(np.isfinite(board.mean[column].to_numpy(dtype=float)).sum())
        out[str(dataset)] = f"{board.label(best)}: {column} {value}{arrow}, best of {of} measured"
    return out


def median_seed(
    trials: pd.DataFrame, columns: list[str], vocabulary: Vocabulary
) -> tuple[pd.Series, str]:
    """The trial of a configuration whose value is the median of its seeds', and the column that
    decided: the first of ``columns`` that the trials have. Of an even number of seeds, the worse of
    the middle two (a report should not flatter); ties by seed; without any value, the first
    seed (and "")."""
    for column in columns:
        if column not in trials:
            continue
        have = trials[np.isfinite(trials[column].to_numpy(dtype=float))]
        if have.empty:
            continue
        worse = -vocabulary.direction(column) * have[column].astype(float)
        order = have.assign(_worse=worse).sort_values(["_worse", "seed"], kind="stable")
        return order.iloc[len(order) // 2].drop("_worse"), column
    return trials.sort_values("seed").iloc[0], ""


def warning_note(trials: pd.DataFrame) -> str:
    """A configuration's warnings: each once, with its seeds unless every seed has it."""
    if "warnings" not in trials:
        return ""
    seeds: dict[str, list[str]] = {}
    for seed, text in zip(trials["seed"], trials["warnings"], strict=True):
        for item in filter(None, _text(text).split("; ")):
            seeds.setdefault(item, []).append(str(seed))
    return "; ".join(
        item if len(who) == len(trials) else f"{item} (seed {', '.join(who)})"
        for item, who in seeds.items()
    )


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


def _arrow(metric: str, vocabulary: Vocabulary) -> str:
    return {1: " ↑", -1: " ↓"}.get(vocabulary.direction(metric), "")


def _tip(metric: str, vocabulary: Vocabulary) -> str:
    declared = vocabulary.get(metric)
    better = f"{declared.better} is better" if declared.better else "no better direction"
    parts = [declared.description, f"unit: {declared.unit}" if declared.unit else "", better]
    return "; ".join(p for p in parts if p) + (
        "; noisy: never marked best" if declared.noisy else ""
    )


def metric_table(
    board: Leaderboard,
    vocabulary: Vocabulary,
    metrics: list[str],
    order: list[int],
    *,
    protocol: bool = False,
    show_notes: bool = False,
) -> Table:
    """The configurations at ``order`` (positions) with ``metrics``, the best ones bold, the warned
    ones marked ⚠; with ``protocol``, a column of each configuration's likelihood protocol."""
    fixed = ["configuration", "seeds", *(["protocol"] if protocol else [])]
    header = [*fixed, *(m + _arrow(m, vocabulary) for m in metrics)]
    tips = ["", "seeds averaged", *(["p(x|z), binarization"] if protocol else [])]
    tips += [_tip(m, vocabulary) for m in metrics]
    rows, bold, notes = [], set(), {}
    for r, i in enumerate(order):
        cells = [board.label(i), str(int(board.n.iloc[i]))]
        cells += [board.protocol[i] or "–"] if protocol else []
        for j, metric in enumerate(metrics):
            cells.append(format_cell(board.mean[metric].iloc[i], board.std[metric].iloc[i]))
            if i in board.best.get(metric, []):
                bold.add((r, len(fixed) + j))
        if note := warning_note(board.trials[i]):
            notes[r] = note
        rows.append(cells)
    return Table(header, rows, bold, tips, notes, show_notes, wrap={2} if protocol else set())


def _ranking_sentence(columns: list[str], vocabulary: Vocabulary) -> str:
    if not columns:
        return (
            "Not ranked: no headline metric with a direction and a value; by configuration. "
            "Mean ± standard deviation over seeds."
        )
    first = columns[0]
    text = f"Ranked by {first} ({vocabulary.get(first).better} is better), best first"
    if len(columns) > 1:
        text += f"; configurations without it (or tied) by {', then '.join(columns[1:])}"
    return text + "; configurations with none of these last. Mean ± standard deviation over seeds."


BOLD_RULE = (
    "Sample standard deviation (n−1); ↑ higher is better, ↓ lower is better. Bold: the best mean "
    "of a column, only where the column declares a direction and is not noisy (timings and memory "
    "move with the machine), and only among comparable configurations: likelihood columns are "
    "compared within one likelihood protocol (p(x|z) and binarization), so each protocol has its "
    "own best. ⚠: the configuration trained with warnings (hover for all of them)."
)


def _detail_blocks(board: Leaderboard, vocabulary: Vocabulary, order: list[int]) -> list[Block]:
    """One table per group of columns, rows in the ranked order (those without any value of the
    group left out)."""
    by_group: dict[str, list[str]] = {}
    for column in board.mean.columns:
        by_group.setdefault(vocabulary.get(column).group or OTHER, []).append(column)
    blocks: list[Block] = [Heading(3, "Details by group")]
    for group in ordered_groups(by_group):
        columns = by_group[group]
        rows = [i for i in order if board.mean[columns].iloc[i].notna().any()]
        table = metric_table(board, vocabulary, columns, rows, protocol=group == LIKELIHOOD)
        blocks += [Heading(4, group), table]
    return blocks


TRIAL_CAPTIONS = {  # the PNGs shown per trial, in this order; the latent scatter is in a grid
    "reconstructions.png": "test inputs and reconstructions",
    "prior_samples.png": "samples from the prior",
    "traversals.png": "latent traversals",
    "traversals_of_a_code.png": "traversals of a test input's code",
    "interpolations.png": "interpolations between test inputs",
    "curves.png": "loss curves",
}


def _trial_pngs(folder: Path, trial_id: str, title: str) -> dict[str, Path]:
    """A trial's PNGs, redrawn from its arrays when the PNGs are missing."""
    from aebench.views import drawing  # numpy and matplotlib: no torch

    trial = trial_folder(folder, trial_id)
    pngs = {name: trial / name for name in drawing.TRIAL_PNGS}
    if (trial / drawing.ARRAYS).is_file() and not any(p.is_file() for p in pngs.values()):
        drawing.render_trial(trial, title)
    return {name: path for name, path in pngs.items() if path.is_file()}


def _trial_images(folder: Path, trial: pd.Series, title: str) -> list[tuple[str, Path]]:
    pngs = _trial_pngs(folder, str(trial["trial_id"]), title)
    return [(caption, pngs[name]) for name, caption in TRIAL_CAPTIONS.items() if name in pngs]


def _figure_blocks(
    folder: Path, board: Leaderboard, vocabulary: Vocabulary, order: list[int]
) -> list[Block]:
    """Per configuration (ranked), its median seed's figures, and the other seeds' folded."""
    columns = ranking_columns(board, vocabulary)
    blocks: list[Block] = [Heading(3, "Figures per configuration")]
    for rank, i in enumerate(order, 1):
        trials = board.trials[i]
        median, by = median_seed(trials, columns, vocabulary)
        seeds = ", ".join(str(s) for s in sorted(trials["seed"]))
        why = f"the median by {by} of seeds {seeds}" if by else f"the first of seeds {seeds}"
        if by and len(trials) % 2 == 0:
            why += " (the worse of the middle two)"
        label = f"{board.label(i)} seed={median['seed']}"
        images = _trial_images(folder, median, label)
        blocks += [
            Heading(4, f"{rank}. {board.label(i)}"),
            Paragraph(f"Seed {median['seed']} ({median['trial_id']}): {why}."),
            Images(images) if images else Paragraph("No figures were saved."),
        ]
        others = trials[trials["trial_id"] != median["trial_id"]].sort_values("seed")
        folded = [
            (
                f"seed {t['seed']} ({t['trial_id']})",
                _trial_images(folder, t, f"{board.label(i)} seed={t['seed']}"),
            )
            for _, t in others.iterrows()
        ]
        if folded:
            names = ", ".join(str(s) for s in others["seed"])
            blocks.append(Details(f"Other seeds: {names}", folded))
    return blocks


def _latent_blocks(
    folder: Path, board: Leaderboard, vocabulary: Vocabulary, order: list[int]
) -> list[Block]:
    """The latent scatters of each configuration's median seed, side by side."""
    from aebench.views import drawing  # numpy and matplotlib: no torch

    columns = ranking_columns(board, vocabulary)
    panels = []
    for rank, i in enumerate(order[:MAX_LATENT_PANELS], 1):
        median, _ = median_seed(board.trials[i], columns, vocabulary)
        npz = trial_folder(folder, str(median["trial_id"])) / drawing.ARRAYS
        if npz.is_file():
            panels.append((f"{rank}. {board.label(i)} seed={median['seed']}", npz))
    path = folder / FIGURES / f"latent_{board.dataset}.png"
    grid = drawing.latent_grid(path, panels) if panels else None
    if grid is None:
        return []
    caption = "latent codes of the test split, each configuration's median seed"
    return [Heading(3, "Latent spaces"), Images([(caption, grid)])]


def _plane_blocks(
    folder: Path, board: Leaderboard, vocabulary: Vocabulary, order: list[int]
) -> list[Block]:
    """Pairs of columns that metrics ask to see plotted: one point per trial."""
    from aebench.views import drawing  # numpy and matplotlib: no torch

    blocks: list[Block] = []
    for x, y in vocabulary.planes:
        points = [
            (board.label(i), float(r[x]), float(r[y]))
            for i in order
            if {x, y} <= set(board.trials[i].columns)
            for _, r in board.trials[i].iterrows()
            if pd.notna(r[x]) and pd.notna(r[y])
        ]
        path = folder / FIGURES / f"{x}_{y}_{board.dataset}.png"
        plane = drawing.plane(path, points, vocabulary.get(x), vocabulary.get(y))
        if plane is not None:
            blocks += [Heading(3, f"{x}–{y} plane"), Images([("one point per trial", plane)])]
    return blocks


def _dataset_blocks(
    folder: Path, table: pd.DataFrame, dataset: str, vocabulary: Vocabulary
) -> list[Block]:
    blocks: list[Block] = [Heading(2, f"Dataset: {dataset}")]
    board = leaderboard(table, dataset, vocabulary)
    if board is None:
        return [*blocks, Paragraph("No trial of this dataset finished.")]
    order = ranked(board, vocabulary)
    headlines = headline_columns(board, vocabulary)
    blocks += [
        Heading(3, "Headline"),
        metric_table(board, vocabulary, headlines, order, show_notes=True),
        Paragraph(_ranking_sentence(ranking_columns(board, vocabulary), vocabulary)),
        Paragraph(BOLD_RULE),
    ]
    blocks += _detail_blocks(board, vocabulary, order)
    (folder / FIGURES).mkdir(exist_ok=True)
    blocks += _latent_blocks(folder, board, vocabulary, order)
    blocks += _plane_blocks(folder, board, vocabulary, order)
    return blocks + _figure_blocks(folder, board, vocabulary, order)


def _has_warnings(rows: pd.DataFrame) -> pd.Series:
    if "warnings" not in rows:
        return pd.Series(False, index=rows.index)
    return rows["warnings"].fillna("").astype(str).str.len() > 0


def _trial_label(row: pd.Series) -> str:
    return f"{row['model']} / {row['regularizer']} seed={row['seed']}"


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
        Paragraph("Trained, but look before you trust their numbers (⚠ in the tables)."),
        Table(["trial", "dataset", "configuration", "warnings"], rows, numbers=False),
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
    return [Heading(2, "Failed, skipped and diverged trials"), Table(header, rows, numbers=False)]


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
    blocks += reproduction_blocks(folder, table, vocabulary)
    table = with_flags(table, vocabulary)
    for dataset in sorted(table["dataset"].dropna().unique()):
        blocks += _dataset_blocks(folder, table, str(dataset), vocabulary)
    return blocks + _warning_blocks(table) + _not_measured_blocks(table) + _problem_blocks(table)


# --- reproduction: ours beside the published values the suite names ([[references]]) -----------


def verdict(outcome: Outcome, vocabulary: Vocabulary) -> str:
    """``inside``, ``outside`` or ``not measured``; a shortened run says so."""
    direction = vocabulary.direction(outcome.reference.metric)
    if not math.isfinite(outcome.mean):
        text = "not measured"
    else:
        text = "inside" if outcome.inside(direction) else "outside"
    if outcome.shortened:
        text += f" (shortened: {outcome.epochs:,} of {outcome.reference.epochs:,} epochs)"
    return text


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
    configuration it names: ours (mean ± sd over seeds), published, the difference, and whether
    it is inside the tolerance; nothing when the suite named no references."""
    references = read_references(folder)
    if not references:
        return []
    results = outcomes(table, references)
    header = ["published in", "configuration", "metric", "seeds", "ours", "published"]
    header += ["ours − published", "tolerance", "verdict", "note"]
    rows = [
        [
            o.reference.label(),
            o.configuration or "no ok trial matches " + ", ".join(o.reference.where),
            o.reference.metric + _arrow(o.reference.metric, vocabulary),
            str(o.seeds),
            format_cell(o.mean, o.std),
            format_number(o.reference.value),
            _difference(o),
            _tolerance(o),
            verdict(o, vocabulary),
            o.reference.note,
        ]
        for o in results
    ]
    inside = sum(verdict(o, vocabulary).startswith("inside") for o in results)
    return [
        Heading(2, "Reproduction"),
        Paragraph(
            f"{inside} of {len(results)} published values reproduced within their tolerance. "
            "Ours: the mean ± standard deviation (n−1) over the ok seeds of the configuration the "
            "reference names; each published value is in the column's unit and sign (the note "
            "says how the paper's number maps onto it). A shortened run trained for fewer epochs "
            "than the published model: its numbers are where it got, not a reproduction."
        ),
        Table(header, rows, numbers=False),
        *_curve_blocks(folder, results),
    ]


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
        Table(
            ["dataset", "configuration", "metrics: reason"], [list(r) for r in rows], numbers=False
        ),
    ]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_label(table: Table, row: int, text: str) -> str:
    if row not in table.notes:
        return text
    return f"{text} ⚠ {_short(table.notes[row])}" if table.show_notes else f"{text} ⚠"


def _short(note: str) -> str:
    return note if len(note) <= NOTE_CHARS else note[: NOTE_CHARS - 1].rstrip() + "…"


def _md_table(table: Table) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in table.header) + " |"]
    lines.append("|" + "---|" * len(table.header))
    for i, row in enumerate(table.rows):
        cells = [_md_label(table, i, row[0]), *row[1:]] if table.numbers else row
        cells = [
            f"**{_md_cell(c)}**" if (i, j) in table.bold else _md_cell(c)
            for j, c in enumerate(cells)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def to_markdown(blocks: list[Block], folder: Path) -> str:
    def link(path: Path) -> str:
        return path.relative_to(folder).as_posix()

    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            lines += _md_table(block)
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


def _html_header(text: str) -> str:
    # Long metric names may break after an underscore: a header no wider than its numbers.
    return html.escape(text).replace("_", "_<wbr>")


def _html_label(table: Table, row: int, text: str) -> str:
    esc = html.escape
    if row not in table.notes:
        return esc(text)
    note = table.notes[row]
    out = f'{esc(text)} <span class="warn" title="{esc(note)}">⚠</span>'
    if table.show_notes:
        out += f'<div class="note" title="{esc(note)}">{esc(_short(note))}</div>'
    return out


def _html_table(table: Table) -> list[str]:
    esc = html.escape
    kind = "numbers" if table.numbers else "text"
    parts = [f'<div class="scroll"><table class="{kind}"><thead><tr>']
    tips = table.tips or [""] * len(table.header)
    parts += [
        f'<th title="{esc(tip)}">{_html_header(h)}</th>' if tip else f"<th>{_html_header(h)}</th>"
        for h, tip in zip(table.header, tips, strict=True)
    ]
    parts.append("</tr></thead><tbody>")
    for i, row in enumerate(table.rows):
        cells = [_html_label(table, i, row[0]) if table.numbers else esc(row[0])]
        cells += [esc(c) for c in row[1:]]
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


def _html_figures(items: list[tuple[str, Path]]) -> list[str]:
    esc = html.escape
    return [
        f'<figure><img src="{_embedded(path)}" alt="{esc(caption)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
        for caption, path in items
    ]


def to_html(blocks: list[Block], title: str) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<style>{STYLE}</style></head><body>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{esc(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{esc(block.text)}</p>")
        elif isinstance(block, Table):
            parts += _html_table(block)
        elif isinstance(block, Images):
            parts += _html_figures(block.items)
        else:
            parts.append(f"<details><summary>{esc(block.summary)}</summary>")
            for heading, items in block.items:
                parts.append(f"<p>{esc(heading)}</p>")
                parts += _html_figures(items) or ["<p>No figures were saved.</p>"]
            parts.append("</details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def build_report(folder: Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into the results folder; returns their paths.

    Each is written to a temporary file and renamed: a full disk leaves the previous report whole.
    A table that cannot be read, or a file that cannot be written, is a ``FolderError`` (one line).
    """
    folder = Path(folder)
    table = read_results(folder)  # with the rows of a run still going, or killed
    if table.empty and not (folder / PARQUET).is_file():
        raise FileNotFoundError(f"{folder}: no {PARQUET} here; run a suite into it first")
    try:
        blocks = report_blocks(folder, table, vocabulary_of(folder))  # draws the figures
    except OSError as exc:
        raise cannot_write(folder, exc) from None
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


class ReportBuilder(SuiteObserver):
    """Builds the report when a suite run ends (before the MLflow observer logs it)."""

    def __init__(self) -> None:
        self.paths: tuple[Path, Path] | None = None

    def suite_finished(self, run: SuiteRun) -> None:
        try:
            self.paths = build_report(run.output)
        except Exception as exc:  # the results are written; a report can be rebuilt later
            print(f"aebench: the report of {run.output} failed: {exc}", file=sys.stderr)
