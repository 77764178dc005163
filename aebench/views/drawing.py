"""Drawing a trial's figures from its arrays, and a suite's figures: numpy and matplotlib, no torch.

A trial's figures are drawn in two steps: ``aebench.figures.capture`` reduces the trained model to
a few small arrays saved as ``figures.npz`` beside the PNGs, and ``render_trial`` here draws the
PNGs from that file alone, so that a report (``aebench report``) redraws every figure without the
model, and without importing torch. Drawing uses matplotlib's ``Figure`` and Agg canvas directly,
never pyplot: no global backend, no window.
"""

from __future__ import annotations

import math
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aebench.results.files import write_atomically
from aebench.results.trials import LOSS_CURVES as TRAINING_LOSSES

ARRAYS = "figures.npz"
LATENT_PNG = "latent.png"
RECON_PNG = "reconstructions.png"
SAMPLES_PNG = "prior_samples.png"
CURVES_PNG = "curves.png"
TRAVERSAL_PNG = "traversals.png"
INTERPOLATION_PNG = "interpolations.png"
CODE_TRAVERSAL_PNG = "traversals_of_a_code.png"
TRIAL_PNGS = (
    LATENT_PNG,
    RECON_PNG,
    SAMPLES_PNG,
    TRAVERSAL_PNG,
    CODE_TRAVERSAL_PNG,
    INTERPOLATION_PNG,
    CURVES_PNG,
)

LOSS_CURVES = (*TRAINING_LOSSES, "val_loss")  # drawn together: one scale, one objective
DPI = 100
TITLE_CHARS = 60  # titles wrapped to this many characters: a long one is not clipped
FONT_PT = 8  # titles and labels of the image figures
LINE_IN = FONT_PT * 1.35 / 72  # one line of that text, in inches
MARGIN_IN, GAP_IN = 0.08, 0.06  # around an image figure, and between its rows
ROW_IMAGE_IN = 0.75  # the most height a row of images takes


# --- files: written through a temporary name, read without trusting them ----------------------

_warned: set[tuple[str, int, int]] = set()  # unreadable files already named: (path, mtime, size)


def _save(fig: Any, path: Path) -> None:
    """A figure as a PNG, through a temporary file and a rename (never through a planted link)."""
    write_atomically(Path(path), lambda p: fig.savefig(p, format="png"))


def read_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """A trial's figure arrays (``figures.npz``), or None if the file cannot be read (truncated,
    say): one warning line names it, once, and reports go on without that trial's figures."""
    try:
        with np.load(path) as stored:
            return dict(stored)
    except Exception as exc:  # zipfile, zlib, numpy and OS errors, for a damaged or foreign file
        try:
            stat = Path(path).stat()
            key = (str(path), stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = (str(path), 0, 0)
        if key not in _warned:
            _warned.add(key)
            lines = str(exc).strip().splitlines()
            why = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
            print(
                f"aebench: warning: {path}: unreadable figure arrays ({why}); going on without"
                " this trial's figures",
                file=sys.stderr,
            )
        return None


# --- render: arrays -> PNGs ---------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _is_image(batch: np.ndarray) -> bool:
    return batch.ndim == 4 and batch.shape[1] in (1, 3)


def _as_image(sample: np.ndarray) -> np.ndarray:
    """(C, H, W) -> what imshow takes: (H, W) grey or (H, W, 3) colour, clipped to [0, 1]."""
    image = sample[0] if sample.shape[0] == 1 else np.moveaxis(sample, 0, -1)
    return np.clip(image, 0.0, 1.0)


def scatter_latent(ax, arrays: Mapping[str, Any], title: str = "") -> None:
    """One latent scatter, coloured by class where there are labels."""
    points = np.asarray(arrays["latent"])
    labels = arrays.get("labels")
    if labels is not None:
        sc = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=3, alpha=0.7)
        classes = np.unique(labels)
        if len(classes) <= 10:
            handles = [
                ax.scatter([], [], color=sc.cmap(sc.norm(c)), s=12, label=str(c)) for c in classes
            ]
            ax.legend(handles=handles, fontsize=6, markerscale=1, loc="best", framealpha=0.6)
    else:
        ax.scatter(points[:, 0], points[:, 1], s=3, alpha=0.7)
    axes = str(arrays.get("latent_axes", "z"))
    first, second = ("z1", "z2") if axes == "z" else ("PC1", "PC2")
    ax.set_xlabel(first, fontsize=8)
    ax.set_ylabel(second, fontsize=8)
    ax.tick_params(labelsize=7)
    dim = int(arrays.get("latent_dim", 2))
    subtitle = "" if axes == "z" else f"\n{dim}-D codes, {axes}"
    ax.set_title(_wrapped(title, 45) + subtitle, fontsize=8)


