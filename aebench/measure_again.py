"""``aebench evaluate``: the kept trials of a results folder measured again, nothing trained.

The folder's saved suite becomes a session (``aebench.session``) whose work is the kept trials,
with other metrics or settings; the table, the report and MLflow are updated through its observers.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from aebench.contract.metric import MetricContext
from aebench.plugins.manager import Plugins, load_plugins
from aebench.results.files import FolderError
from aebench.results.lock import check_output
from aebench.results.trials import WEIGHTS, TrialFileError, trial_folder
from aebench.run.kept import KeptTrialError, load_results, rebuilt, row_of, saved_suite, trial_of
from aebench.run.measure import keeping, unchanged_metrics
from aebench.run.observing import SuiteRun
from aebench.run.plan import Plan
from aebench.run.suite import EvalSection, SuiteError, Trial, resolve_eval
from aebench.session import Session


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
    except RecursionError:  # tomllib recurses into nested lists
        raise KeptTrialError(f"--set {key.strip()}=...: nested too deeply") from None
    return metric, param, parsed


def kept_folder(folder: Path, trial_id: str) -> Path:
    """The trial's folder; an id that could name a place outside ``folder`` (``../../x``: a
    crafted table, or ``--trial``) is a ``KeptTrialError``, its one line."""
    try:
        return trial_folder(folder, trial_id)
    except TrialFileError as exc:
        raise KeptTrialError(str(exc)) from None


def new_eval(
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
    applied; the table, the report and MLflow are updated, nothing trains. Only the metrics whose
    settings or code version changed, and those named in ``metrics``, are measured: the others
    keep their columns from the earlier row (``aebench.run.measure.unchanged_metrics``).

    Every trial is checked before anything is written: a folder of another aebench or suite, a
    trial not in the table, missing or unreadable weights, a metric its model cannot serve each
    raise ``KeptTrialError`` naming the folder or trial, and nothing in the folder changes.
    """
    folder = Path(folder)
    try:
        check_output(folder)  # writable, and no run in it: said before any model loads
    except FolderError as exc:
        raise KeptTrialError(str(exc)) from None
    for trial_id in trial_ids or ():  # before anything is read: one line, not a traceback
        try:
            trial_folder(folder, trial_id)
        except TrialFileError:
            raise KeptTrialError(
                f"--trial {trial_id!r}: not a trial id (letters, digits, '-' and '_')"
            ) from None
    plugins = plugins or load_plugins()
    table = load_results(folder)
    suite = saved_suite(folder, plugins)
    without_model: list[str] = []  # trained, but no model kept to measure: said, not hidden
    if trial_ids is None:
        ok = table[table["status"] == "ok"]
        kept = [t for t in ok["trial_id"] if (kept_folder(folder, t) / WEIGHTS).is_file()]
        without_model = [t for t in ok["trial_id"] if t not in set(kept)]
    else:
        kept = list(trial_ids)
        for trial_id in kept:
            status = row_of(table, folder, trial_id)["status"]
            if status != "ok":
                raise KeptTrialError(f"{folder}: trial {trial_id} is {status}: no model to measure")
    if not kept:
        raise KeptTrialError(f"{folder}: no kept models to measure ([suite] keep_models = false?)")
    session = Session.open(suite, plugins=plugins, output=folder, device=device)
    work = Plan(train=[])
    for trial_id in kept:  # every check first: nothing is written unless all pass
        trial = _checked_trial(session, trial_id, metrics, sets, named=trial_ids is not None)
        if trial is not None:  # measuring them all: those the metrics cannot serve are left
            work.evaluate.append((trial, row_of(table, folder, trial_id)))
    if not work.evaluate:
        raise KeptTrialError(f"{folder}: {', '.join(metrics or [])} can measure no kept trial here")
    session.suite.trials = [trial for trial, _ in work.evaluate]
    # Only what changed is measured: a metric keeps its earlier columns unless its settings or
    # its code's version changed, or the user named it (``--metrics``).
    kept = {t.id: unchanged_metrics(t, row, plugins, metrics or ()) for t, row in work.evaluate}
    try:
        session.start_observers()
        with keeping(kept):
            run = session.run(observers=observers, work=work)
    except FolderError as exc:  # a run that started meanwhile; a full disk
        raise KeptTrialError(str(exc)) from None
    run.already_done = len(kept) - len(work)  # kept trials the metrics cannot serve
    run.without_model = without_model
    return run


def _checked_trial(
    session: Session,
    trial_id: str,
    metrics: Sequence[str] | None,
    sets: Sequence[str],
    named: bool,
) -> Trial | None:
    """The kept trial with its new evaluation settings, its model rebuilt to check that it loads;
    None where a named metric cannot serve it and the user named no trial."""
    folder = session.output
    trial = trial_of(folder, trial_id)
    if trial.id != trial_id:
        raise KeptTrialError(f"{trial_folder(folder, trial_id)}: its config is another trial's")
    trial = trial.with_eval(new_eval(trial, metrics, sets, session.plugins, folder))
    model, data = rebuilt(trial, session.plugins, session.device, session.cache, folder)
    context = MetricContext(model, data, trial.eval, session.device, torch.Generator())
    for name in metrics or ():
        if why := session.plugins.metrics.get(name).factory.unmet(context):
            if named:  # the trial named by the user: say why it cannot be done
                where = trial_folder(folder, trial_id)
                raise KeptTrialError(f"{where}: metric {name!r} cannot measure it: {why}")
            return None
    return trial
