"""Fair tuning: every configuration searched with the same budget, on validation, by Optuna.

A configuration is a dataset, a model, a regularizer and a grid point, without its seed. Each has
an Optuna study in ``<output>/search.db`` (SQLite), named by what it tunes, so that a killed
search resumes where it stopped and a finished one is not repeated: the trials it holds
(complete, pruned or failed) count against the budget. Each search trial is an aebench trial
with the sampled parameters, at a seed of the search's own (``[search] trial_seed``, none of the
suite's), run by the ordinary runner into
``<output>/search/`` and kept there like any trial. It never sees the test split: its data's test
split is the validation split (its own, or the ``[train] val_fraction`` held out of training),
so the objective's metric and the health checks measure validation. A trial that fails or
diverges is a failed Optuna trial; one the pruner stops (on each epoch's validation loss,
``aebench.run.epoch_reports``) a pruned one: never fatal.

Then each configuration's best parameters are trained on every seed and measured on test: the
leaderboard, whose rows say how the search went (``search_trials``, ``search_budget_s``,
``search_best_value``, and a warning when a best value lies on an edge of its range). Each of its
seeds is a fresh sample: when search trials trained at the suite's first seed, that seed's row was
the winning search trial trained again (its best_val_loss equal to the search's best value to the
last digit, in 6 configurations of 6 on ``benchmarks/tuned.toml``), its luck picked, not drawn.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from aebench.contract.columns import SEARCH_PARAMS
from aebench.contract.data import Data
from aebench.plugins.manager import Plugins
from aebench.results.table import read_results
from aebench.run import epoch_reports
from aebench.run.data import DataCache
from aebench.run.loop import Registered, run_trials
from aebench.run.observing import Row
from aebench.run.search_checks import direction, objective_metric
from aebench.run.search_configurations import Configuration, configurations
from aebench.run.search_observers import observed, trials_only
from aebench.run.search_section import SearchSection
from aebench.run.suite import Component, Suite, Trial
from aebench.run.validation import hold_out

FOLDER = "search"  # the search trials' results folder, inside the suite's
DATABASE = "search.db"  # the studies, beside it
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def storage_url(output: Path) -> str:
    return f"sqlite:///{(Path(output) / DATABASE).resolve()}"


@dataclass
class Tuned:
    """What one configuration's search found."""

    configuration: Configuration
    best: dict[str, Any]  # the best parameters, decoded (empty: the defaults)
    trials: int  # search trials counted against the budget
    spent_s: float  # seconds they took
    best_value: float  # the objective's best value on validation (NaN: none succeeded)
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``digits/vae/none``: the configuration's plugins."""
        base = self.configuration.base
        return f"{base.dataset.plugin}/{base.model.plugin}/{base.regularizer.plugin}"

    def columns(self) -> Row:
        return {
            "search_trials": self.trials,
            "search_budget_s": round(self.spent_s, 3),
            "search_best_value": self.best_value,
            # which of its parameter columns the search chose (``aebench compare`` matches a
            # tuned configuration on the others)
            SEARCH_PARAMS: ",".join(sorted(self.configuration.dimensions)),
        }


@dataclass(frozen=True)
class ValidationView:
    """``ValidationData`` over a cache, as a worker process of an executor builds it."""

    fraction: float
    seed: int

    def __call__(self, cache: DataCache) -> DataCache:
        return ValidationData(cache, self.fraction, self.seed)


class ValidationData(DataCache):
    """The data a search trial sees: the dataset with its test split replaced by the
    validation split it is tuned on, so that nothing in the trial can read the test split."""

    def __init__(self, inner: DataCache, fraction: float, seed: int) -> None:
        super().__init__(inner.plugins)
        self._inner, self._fraction, self._seed = inner, fraction, seed
        self._views: dict[int, Data] = {}

    def for_workers(self) -> ValidationView:
        return ValidationView(self._fraction, self._seed)

    def get(self, dataset: Component, device: torch.device) -> Data:
        data = self._inner.get(dataset, device)
        if id(data) not in self._views:
            if self._fraction:  # the same samples the trial holds out (same fraction and seed)
                val = hold_out(
                    data.train, self._fraction, seed=self._seed, transform=data.batch_transform
                )[1]
            else:
                assert data.val is not None, "checked before the search (check_search_data)"
                val = data.val
            self._views[id(data)] = replace(data, test=val)
        return self._views[id(data)]


