"""Kept trials: a results folder's table, its saved suite and its trained models, loaded again.

``load_results`` and ``load_trial`` are the public way back into a results folder
(``aebench.measure_again`` measures kept models again, through a session).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from aebench.contract.data import Data
from aebench.plugins.manager import Plugins, load_plugins
from aebench.results.files import FolderError
from aebench.results.table import PARQUET, SUITE_FILE, read_results
from aebench.results.trials import TrialFileError, read_config, trial_folder
from aebench.run.data import DataCache
from aebench.run.suite import Suite, SuiteFile, Trial
from aebench.run.trial import kept_model


class KeptTrialError(ValueError):
    """A results folder or kept trial that cannot be used; ``str(error)`` is the one line."""


def load_results(folder: str | Path) -> pd.DataFrame:
    """The results table of a folder (``results.parquet`` and the rows recorded since), one row
    per trial."""
    folder = Path(folder)
    try:
        table = read_results(folder)
    except FolderError as exc:  # a damaged table, say
        raise KeptTrialError(str(exc)) from None
    if table.empty and not (folder / PARQUET).is_file():
        raise KeptTrialError(f"{folder}: no {PARQUET} here; run a suite into it first")
    return table


@dataclass
class KeptTrial:
    """A trained trial, reloaded: its model (weights loaded, eval mode) and its dataset."""

    trial: Trial  # its resolved configuration: dataset, model, regularizer, training, evaluation
    model: nn.Module
    data: Data
    row: dict[str, Any]  # its row in the results table


def row_of(table: pd.DataFrame, folder: Path, trial_id: str) -> dict[str, Any]:
    rows = table[table["trial_id"] == trial_id]
    if rows.empty:
        raise KeptTrialError(f"{folder}: no trial {trial_id!r} in its {PARQUET}")
    return rows.iloc[0].to_dict()


def trial_of(folder: Path, trial_id: str) -> Trial:
    try:
        return Trial.from_config(read_config(trial_folder(folder, trial_id)))
    except TrialFileError as exc:
        raise KeptTrialError(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise KeptTrialError(f"{trial_folder(folder, trial_id)}: a damaged config: {exc}") from None


def load_trial(
    folder: str | Path,
    trial_id: str,
    *,
    plugins: Plugins | None = None,
    device: str = "cpu",
    cache: DataCache | None = None,
) -> KeptTrial:
    """A kept trial of a results folder: the model built from the registry with its resolved
    parameters and its kept weights, in eval mode, and its dataset (loaded as the suite did)::

        kept = aebench.load_trial("results/quick", "0a1b2c3d4e5f6789")
        z = kept.model.prior().sample((16,))
        images = kept.model.decode(z)
    """
    folder = Path(folder)
    row = row_of(load_results(folder), folder, trial_id)
    trial = trial_of(folder, trial_id)
    plugins = plugins or load_plugins()
    cache = cache or DataCache(plugins)
    model, data = rebuilt(trial, plugins, torch.device(device), cache, folder)
    return KeptTrial(trial, model, data, row)


def rebuilt(
    trial: Trial, plugins: Plugins, device: torch.device, cache: DataCache, folder: Path
) -> tuple[nn.Module, Data]:
    """``kept_model``, its failures as one ``KeptTrialError`` line naming the trial's folder."""
    try:
        return kept_model(trial, plugins, device, cache, folder)
    except TrialFileError as exc:
        raise KeptTrialError(str(exc)) from None
    except Exception as exc:  # a plugin not installed here, or weights of another model
        where = trial_folder(folder, trial.id)
        raise KeptTrialError(f"{where}: {type(exc).__name__}: {exc}".splitlines()[0]) from None


def saved_suite(folder: Path, plugins: Plugins) -> Suite:
    """The suite last run into ``folder``, as saved there (its observers' settings)."""
    path = folder / SUITE_FILE
    try:
        spec = SuiteFile.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        message = f"{folder}: no {SUITE_FILE}: not a results folder of this aebench"
        raise KeptTrialError(message) from None
    except (OSError, ValueError) as exc:
        raise KeptTrialError(f"{path}: unreadable: {exc}".splitlines()[0]) from None
    return Suite(path, spec)
