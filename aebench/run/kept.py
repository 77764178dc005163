"""Kept trials: a results folder's table and trained models, loaded again and measured again.

``load_results`` and ``load_trial`` are the public way back into a results folder; ``evaluate``
re-measures kept models with other metrics or settings (``aebench evaluate``), updating the table,
the report and MLflow through the suite's observers, without training anything.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from aebench.contract.data import Data
from aebench.contract.metric import MetricContext
from aebench.plugins.manager import Plugins, load_plugins
from aebench.results.files import FolderError
from aebench.results.lock import check_output
from aebench.results.table import PARQUET, SUITE_FILE, read_results
from aebench.results.trials import WEIGHTS, TrialFileError, read_config, trial_folder
from aebench.run.data import DataCache
from aebench.run.loop import build_observers, run_trials
from aebench.run.observing import SuiteRun
from aebench.run.plan import Plan
from aebench.run.suite import EvalSection, Suite, SuiteError, SuiteFile, Trial, resolve_eval
from aebench.run.trial import kept_model, resolve_device


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


def _row(table: pd.DataFrame, folder: Path, trial_id: str) -> dict[str, Any]:
    rows = table[table["trial_id"] == trial_id]
    if rows.empty:
        raise KeptTrialError(f"{folder}: no trial {trial_id!r} in its {PARQUET}")
    return rows.iloc[0].to_dict()


def _trial(folder: Path, trial_id: str) -> Trial:
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
    row = _row(load_results(folder), folder, trial_id)
    trial = _trial(folder, trial_id)
    plugins = plugins or load_plugins()
    cache = cache or DataCache(plugins)
    model, data = _rebuilt(trial, plugins, torch.device(device), cache, folder)
    return KeptTrial(trial, model, data, row)


def _rebuilt(
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


def parse_setting(text: str) -> tuple[str, str, Any]:
    """``METRIC.samples=5000`` -> ("METRIC", "samples", 5000): the value is read as TOML."""
    key, sep, value = text.partition("=")
    metric, dot, param = key.strip().partition(".")
    if not (sep and dot and metric and param):
        raise KeptTrialError(f"--set {text}: expected METRIC.PARAMETER=VALUE")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()  # a bare word: a string
    return metric, param, parsed


def _suite(folder: Path, plugins: Plugins) -> Suite:
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


def _new_eval(
    trial: Trial, metrics: Sequence[str] | None, sets: Sequence[str], plugins: Plugins, where: Path
) -> dict[str, Any]:
    """The trial's evaluation settings with ``metrics`` (else its own) and ``sets`` applied."""
    chosen = list(metrics) if metrics is not None else list(trial.eval["metrics"])
    tables: dict[str, dict[str, Any]] = {
        name: dict(params) for name, params in trial.eval["params"].items() if name in chosen
    }
    for text in sets:
        metric, param, value = parse_setting(text)
        tables.setdefault(metric, {})[param] = value
    section = EvalSection.model_validate({"metrics": chosen, **tables})
    try:
        return resolve_eval(where, section, plugins.metrics)
    except SuiteError as exc:
        raise KeptTrialError(str(exc)) from None


def evaluate(
    folder: str | Path,
    *,
    metrics: Sequence[str] | None = None,
    sets: Sequence[str] = (),
    trial_ids: Sequence[str] | None = None,
    plugins: Plugins | None = None,
    device: str = "cpu",
    observers: Sequence[Any] = (),
) -> SuiteRun:
    """Measure the kept trials of a results folder again (all ``ok`` ones with kept weights, or
    ``trial_ids``), with ``metrics`` instead of their own and ``sets`` (``metric.param=value``)
    applied; the table, the report and MLflow are updated, nothing trains.

    Every trial is checked before anything is written: a folder of another aebench or suite, a
    trial not in the table, missing or unreadable weights, a metric its model cannot serve each
    raise ``KeptTrialError`` naming the folder or trial, and nothing in the folder changes.
    """
    folder = Path(folder)
    try:
        check_output(folder)  # writable, and no run in it: said before any model loads
    except FolderError as exc:
        raise KeptTrialError(str(exc)) from None
    plugins = plugins or load_plugins()
    table = load_results(folder)
    suite = _suite(folder, plugins)
    if trial_ids is None:
        ok = table[table["status"] == "ok"]
        kept = [t for t in ok["trial_id"] if (trial_folder(folder, t) / WEIGHTS).is_file()]
    else:
        kept = list(trial_ids)
        for trial_id in kept:
            status = _row(table, folder, trial_id)["status"]
            if status != "ok":
                raise KeptTrialError(f"{folder}: trial {trial_id} is {status}: no model to measure")
    if not kept:
        raise KeptTrialError(f"{folder}: no kept models to measure ([suite] keep_models = false?)")
    chosen = resolve_device(device)
    cache = DataCache(plugins)
    work = Plan(train=[])
    for trial_id in kept:  # every check first: nothing is written unless all pass
        trial = _trial(folder, trial_id)
        if trial.id != trial_id:
            raise KeptTrialError(f"{trial_folder(folder, trial_id)}: its config is another trial's")
        trial = trial.with_eval(_new_eval(trial, metrics, sets, plugins, folder))
        where = trial_folder(folder, trial_id)
        model, data = _rebuilt(trial, plugins, chosen, cache, folder)
        context = MetricContext(model, data, trial.eval, chosen, torch.Generator())
        unmet = [
            (name, why)
            for name in metrics or ()
            if (why := plugins.metrics.get(name).factory.unmet(context))
        ]
        if unmet and trial_ids is not None:  # named by the user: say why it cannot be done
            name, why = unmet[0]
            raise KeptTrialError(f"{where}: metric {name!r} cannot measure it: {why}")
        if not unmet:  # measuring them all: those the metrics cannot serve are left as they are
            work.evaluate.append((trial, _row(table, folder, trial_id)))
    if not work.evaluate:
        raise KeptTrialError(f"{folder}: {', '.join(metrics or [])} can measure no kept trial here")
    suite.trials = [trial for trial, _ in work.evaluate]
    try:
        run = run_trials(
            suite,
            plugins,
            output=folder,
            device=str(chosen),
            observers=[*observers, *build_observers(suite, plugins)],
            cache=cache,
            work=work,
        )
    except FolderError as exc:  # a run that started meanwhile; a full disk
        raise KeptTrialError(str(exc)) from None
    run.already_done = len(kept) - len(work)  # kept trials the metrics cannot serve
    return run