class Search:
    """The studies of one suite's configurations, run one after another."""

    def __init__(
        self,
        suite: Suite,
        plugins: Plugins,
        output: Path,
        device: torch.device,
        cache: DataCache,
        observers: Sequence[Registered] = (),  # those that hear search trials (search_observers)
    ) -> None:
        assert suite.spec.search is not None
        self.observers = list(observers)
        self.suite, self.plugins, self.device, self.cache = suite, plugins, device, cache
        self.section: SearchSection = suite.spec.search
        self.folder = Path(output) / FOLDER
        self.storage = storage_url(output)
        metric = objective_metric(suite, plugins)
        self.direction = direction(suite, plugins)
        # Search trials run here, in this process (they hear the pruner), keeping no weights.
        settings = suite.spec.suite.model_copy(update={"isolate": False, "keep_models": False})
        self.spec = suite.spec.model_copy(update={"suite": settings})
        self.metric = metric

    def evaluation(self, base: Trial) -> dict[str, Any]:
        """The search trials' metrics: only the objective's, if it is a metric's column."""
        if self.metric is None:
            return {"metrics": [], "params": {}}
        params = base.eval["params"].get(self.metric)
        if params is None:
            schema = self.plugins.metrics.get(self.metric).params
            params = schema.model_validate({}).model_dump()
        return {"metrics": [self.metric], "params": {self.metric: params} if params else {}}

    def run(self) -> list[Tuned]:
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial is said here, once
        self.folder.mkdir(parents=True, exist_ok=True)  # and the output folder, for the database
        with observed(self.observers, self.suite, self.folder):
            return [self.tune(configuration) for configuration in configurations(self.suite)]

    def tune(self, configuration: Configuration) -> Tuned:
        """The configuration's study, run until its budget is spent (resumed where it stopped)."""
        if not configuration.dimensions:
            return untuned(configuration)
        study, limit = self.study(configuration)
        while not self.is_spent(study, limit):
            study.optimize(
                lambda trial: self._one(trial, configuration),
                n_trials=1,
                catch=(SearchTrialFailed,),
            )
        return self.result(study, configuration)

    def study(self, configuration: Configuration) -> tuple[optuna.Study, int | None]:
        """The configuration's study (created, or loaded and recovered from a killed run) and its
        budget in trials (None: a budget in seconds)."""
        study = optuna.create_study(
            storage=self.storage,
            study_name=configuration.study_name,
            direction=self.direction,
            sampler=self._sampler(configuration),
            pruner=self._pruner(),
            load_if_exists=True,
        )
        _recover(study)
        limit = self.section.budget_trials
        if self.section.sampler == "grid":  # a grid smaller than the budget is searched once
            size = math.prod(len(d.grid() or []) for d in configuration.dimensions.values())
            limit = size if limit is None else min(limit, size)
        return study, limit

    def is_spent(self, study: optuna.Study, limit: int | None) -> bool:
        trials = counted(study)
        if limit is not None and len(trials) >= limit:
            return True
        budget = self.section.budget_s
        return (
            budget is not None and sum(t.user_attrs.get("spent_s", 0.0) for t in trials) >= budget
        )

    def _sampler(self, configuration: Configuration) -> optuna.samplers.BaseSampler:
        seed = self.section.seed
        if self.section.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if self.section.sampler == "grid":
            grid = {k: d.grid() or [] for k, d in configuration.dimensions.items()}
            return optuna.samplers.GridSampler(grid, seed=seed)
        return optuna.samplers.TPESampler(seed=seed)

    def _pruner(self) -> optuna.pruners.BasePruner:
        if self.section.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
        if self.section.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=1)
        return optuna.pruners.NopPruner()

    def _one(self, trial: optuna.Trial, configuration: Configuration) -> float:
        """Train one search trial (Optuna's objective): its objective's value; ``TrialPruned``
        where the pruner stopped it, ``SearchTrialFailed`` where it failed or diverged."""
        heard: list[int] = []
        stopped: list[int] = []  # the epoch the pruner stopped it after
        pruning = self.section.pruner != "none"

        # The pruner reads reports as the study's direction: a loss (lower is better) is
        # reported negated where the study maximizes, or the best trials were the ones cut.
        sign = -1.0 if self.direction == "maximize" else 1.0

        def hear(epoch: int, val_loss: float) -> None:
            heard.append(epoch)
            if pruning and math.isfinite(val_loss):
                trial.report(sign * val_loss, epoch)
                if trial.should_prune():
                    stopped.append(epoch)
                    raise epoch_reports.StopTrial(f"pruned after epoch {epoch}")

        start = time.perf_counter()
        candidate = self.candidate(trial, configuration)
        if isinstance(candidate, Trial):
            with epoch_reports.listening(hear):
                row = self._train(candidate)
        else:
            row = candidate
        spent = time.perf_counter() - start
        return self.record(trial, configuration, row, spent, heard, stopped)

    def candidate(self, trial: optuna.Trial, configuration: Configuration) -> Trial | Row:
        """The aebench trial of Optuna's ``trial`` (its parameters drawn), or the failed row
        of one whose parameters its plugin refuses."""
        params = {
            key: dimension.decode(suggest(trial, key, dimension.distribution))
            for key, dimension in configuration.dimensions.items()
        }
        try:
            return configuration.trial(
                params,
                self.plugins,
                self.evaluation(configuration.base),
                configuration.section.trial_seed,
            )
        except ValueError as exc:  # a pydantic ValidationError too: a value its plugin refuses
            return {"status": "failed", "reason": str(exc).splitlines()[0], "trial_id": ""}

    def record(
        self,
        trial: optuna.Trial,
        configuration: Configuration,
        row: Row,
        spent: float,
        heard: Sequence[int] = (),
        stopped: Sequence[int] = (),
    ) -> float:
        """The objective's value of a search trial's ``row`` (said on stderr, kept with the
        trial); ``TrialPruned`` where the pruner stopped it (after epoch ``stopped[0]``),
        ``SearchTrialFailed`` where it failed or diverged."""
        pruned = bool(stopped) and row["status"] == "failed"
        status = "pruned" if pruned else str(row["status"])
        epochs = max(heard or [0])
        if not pruned and _finite(row.get("stopped_epoch")):
            epochs = max(epochs, int(row["stopped_epoch"]))
        value = row.get(self.section.objective)
        objective = self.section.objective
        shown = f"{objective} {value:.6g}" if status == "ok" and _finite(value) else status
        print(
            f"aebench: search {configuration.study_name.rsplit('/', 1)[0]}: trial"
            f" {trial.number + 1}: {shown} ({spent:.1f} s)",
            file=sys.stderr,
        )
        attributes = {"spent_s": spent, "epochs": epochs, "status": status}
        for key, attribute in (attributes | {"trial_id": str(row.get("trial_id", ""))}).items():
            trial.set_user_attr(key, attribute)
        if pruned:
            raise optuna.TrialPruned(f"pruned after epoch {stopped[0]}")
        if status != "ok" or not _finite(value):
            reason = str(row.get("reason") or f"{objective} is NaN")
            trial.set_user_attr("reason", reason)
            raise SearchTrialFailed(reason)
        return float(value)  # type: ignore[arg-type]

    def _train(self, trial: Trial) -> Row:
        """One search trial through the ordinary runner, into the search folder; a trial
        already finished there (the same parameters sampled again) is read back."""
        seed, fraction = trial.seed, float(trial.train.get("val_fraction") or 0.0)
        view = ValidationData(self.cache, fraction, seed)
        suite = Suite(self.suite.path, self.spec, [trial])
        run = run_trials(
            suite,
            self.plugins,
            output=self.folder,
            device=str(self.device),
            cache=view,
            observers=trials_only(self.observers),
        )
        if run.rows:
            return run.rows[-1]
        table = read_results(self.folder)
        rows = table[table["trial_id"] == trial.id].to_dict("records")
        return rows[-1] if rows else {"status": "failed", "reason": "no row", "trial_id": trial.id}

    def result(self, study: optuna.Study, configuration: Configuration) -> Tuned:
        trials = counted(study)
        spent = sum(t.user_attrs.get("spent_s", 0.0) for t in trials)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            warning = "search: no search trial succeeded; trained with the defaults"
            return Tuned(configuration, {}, len(trials), spent, math.nan, [warning])
        best = study.best_trial
        params = {k: configuration.dimensions[k].decode(v) for k, v in best.params.items()}
        warnings = []
        for key, value in sorted(params.items()):
            if edge := configuration.dimensions[key].on_edge(value):
                warnings.append(f"search: the best {key} = {value!r} is {edge}")
        return Tuned(
            configuration,
            params,
            len(trials),
            spent,
            math.nan if best.value is None else float(best.value),
            warnings,
        )