def _mosaic(batch: np.ndarray, n: int, pad: int = 1) -> np.ndarray:
    """One row of ``n`` images side by side, (H, n * (W + pad), 3), white gaps and empty tiles."""
    channels, height, width = batch.shape[1:]
    row = np.ones((height, n * (width + pad), 3))
    for c, sample in enumerate(batch[:n]):
        tile = _as_image(sample)
        row[:, c * (width + pad) : c * (width + pad) + width] = (
            tile[..., None] if tile.ndim == 2 else tile
        )
    return row


def _scaled(image: np.ndarray, height_px: int) -> np.ndarray:
    """``image`` (H, W, 3) at ``height_px`` rows, its nearest pixels, its aspect kept."""
    height, width = image.shape[:2]
    width_px = max(1, round(height_px * width / height))
    rows = np.arange(height_px) * height // height_px
    columns = np.arange(width_px) * width // width_px
    return image[rows][:, columns]


def _image_rows(path: Path, rows: Sequence[tuple[str, np.ndarray]], title: str) -> None:
    """Named rows of images, each row one image, placed on the figure by hand at a whole pixel
    size: axes (one per row, or per sample) and a layout engine took nine tenths of the time."""
    from matplotlib.figure import Figure

    title = _wrapped(title)
    n = max(len(batch) for _, batch in rows)
    mosaics = [(name, _mosaic(batch, n)) for name, batch in rows]
    width = max(4.0, 0.8 * n)
    image_width = width - 2 * MARGIN_IN
    heights = [min(ROW_IMAGE_IN, image_width * m.shape[0] / m.shape[1]) for _, m in mosaics]
    lines = len(title.splitlines())
    label = [LINE_IN if name else 0.0 for name, _ in mosaics]
    height = 2 * MARGIN_IN + lines * LINE_IN + sum(label) + sum(heights) + GAP_IN * len(rows)
    fig = Figure(figsize=(width, height), dpi=DPI)
    top = height - MARGIN_IN  # inches from the bottom, going down
    if title:
        fig.text(0.5, top / height, title, ha="center", va="top", fontsize=FONT_PT)
    top -= lines * LINE_IN + GAP_IN
    for (name, mosaic), above, tall in zip(mosaics, label, heights, strict=True):
        if name:
            fig.text(MARGIN_IN / width, top / height, name, va="top", fontsize=FONT_PT)
        top -= above + tall
        image = _scaled(mosaic, int(tall * DPI))
        fig.figimage(image, xo=round(MARGIN_IN * DPI), yo=round(top * DPI), origin="upper")
        top -= GAP_IN
    _save(fig, path)


def draw_images(
    path: Path, rows: Sequence[tuple[str, np.ndarray]], title: str, per_row: int = 16
) -> None:
    """Named batches of images (N, C, H, W) as one PNG, ``per_row`` images to a line."""
    lines = [
        (name if start == 0 else "", batch[start : start + per_row])
        for name, batch in rows
        for start in range(0, len(batch), per_row)
    ]
    _image_rows(Path(path), lines, title)


def _vector_rows(path: Path, rows: Sequence[tuple[str, np.ndarray]], title: str) -> None:
    """Flat (D,) samples drawn as curves, one panel per sample."""
    n = min(4, len(rows[0][1]))
    fig = _figure(2.5 * n, 2.2)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for c, ax in enumerate(axes):
        for name, batch in rows:
            if c < len(batch):
                ax.plot(batch[c].reshape(-1), label=name, lw=1)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle(_wrapped(title), fontsize=8)
    _save(fig, path)


