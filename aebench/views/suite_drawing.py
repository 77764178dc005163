"""The suite's own figures in its report, drawn from its trials' arrays and rows: the latent
scatters side by side (``latent_grid``) and the planes metrics declare (``plane``). numpy and
matplotlib, no torch; the trial figures they build on are ``aebench.views.drawing``'s."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from aebench.contract.columns import Column
from aebench.views import drawing
from aebench.views.drawing import DPI, FONT_PT, LATENT_PNG, LINE_IN, MARGIN_IN


def has_latent(npz: Path) -> bool:
    """The trial's arrays can be read (else one warning names them) and hold latent codes."""
    arrays = drawing.read_arrays(npz)
    return arrays is not None and "latent" in arrays


def latent_grid(path: Path, panels: Sequence[tuple[str, Path]], columns: int = 4) -> Path | None:
    """Every given trial's latent scatter side by side: (title, figures.npz) per panel. Where
    each trial's own scatter (``latent.png``) is drawn from its arrays already, the grid is
    those PNGs placed side by side under the titles given (a run's report waited 0.6 s for six
    scatters drawn again); else they are drawn here."""
    drawn = [png for _, npz in panels if (png := _drawn_latent(npz)) is not None]
    if panels and len(drawn) == len(panels):
        if (placed := _placed_grid(path, [t for t, _ in panels], drawn, columns)) is not None:
            return placed
    loaded = []
    for title, npz in panels:
        arrays = drawing.read_arrays(npz)
        if arrays is not None and "latent" in arrays:
            loaded.append((title, arrays))
    if not loaded:
        return None
    columns = min(columns, len(loaded))
    rows = math.ceil(len(loaded) / columns)
    fig = drawing._figure(3.6 * columns, 3.4 * rows)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (title, arrays) in zip(axes, loaded, strict=False):
        drawing.scatter_latent(ax, arrays, title)
    for ax in axes[len(loaded) :]:
        ax.set_axis_off()
    drawing._save(fig, path)
    return Path(path)


def _drawn_latent(npz: Path) -> Path | None:
    """The trial's ``latent.png``, if drawn from its arrays as they are now (not before them)."""
    png = Path(npz).with_name(LATENT_PNG)
    try:
        return png if png.stat().st_mtime_ns >= Path(npz).stat().st_mtime_ns else None
    except OSError:
        return None


def _placed_grid(
    path: Path, titles: Sequence[str], pngs: Sequence[Path], columns: int
) -> Path | None:
    """Drawn scatters in rows of ``columns``, each under its title, at their own pixel size;
    None if one cannot be read (it is drawn again from its arrays)."""
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    try:
        images = [imread(png) for png in pngs]
    except Exception:  # PIL's and OS errors, for a damaged or foreign file
        return None
    columns = min(columns, len(images))
    rows = math.ceil(len(images) / columns)
    width = max(image.shape[1] for image in images)
    height = max(image.shape[0] for image in images)
    label = round(LINE_IN * DPI)  # a line of text above each panel, in pixels
    fig = Figure(figsize=(columns * width / DPI, rows * (height + label) / DPI), dpi=DPI)
    total = rows * (height + label)
    for k, (title, image) in enumerate(zip(titles, images, strict=True)):
        row, column = divmod(k, columns)
        top = total - row * (height + label)  # pixels from the bottom
        x = (column * width + MARGIN_IN * DPI) / fig.bbox.width  # the panel's left, a margin in
        fig.text(x, top / total, title, va="top", fontsize=FONT_PT)
        fig.figimage(image, xo=column * width, yo=top - label - image.shape[0], origin="upper")
    drawing._save(fig, path)
    return Path(path)


LEGEND_ROWS = 30  # configurations per legend column of a plane figure


def plane(
    path: Path, points: Sequence[tuple[str, float, float]], x: Column, y: Column
) -> Path | None:
    """Two declared columns against each other: one point (x, y) per trial,
    labelled by configuration."""
    points = [p for p in points if math.isfinite(p[1]) and math.isfinite(p[2])]
    if not points:
        return None
    labels = sorted({label for label, _, _ in points})
    # The legend beside the axes, in columns of LEGEND_ROWS: inside a 5 x 4 inch figure, the 96
    # configurations of the zoo suite collapsed the axes to nothing.
    legend_columns = math.ceil(len(labels) / LEGEND_ROWS)
    rows = min(len(labels), LEGEND_ROWS)
    fig = drawing._figure(5.0 + 2.4 * legend_columns, max(4.0, 0.6 + 0.12 * rows))
    ax = fig.subplots()
    colours = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    for label in labels:
        mine = [(a, b) for name, a, b in points if name == label]
        ax.scatter(*zip(*mine, strict=True), label=label, color=colours[label], s=18)
    ax.set_xlabel(_axis_label(x), fontsize=8)
    ax.set_ylabel(_axis_label(y), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1), ncols=legend_columns)
    ax.set_title(f"{x.name}–{y.name} plane", fontsize=9)
    drawing._save(fig, path)
    return Path(path)


def _axis_label(column: Column) -> str:
    """``name: description [unit]``, from the column's declaration."""
    text = f"{column.name}: {column.description}" if column.description else column.name
    return f"{text} [{column.unit}]" if column.unit else text