def untuned(configuration: Configuration) -> Tuned:
    warning = "not tuned: nothing is searched in this configuration"
    return Tuned(configuration, {}, 0, 0.0, math.nan, [warning])


class SearchTrialFailed(Exception):
    """A search trial that failed or diverged: a failed Optuna trial, and the search goes on."""


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """``trial``'s value of ``name`` drawn from ``distribution`` (Optuna's own suggest calls)."""
    d = distribution
    if isinstance(d, FloatDistribution):
        return trial.suggest_float(name, d.low, d.high, log=d.log, step=d.step)
    if isinstance(d, IntDistribution):
        return trial.suggest_int(name, d.low, d.high, log=d.log, step=d.step)
    assert isinstance(d, CategoricalDistribution)
    return trial.suggest_categorical(name, d.choices)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def counted(study: optuna.Study) -> list[FrozenTrial]:
    """The trials counted against the budget: complete, pruned, and failed ones this search told
    (not those a killed run left running: ``_recover`` runs them again)."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=COUNTED)
        if t.state != TrialState.FAIL or "status" in t.user_attrs
    ]


def _recover(study: optuna.Study) -> None:
    """Trials a killed search left running: closed as failed (uncounted) and queued again with
    the same parameters, so that each resumes from its checkpoint in the search folder."""
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(stale.number, state=TrialState.FAIL, skip_if_finished=True)
        study.enqueue_trial(stale.params, skip_if_exists=True)