def _draw_samples(path: Path, rows: Sequence[tuple[str, np.ndarray]], title: str) -> None:
    if _is_image(rows[0][1]):
        _image_rows(path, rows, title)
    else:
        _vector_rows(path, rows, title)


def _wrapped(title: str, width: int = TITLE_CHARS) -> str:
    """Each line of a title wrapped to ``width`` characters: a long one is not clipped at both
    sides."""
    return "\n".join(textwrap.fill(line, width) for line in title.splitlines())


def loss_lines(arrays: Mapping[str, Any]) -> list[tuple[str, np.ndarray, dict[str, Any]]]:
    """(legend label, values, line style) of every loss curve to draw. Each has a style of its own
    so that none hides another; the model's loss is folded into the loss when they are the same
    (no penalty), rather than drawn exactly over it."""
    curves = {
        name: np.asarray(arrays[f"curve_{name}"], dtype=float)
        for name in LOSS_CURVES
        if f"curve_{name}" in arrays and len(arrays[f"curve_{name}"])
    }
    styles = {
        "loss": {"color": "C0", "linestyle": "-", "marker": "o"},
        "model_loss": {"color": "C1", "linestyle": "--", "marker": "x"},
        "penalty": {"color": "C2", "linestyle": ":", "marker": "^"},
        "val_loss": {"color": "C3", "linestyle": "-", "marker": "s"},
    }
    labels = {"loss": "loss (train)", "val_loss": "val_loss (validation)"}
    same = (
        "loss" in curves
        and "model_loss" in curves
        and np.allclose(curves["loss"], curves["model_loss"], equal_nan=True)
    )
    if same:
        del curves["model_loss"]
        labels["loss"] = "loss = model_loss (train)"
    if "penalty" in curves and not np.any(curves["penalty"]):
        del curves["penalty"]  # no regularizer penalty: a flat zero line says nothing
    return [
        (labels.get(name, name), values, styles.get(name, {"marker": "."}))
        for name, values in curves.items()
    ]


def _draw_curves(path: Path, arrays: Mapping[str, Any], title: str) -> None:
    fig = _figure(5.0, 3.6)
    ax = fig.subplots()
    # Losses only: the learning rate and annealed weights are curves too, on other scales.
    for label, values, style in loss_lines(arrays):
        ax.plot(np.arange(1, len(values) + 1), values, label=label, markersize=4, **style)
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel("mean loss per sample", fontsize=8)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    ax.set_title(_wrapped(title), fontsize=8)
    _save(fig, path)


def _draw_traversals(path: Path, arrays: Mapping[str, Any], title: str) -> None:
    sigmas = np.asarray(arrays["traversal_sigmas"], dtype=float)
    rows = [
        (f"z{int(dim) + 1}", batch)
        for dim, batch in zip(arrays["traversal_dims"], arrays["traversal"], strict=True)
    ]
    what = f"traversals: one latent dimension from {sigmas[0]:+g}σ to {sigmas[-1]:+g}σ"
    _image_rows(path, rows, _wrapped(f"{title}\n{what} around the prior mean"))


def code_traversal_rows(arrays: Mapping[str, Any]) -> list[tuple[str, np.ndarray]]:
    """The input, then one row per swept dimension, labelled with the values it goes between."""
    rows = [("test input", np.asarray(arrays["code_traversal_input"]))]
    for dim, values, batch in zip(
        arrays["code_traversal_dims"],
        arrays["code_traversal_values"],
        arrays["code_traversal"],
        strict=True,
    ):
        rows.append((f"z{int(dim) + 1}: {values[0]:+.3g} to {values[-1]:+.3g}", batch))
    return rows


def _draw_code_traversals(path: Path, arrays: Mapping[str, Any], title: str) -> None:
    how = str(arrays["code_traversal_range"])
    what = (
        "traversals of a test input's code: one dimension at a time (most active first) swept"
        f" over {how}, the others kept"
    )
    _image_rows(path, code_traversal_rows(arrays), _wrapped(f"{title}\n{what}"))


