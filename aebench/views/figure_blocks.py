"""The report's figures of one dataset, as blocks: the latent codes of each configuration's median
seed side by side, the planes metrics ask for (one point per trial), and per configuration (ranked)
its median seed's figures with the other seeds' folded away. Drawn from the trials' saved arrays,
so a report can be rebuilt without a model.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from aebench.contract.columns import Vocabulary
from aebench.results.confined import FIGURES, confined, confined_folder, safe_name
from aebench.results.trials import trial_folder, writable_trial_folder
from aebench.views.background import draw_beside
from aebench.views.blocks import Block, Details, Heading, Images, Paragraph
from aebench.views.ranking import Leaderboard, median_seed, ranking_columns

# FIGURES: the folder, in the results folder, of the figures drawn for the report (named where
# every folder aebench writes in is: ``aebench.results.confined``).
MAX_LATENT_PANELS = 24
TRIAL_CAPTIONS = {  # the PNGs shown per trial, in this order; the latent scatter is in a grid
    "reconstructions.png": "test inputs and reconstructions",
    "prior_samples.png": "samples from the prior",
    "traversals.png": "latent traversals",
    "traversals_of_a_code.png": "traversals of a test input's code",
    "interpolations.png": "interpolations between test inputs",
    "curves.png": "loss curves",
}


def _trial_pngs(folder: Path, trial_id: str, title: str) -> dict[str, Path]:
    """A trial's PNGs, redrawn from its arrays when any is missing (a kill while drawing)."""
    from aebench.views import drawing  # numpy and matplotlib: no torch

    trial = trial_folder(folder, trial_id)
    pngs = {name: trial / name for name in drawing.TRIAL_PNGS}
    if drawing.missing_pngs(trial):
        drawing.render_trial(writable_trial_folder(folder, trial_id), title)
    return {name: path for name, path in pngs.items() if path.is_file()}


def _trial_images(folder: Path, trial: pd.Series, title: str) -> list[tuple[str, Path]]:
    pngs = _trial_pngs(folder, str(trial["trial_id"]), title)
    return [(caption, pngs[name]) for name, caption in TRIAL_CAPTIONS.items() if name in pngs]


def _with_figures(folder: Path, trials: pd.DataFrame, median: pd.Series) -> pd.Series:
    """The median seed, else the first seed (by seed) whose figures were saved: the figures
    observer draws one seed per configuration unless ``[observers.figures] per_seed = true``."""
    from aebench.views import drawing  # numpy and matplotlib: no torch

    def saved(trial: pd.Series) -> bool:
        folder_of = trial_folder(folder, str(trial["trial_id"]))
        names = (drawing.ARRAYS, *drawing.TRIAL_PNGS)
        return any((folder_of / name).is_file() for name in names)

    if saved(median):
        return median
    others = trials[trials["trial_id"] != median["trial_id"]].sort_values("seed")
    return next((t for _, t in others.iterrows() if saved(t)), median)


def _configuration_blocks(
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
        shown = _with_figures(folder, trials, median)
        if shown["trial_id"] != median["trial_id"]:
            why += f"; its figures were not drawn, these are seed {shown['seed']}'s"
            why += f" ({shown['trial_id']})"
        label = f"{board.label(i)} seed={shown['seed']}"
        images = _trial_images(folder, shown, label)
        blocks += [
            Heading(4, f"{rank}. {board.label(i)}"),
            Paragraph(f"Seed {median['seed']} ({median['trial_id']}): {why}."),
            Images(images) if images else Paragraph("No figures were saved."),
        ]
        others = trials[trials["trial_id"] != shown["trial_id"]].sort_values("seed")
        drawn = [
            (t["seed"], f"seed {t['seed']} ({t['trial_id']})", pngs)
            for _, t in others.iterrows()
            if (pngs := _trial_images(folder, t, f"{board.label(i)} seed={t['seed']}"))
        ]
        folded = [(title, pngs) for _, title, pngs in drawn]
        if folded:
            names = ", ".join(str(seed) for seed, _, _ in drawn)
            blocks.append(Details(f"Other seeds: {names}", folded))
    return blocks


def _latent_blocks(
    folder: Path, board: Leaderboard, vocabulary: Vocabulary, order: list[int]
) -> list[Block]:
    """The latent scatters of each configuration's median seed, side by side."""
    from aebench.views import drawing, suite_drawing  # numpy and matplotlib: no torch

    columns = ranking_columns(board, vocabulary)
    panels, substituted = [], False
    for rank, i in enumerate(order[:MAX_LATENT_PANELS], 1):
        median, _ = median_seed(board.trials[i], columns, vocabulary)
        shown = _with_figures(folder, board.trials[i], median)
        substituted |= shown["trial_id"] != median["trial_id"]
        npz = trial_folder(folder, str(shown["trial_id"])) / drawing.ARRAYS
        if npz.is_file():
            panels.append((f"{rank}. {board.label(i)} seed={shown['seed']}", npz))
    path = confined(folder, FIGURES, safe_name(f"latent_{board.dataset}") + ".png")
    panels = [(title, npz) for title, npz in panels if suite_drawing.has_latent(npz)]
    if not panels:
        return []
    draw_beside(path, f"the report ({path.name})", suite_drawing.latent_grid, path, panels)
    caption = "latent codes of the test split, each configuration's median seed"
    if substituted:  # its figures not drawn ([observers.figures] per_seed = false, say)
        caption += " where its figures were drawn, else its first seed drawn (each panel names it)"
    return [Heading(3, "Latent spaces"), Images([(caption, path)])]


def _plane_blocks(
    folder: Path, board: Leaderboard, vocabulary: Vocabulary, order: list[int]
) -> list[Block]:
    """Pairs of columns that metrics ask to see plotted: one point per trial."""
    from aebench.views import suite_drawing  # numpy and matplotlib: no torch

    blocks: list[Block] = []
    for x, y in vocabulary.planes:
        points = [
            (board.label(i), float(r[x]), float(r[y]))
            for i in order
            if {x, y} <= set(board.trials[i].columns)
            for _, r in board.trials[i].iterrows()
            if pd.notna(r[x]) and pd.notna(r[y])
        ]
        points = [p for p in points if math.isfinite(p[1]) and math.isfinite(p[2])]
        if not points:  # plane would draw nothing
            continue
        path = confined(folder, FIGURES, safe_name(f"{x}_{y}_{board.dataset}") + ".png")
        columns = (vocabulary.get(x), vocabulary.get(y))
        draw_beside(path, f"the report ({path.name})", suite_drawing.plane, path, points, *columns)
        blocks += [Heading(3, f"{x}–{y} plane"), Images([("one point per trial", path)])]
    return blocks


def figure_blocks(
    folder: Path, board: Leaderboard, vocabulary: Vocabulary, order: list[int]
) -> list[Block]:
    """The figures of a dataset's configurations (positions in ``order``), drawn into
    ``FIGURES`` where they are not a trial's own: latent spaces, planes, then per configuration."""
    confined_folder(folder, FIGURES)  # a real folder, not a link to elsewhere
    return [
        *_latent_blocks(folder, board, vocabulary, order),
        *_plane_blocks(folder, board, vocabulary, order),
        *_configuration_blocks(folder, board, vocabulary, order),
    ]
