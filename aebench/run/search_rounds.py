"""The search trials of every configuration at once, on an executor that runs trials side by
side (``aebench run --executor dask``).

The studies stay in this process, in ``search.db``: in each round every configuration whose
budget is not spent is asked (Optuna's ask-and-tell) for its share of the executor's slots, the
trials asked for are run together as one batch by the executor, and each result is told to its
study. The workers build their data through the search's view (``DataCache.for_workers``), so a
search trial never sees the test split there either. A pruner hears training's epochs in this
process: it needs the local executor (``check_executor``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import optuna
from optuna.trial import TrialState

from aebench.results.rows import is_missing
from aebench.results.table import read_results
from aebench.run.executors import Executor, LocalExecutor
from aebench.run.loop import run_trials
from aebench.run.observing import Row
from aebench.run.search import (
    Search,
    SearchTrialFailed,
    Tuned,
    ValidationData,
    counted,
    untuned,
)
from aebench.run.search_configurations import Configuration, configurations
from aebench.run.search_observers import observed, trials_only
from aebench.run.suite import Suite, SuiteError, Trial

Asked = tuple[Configuration, optuna.Study, optuna.Trial, Trial | Row]


def runs_side_by_side(executor: Executor | None) -> bool:
    """Whether ``executor`` runs several trials at once (not the local one, one by one)."""
    return executor is not None and not isinstance(executor, LocalExecutor)


def check_executor(suite: Suite, executor: Executor | None) -> None:
    """A pruner with an executor that runs trials elsewhere: a ``SuiteError``."""
    search = suite.spec.search
    if search is not None and search.pruner != "none" and runs_side_by_side(executor):
        raise SuiteError(
            f"{suite.path}: search.pruner: needs the local executor (it hears each epoch of"
            " training in this process); drop the pruner or --executor"
        )


def search_in_rounds(search: Search, executor: Executor, slots: int) -> list[Tuned]:
    """Every configuration's study, run to its budget in rounds of ``slots`` trials at most."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    search.folder.mkdir(parents=True, exist_ok=True)
    studies = {}
    for configuration in configurations(search.suite):
        if configuration.dimensions:
            studies[configuration.study_name] = (configuration, *search.study(configuration))
    with observed(search.observers, search.suite, search.folder):
        while active := [one for one in studies.values() if not search.is_spent(*one[1:])]:
            share = max(1, slots // len(active))
            asked = [
                (configuration, study, trial, search.candidate(trial, configuration))
                for configuration, study, limit in active
                for trial in _ask(study, limit, share)
            ]
            _run_and_tell(search, asked, executor)
    tuned = []
    for configuration in configurations(search.suite):
        if configuration.study_name in studies:
            tuned.append(search.result(studies[configuration.study_name][1], configuration))
        else:
            tuned.append(untuned(configuration))
    return tuned


def _ask(study: optuna.Study, limit: int | None, share: int) -> list[optuna.Trial]:
    """Up to ``share`` new trials of ``study``, no more than its budget in trials has left (a
    budget in seconds: one, as the time of the next is not known)."""
    room = 1 if limit is None else min(share, limit - len(counted(study)))
    return [study.ask() for _ in range(max(0, room))]


def _run_and_tell(search: Search, asked: list[Asked], executor: Executor) -> None:
    """Run the asked trials as one batch per validation view, and tell each study its result."""
    start = time.perf_counter()
    trials = [candidate for *_, candidate in asked if isinstance(candidate, Trial)]
    rows: dict[str, Row] = {}
    for fraction, group in _by_fraction(trials):
        view = ValidationData(search.cache, fraction, search.section.trial_seed)
        unique = list({trial.id: trial for trial in group}.values())  # a grid may ask twice
        suite = Suite(search.suite.path, search.spec, unique)
        run_trials(
            suite,
            search.plugins,
            output=search.folder,
            device=str(search.device),
            cache=view,
            executor=executor,
            observers=trials_only(search.observers),
        )
        rows |= _rows_of(search, unique)
    spent = (time.perf_counter() - start) / max(1, len(asked))  # a share of the round's time
    for configuration, study, trial, candidate in asked:
        row = rows.get(candidate.id) if isinstance(candidate, Trial) else candidate
        row = row or {"status": "failed", "reason": "no row", "trial_id": ""}
        try:
            study.tell(trial, search.record(trial, configuration, row, spent))
        except SearchTrialFailed:
            study.tell(trial, state=TrialState.FAIL)


def _by_fraction(trials: Iterable[Trial]) -> list[tuple[float, list[Trial]]]:
    groups: dict[float, list[Trial]] = {}
    for trial in trials:
        groups.setdefault(float(trial.train.get("val_fraction") or 0.0), []).append(trial)
    return list(groups.items())


def _rows_of(search: Search, trials: list[Trial]) -> dict[str, Row]:
    """The search folder's rows of ``trials``, by trial id (run now, or finished before)."""
    table = read_results(search.folder)
    wanted = {trial.id for trial in trials}
    found = table[table["trial_id"].isin(wanted)].to_dict("records")
    return {row["trial_id"]: {k: v for k, v in row.items() if not is_missing(v)} for row in found}
