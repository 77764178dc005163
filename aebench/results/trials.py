"""Trial folders: ``<output>/trials/<trial_id>/``, a trained trial kept as an artifact.

A folder holds the trial's resolved configuration (``config.json``), its per-epoch curves
(``curves.json``), its trained weights as a plain ``state_dict`` (``model.pt``, loadable with
``torch.load(..., weights_only=True)``; left out with ``[suite] keep_models = false``), a
checkpoint while it trains (``checkpoint.pt``), and the figures' arrays and PNGs. Every file is
written to a temporary name and renamed, so that a crash never leaves half a file behind.

They are written by the process that writes the results table (the client of a Dask cluster too),
from what the trial sends back; only checkpoints are written where the trial trains.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aebench.results.confined import TRIALS, confined_folder
from aebench.results.files import write_atomically
from aebench.results.weights import WeightsError, load_weights

# The per-epoch training losses a trial's curves hold (train.py writes them; figures draw them).
LOSS_CURVES = ("loss", "model_loss", "penalty")
CONFIG = "config.json"
CURVES = "curves.json"
WEIGHTS = "model.pt"
CHECKPOINT = "checkpoint.pt"
FORMAT = 1  # of config.json and the files beside it; a folder of another format is refused


class TrialFileError(ValueError):
    """A trial folder that cannot be used; ``str(error)`` is the one line to show."""


# Trial ids are hashes aebench makes (``Trial.id``); anything else, in a table from elsewhere, could
# name a place outside the results folder (``../../x``).
TRIAL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def trial_folder(output: Path, trial_id: str) -> Path:
    """Where a trial's files live; a ``TrialFileError`` for an id that is not a plain name."""
    if not TRIAL_ID.match(str(trial_id)):
        raise TrialFileError(
            f"{output}: trial id {str(trial_id)!r} is not one aebench writes"
            " (letters, digits, '-' and '_'): the table was not written by aebench"
        )
    return Path(output) / TRIALS / trial_id


def writable_trial_folder(output: Path, trial_id: str) -> Path:
    """``trial_folder``, made if missing and checked right before aebench writes in it: it and
    ``trials/`` real folders, neither a link to somewhere outside ``output`` (``FolderError``)."""
    folder = trial_folder(output, trial_id)
    return confined_folder(Path(output), TRIALS, folder.name)


def _json(value: Any) -> Callable[[Path], object]:
    return lambda p: p.write_text(json.dumps(value, indent=1, default=str), encoding="utf-8")


def write_trial(
    folder: Path,
    config: dict[str, Any],
    curves: dict[str, list[float]],
    weights: bytes | None,
    replace_weights: bool = True,
) -> None:
    """A finished trial's files: configuration, curves and the weights' bytes (None: none kept;
    with ``replace_weights=False`` the weights already there stay, as for a trial only measured
    again)."""
    if weights is not None:
        write_atomically(folder / WEIGHTS, lambda p: p.write_bytes(weights))
    elif replace_weights:
        (folder / WEIGHTS).unlink(missing_ok=True)  # an earlier run's weights are not these
    write_atomically(folder / CURVES, _json(curves))
    write_atomically(folder / CONFIG, _json({"format": FORMAT, **config}))


def state_bytes(state_dict: dict[str, Any]) -> bytes:
    """A ``state_dict`` as the bytes ``torch.save`` writes (what travels from a worker)."""
    import torch

    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()


def read_config(folder: Path) -> dict[str, Any]:
    """The configuration a trial folder was written with (``format`` checked)."""
    path = Path(folder) / CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrialFileError(f"{path}: no such file; the trial was not kept here") from None
    except (OSError, ValueError) as exc:
        raise TrialFileError(f"{path}: unreadable: {exc}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise TrialFileError(
            f"{path}: a trial folder of format {found!r} (aebench"
            f" {config.get('aebench') if isinstance(config, dict) else '?'}); this aebench reads"
            f" format {FORMAT}"
        )
    return config


def read_curves(folder: Path) -> dict[str, list[float]]:
    path = Path(folder) / CURVES
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # curves are for figures; a trial without them can still be measured


def read_weights(folder: Path, device: Any = "cpu") -> dict[str, Any]:
    """The kept ``state_dict``, loaded with ``weights_only=True``."""
    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise TrialFileError(f"{path}: no kept weights ([suite] keep_models = false, or deleted)")
    try:
        return load_weights(path, device)
    except WeightsError as exc:  # truncated, foreign, or a pickle that would run code: one line
        raise TrialFileError(str(exc)) from None


def folder_size(folder: Path) -> int:
    """Bytes in all files under ``folder``."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