def _draw_interpolations(path: Path, arrays: Mapping[str, Any], title: str) -> None:
    rows = [("", batch) for batch in arrays["interpolation"]]
    what = "interpolations: two test inputs, and between them the decoded straight line of codes"
    _image_rows(path, rows, _wrapped(f"{title}\n{what}"))


def wanted_pngs(arrays: Mapping[str, Any]) -> list[str]:
    """The PNGs ``render_trial`` draws from these arrays (``TRIAL_PNGS``' names, in order)."""
    wanted = []
    if "latent" in arrays:
        wanted.append(LATENT_PNG)
    if "inputs" in arrays:
        wanted.append(RECON_PNG)
    if "samples" in arrays:
        wanted.append(SAMPLES_PNG)
    # Traversals and interpolations are drawn for image data; a row of vectors reads as noise.
    if "traversal" in arrays and _is_image(arrays["traversal"][0]):
        wanted.append(TRAVERSAL_PNG)
    if "code_traversal" in arrays and _is_image(arrays["code_traversal"][0]):
        wanted.append(CODE_TRAVERSAL_PNG)
    if "interpolation" in arrays and _is_image(arrays["interpolation"][0]):
        wanted.append(INTERPOLATION_PNG)
    if any(k.startswith("curve_") and len(arrays[k]) for k in arrays):
        wanted.append(CURVES_PNG)
    return wanted


def render_trial(folder: Path, title: str = "") -> list[Path]:
    """Draw a trial's PNGs from its ``figures.npz``; returns the files written."""
    folder = Path(folder)
    arrays = read_arrays(folder / ARRAYS)
    if arrays is None:
        return []
    wanted = wanted_pngs(arrays)
    if LATENT_PNG in wanted:
        fig = _figure(4.0, 3.6)
        scatter_latent(fig.subplots(), arrays, title)
        _save(fig, folder / LATENT_PNG)
    if RECON_PNG in wanted:
        rows = [("input", arrays["inputs"]), ("reconstruction", arrays["recons"])]
        _draw_samples(folder / RECON_PNG, rows, title)
    if SAMPLES_PNG in wanted:
        samples = arrays["samples"]
        if _is_image(samples):  # two rows of eight read better than one of sixteen
            half = math.ceil(len(samples) / 2)
            rows = [("samples from p(z)", samples[:half]), ("", samples[half:])]
        else:
            rows = [("sample", samples)]
        _draw_samples(folder / SAMPLES_PNG, rows, title)
    if TRAVERSAL_PNG in wanted:
        _draw_traversals(folder / TRAVERSAL_PNG, arrays, title)
    if CODE_TRAVERSAL_PNG in wanted:
        _draw_code_traversals(folder / CODE_TRAVERSAL_PNG, arrays, title)
    if INTERPOLATION_PNG in wanted:
        _draw_interpolations(folder / INTERPOLATION_PNG, arrays, title)
    if CURVES_PNG in wanted:
        _draw_curves(folder / CURVES_PNG, arrays, title)
    return [folder / name for name in wanted]


def missing_pngs(folder: Path) -> list[str]:
    """The PNGs a trial's ``figures.npz`` calls for that its folder lacks: a run killed while it
    drew them left the others. Reads only the arrays it needs; none without a readable file."""
    folder = Path(folder)
    if not (folder / ARRAYS).is_file() or all((folder / n).is_file() for n in TRIAL_PNGS):
        return []  # nothing to draw, or every PNG there is: no need to read the arrays
    try:
        with np.load(folder / ARRAYS) as stored:  # lazy: an array is read when asked for
            wanted = wanted_pngs(stored)
    except Exception:  # damaged: named once (one warning line), and nothing can be drawn
        read_arrays(folder / ARRAYS)
        return []
    return [name for name in wanted if not (folder / name).is_file()]


def complete_trial(folder: Path, title: str = "") -> list[Path]:
    """Draw a trial's PNGs again if any its arrays call for is missing; returns those written."""
    return render_trial(folder, title) if missing_pngs(folder) else []
