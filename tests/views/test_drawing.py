"""Figures drawn from saved results (aebench.drawing), at the sizes real suites reach."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from aebench.contract.columns import Column
from aebench.views.drawing import ARRAYS, LATENT_PNG, draw_images, render_trial
from aebench.views.suite_drawing import latent_grid, plane


def test_a_plane_of_a_hundred_configurations_keeps_its_axes_and_every_label(tmp_path) -> None:
    points = [(f"model-{i} / none", float(i), float(i % 7)) for i in range(100)]
    path = tmp_path / "plane.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when the legend squeezes the axes out
        plane(path, points, Column("rate", unit="nats"), Column("distortion", unit="nats"))
    width, height = Image.open(path).size
    assert width > height  # the legend's columns sit beside the axes, not on them


def _dark_bands(column: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) pixel rows of each run of dark pixels down an image column."""
    dark = np.flatnonzero(column < 0.5)
    if not len(dark):
        return []
    breaks = np.flatnonzero(np.diff(dark) > 1)
    firsts = [dark[0], *dark[breaks + 1]]
    lasts = [*dark[breaks], dark[-1]]
    return list(zip(firsts, lasts, strict=True))


@pytest.mark.parametrize("rows", [1, 3, 9])
def test_every_row_of_images_is_drawn_whole_and_at_one_size(tmp_path, rows: int) -> None:
    """Black 8 x 8 images, ``rows`` rows of nine: one dark band per row down the last image's
    column, all of one height, none cut at the figure's edge (the last row of a code traversal
    was, under the layout engine)."""
    black = np.zeros((9, 1, 8, 8))
    path = tmp_path / "rows.png"
    draw_images(path, [(f"row {i}", black) for i in range(rows)], "a title\nof two lines", 9)
    grey = np.asarray(Image.open(path).convert("L"), dtype=float) / 255
    right = np.flatnonzero((grey < 0.5).any(axis=0))[-1]  # the last image's, past the labels
    bands = _dark_bands(grey[:, right - 2])
    assert len(bands) == rows
    assert len({last - first for first, last in bands}) == 1  # every row at one size
    assert bands[0][0] > 0 and bands[-1][1] < grey.shape[0] - 1  # margins: nothing cut off


def _trial_with_a_scatter(folder, seed: int):
    """A trial folder with latent codes in its arrays and its ``latent.png`` drawn from them."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    latent, labels = rng.normal(size=(50, 2)), rng.integers(0, 3, size=50)
    np.savez(folder / ARRAYS, latent=latent, labels=labels, latent_axes="z", latent_dim=2)
    render_trial(folder, f"trial {seed}")
    return folder / ARRAYS


def test_a_latent_grid_places_the_scatters_its_trials_drew(tmp_path) -> None:
    """The report's grid is the trials' own ``latent.png``, pixel for pixel, side by side."""
    panels = [(f"{i + 1}.", _trial_with_a_scatter(tmp_path / f"{i}", i)) for i in range(3)]
    grid = np.asarray(Image.open(latent_grid(tmp_path / "grid.png", panels)).convert("RGB"))
    for i, (_, npz) in enumerate(panels):
        own = np.asarray(Image.open(npz.with_name(LATENT_PNG)).convert("RGB"))
        height, width = own.shape[:2]
        placed = grid[grid.shape[0] - height :, i * width : (i + 1) * width]  # under its title
        assert np.array_equal(placed, own)


def test_a_latent_grid_draws_a_scatter_older_than_its_arrays_again(tmp_path) -> None:
    panels = [(f"{i + 1}.", _trial_with_a_scatter(tmp_path / f"{i}", i)) for i in range(2)]
    stale = panels[1][1]
    os.utime(stale, ns=(stale.stat().st_atime_ns, stale.stat().st_mtime_ns + 10**9))
    width, _ = Image.open(latent_grid(tmp_path / "grid.png", panels)).size
    own, _ = Image.open(stale.with_name(LATENT_PNG)).size
    assert width != 2 * own  # drawn from the arrays, panel by panel: not the PNGs placed
