"""``check_observer``: an observer factory taken through what real runs send it.

Kept apart from ``aebench.testing`` (which re-exports it) because a faithful run is long to stage:
an observer that only ever saw a clean ``ok`` row passes a kit and then fails every real trial on
NaN, on a skipped row or on a re-measure. So the check sends every kind of row the runner writes
(``aebench/run/trial.py``), writes the trial folders and the table as the loop does
(``aebench/run/loop.py``), and ends with a second run that measures a kept trial again, as
``aebench evaluate`` and a changed ``[eval]`` do (``aebench/measure_again.py``).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from aebench.contract.columns import declared
from aebench.contract.hookspecs import hookimpl
from aebench.contract.metric import Column, Metric, MetricContext
from aebench.contract.model import Regularizer
from aebench.plugins.manager import Plugins, load_plugins
from aebench.plugins.params import params_model
from aebench.results.table import record_row, settle, write_vocabulary
from aebench.results.trials import read_curves, trial_folder
from aebench.run.data import DataCache
from aebench.run.loop import keep_trial
from aebench.run.measure import TRAINING_COLUMNS
from aebench.run.observing import Row, SuiteObserver, SuiteRun, TrialOutcome
from aebench.run.suite import Suite, Trial, load_suite
from aebench.run.trial import base_row, kept_model
from aebench.testing_fixtures import _LinearAutoencoder, _metric_data

# What an observer must accept, in the words of docs/plugins.md ("Observers"), one per event sent.
EXPECTED = {
    "factory": "an observer factory must accept factory(suite, **settings) and return an"
    " aebench.SuiteObserver or None",
    "started": "an observer must accept the start of a run: suite_started(suite, output, trials)",
    "trial": "an observer must accept trial_started(trial) for every trial handed out",
    "ok": "an observer must accept an ok row with its outcome: curves, the trained model, the data",
    "nan": "an observer must accept a row with NaN in a metric column (its reason in the row's"
    " nan_reasons, a broken metric's in metric_errors)",
    "skipped": "an observer must accept a skipped row: a reason, no model, no curves",
    "failed": "an observer must accept a failed row: a reason, no model, the traceback in"
    " outcome.traceback",
    "interrupted": "an observer must accept the end of an interrupted run: suite_finished(run)"
    " with run.interrupted",
    "again": "an observer must accept a trial measured again from its kept weights (run.evaluated"
    " > 0): fresh metrics, the training columns of its first run, the model and curves read back",
    "finished": "an observer must accept the end of a run: suite_finished(run)",
}


def _expect(what: str, event: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Send one event; what it raises becomes an AssertionError saying what was expected (the
    observer's own error chained, with its traceback)."""
    try:
        return event(*args, **kwargs)
    except Exception as exc:
        raise AssertionError(f"{EXPECTED[what]}: {type(exc).__name__}: {exc}") from exc


def check_observer(
    factory: Callable[..., Any], suite: Suite | None = None, **settings: Any
) -> None:
    """An observer factory keeps the contract: ``factory(suite, **settings)`` (``settings``
    validated against its signature, as the core validates ``[observers.NAME]``) gives a
    ``SuiteObserver`` or None, and the observer takes what real runs send without raising.

    A first run: an ``ok`` trial (model, data, curves), an ``ok`` row with NaN metrics (a reason
    in ``nan_reasons``, a broken metric in ``metric_errors``), a ``skipped`` trial (no model), a
    ``failed`` trial (a reason, the traceback in the outcome), then the end of that run,
    interrupted. A second run, with a fresh observer from the factory: the ``ok`` trial measured
    again from its kept weights (``run.evaluated == 1``), its model and curves read back.
    Trial folders and the table are written between events, as the runner does.

    ``suite`` defaults to a one-trial suite of the check's own plugins (``_ObservedPlugins``), so
    that the check needs no installed plugin; a ``suite`` given runs on the installed plugins.
    Output goes to a temporary folder.
    """
    resolved = params_model("observer", factory, skip_first=True).model_validate(settings)
    settings = resolved.model_dump()
    with tempfile.TemporaryDirectory() as tmp:
        if suite is None:
            plugins = load_plugins(entry_points=False, extra=[_ObservedPlugins()])
            path = Path(tmp) / "suite.toml"
            path.write_text(_OBSERVED_SUITE)
            suite = load_suite(path, plugins)
        else:
            plugins = load_plugins()
        output = Path(tmp) / "results"
        output.mkdir()
        stage = _Stage(suite, plugins, output)
        observer = _expect("factory", factory, suite, **settings)
        if observer is None:
            return
        assert isinstance(observer, SuiteObserver), (
            f"{EXPECTED['factory']}: it returned {type(observer).__name__}"
        )
        kept, first = stage.first_run(observer)
        stage.run_again(_expect("factory", factory, suite, **settings), kept, first)


@dataclass
class _Stage:
    """The suite, plugins and folder of one check, and the rows sent to its observers."""

    suite: Suite
    plugins: Plugins
    output: Path

    def __post_init__(self) -> None:
        self.device = torch.device("cpu")
        self.cache = DataCache(self.plugins)
        first = self.suite.trials[0]
        # distinct trials (their ids hash the seed), so that no observer sees one id twice
        self.trials = [replace(first, seed=first.seed + k) for k in range(4)]
        # the metrics' declarations beside the table, as every run writes them (the report reads)
        write_vocabulary(self.output, declared({e.name: e.factory for e in self.plugins.metrics}))

    def metric_columns(self, trial: Trial) -> list[str]:
        metrics = [self.plugins.metrics.get(name).factory for name in trial.eval["metrics"]]
        return [column for metric in metrics for column in metric.column_names]

    def measured(self, trial: Trial, training: Row, value: float) -> Row:
        """A row as ``measure_all`` leaves it: every metric column at ``value``."""
        return (
            base_row(trial, self.plugins, self.device)
            | training
            | {"likelihood": "", "binarize": ""}
            | dict.fromkeys(self.metric_columns(trial), value)
            | {"eval_s": 0.01, "nan_reasons": "", "metric_errors": "", "notes": ""}
            | {"status": "ok"}
        )

    def finish(
        self, observer: SuiteObserver, what: str, trial: Trial, row: Row, outcome: TrialOutcome
    ) -> Row:
        """What the loop does with a trial: hand it out, then record its folder and its row, then
        tell observers it finished."""
        _expect("trial", observer.trial_started, trial)
        keep_trial(self.output, trial, self.suite, row, outcome, True, what != "again")
        record_row(self.output, row)
        _expect(what, observer.trial_finished, trial, row, outcome)
        return row

    def first_run(self, observer: SuiteObserver) -> tuple[Trial, Row]:
        """ok, NaN, skipped and failed trials, then an interrupted end; the ok trial (and its row)
        is kept."""
        ok, nan, skipped, failed = self.trials
        data = self.cache.get(ok.dataset, self.device)
        torch.manual_seed(ok.seed)
        model = self.plugins.models.get(ok.model.plugin).factory(data.info, **ok.model.params)
        curves = {"loss": [2.0, 1.0], "model_loss": [2.0, 1.0], "penalty": [0.0, 0.0]}
        training: Row = {
            "train_s": 0.1,
            "train_samples_per_s": 640.0,
            "final_loss": 1.0,
            "peak_mem_mb": math.nan,  # on the CPU, as every CPU row has it
            "stopped_epoch": 2,
            "best_epoch": math.nan,
            "best_val_loss": math.nan,
            "warnings": "",
        }
        nan_row = self.measured(nan, training, math.nan)
        metrics = list(nan.eval["metrics"])
        reasons = (
            [f"{', '.join(metrics[1:])}: needs a latent-variable model"] if metrics[1:] else []
        )
        reasons.append("peak_mem_mb: peak memory is measured on CUDA devices only")
        nan_row["nan_reasons"] = "; ".join(reasons)
        if metrics:  # the first broke: its columns NaN, the error in metric_errors
            nan_row["metric_errors"] = f"metric {metrics[0]!r} (kit): RuntimeError: boom"
        reason = "kl-sparsity (kit) declines: the code is not within [0, 1]"
        traceback = (
            'Traceback (most recent call last):\n  File "kit.py", line 1\nRuntimeError: boom'
        )
        sent = [
            ("ok", ok, self.measured(ok, training, 0.5), TrialOutcome(curves, model.eval(), data)),
            ("nan", nan, nan_row, TrialOutcome(curves, model, data)),
            ("skipped", skipped, self._ended(skipped, "skipped", reason), TrialOutcome(data=data)),
            (
                "failed",
                failed,
                self._ended(failed, "failed", "RuntimeError in model 'kit' (kit): boom"),
                TrialOutcome(data=data, traceback=traceback),
            ),
        ]
        _expect("started", observer.suite_started, self.suite, self.output, self.trials)
        rows = [self.finish(observer, *event) for event in sent]
        settle(self.output)  # the table is written before observers hear of the end
        _expect("interrupted", observer.suite_finished, SuiteRun(self.output, rows, 0, True))
        return ok, rows[0]

    def _ended(self, trial: Trial, status: str, reason: str) -> Row:
        return base_row(trial, self.plugins, self.device) | {"status": status, "reason": reason}

    def run_again(self, observer: SuiteObserver | None, kept: Trial, trained: Row) -> None:
        """A later run measuring the kept trial again: nothing trains; model and curves are read
        back from its folder, the row keeps its first run's training columns."""
        if observer is None:
            return
        model, data = kept_model(kept, self.plugins, self.device, self.cache, self.output)
        curves = read_curves(trial_folder(self.output, kept.id))
        training = {k: trained[k] for k in TRAINING_COLUMNS if k in trained}
        again = self.measured(kept, training, 0.25)
        _expect("started", observer.suite_started, self.suite, self.output, [kept])
        row = self.finish(observer, "again", kept, again, TrialOutcome(curves, model, data))
        settle(self.output)
        _expect("finished", observer.suite_finished, SuiteRun(self.output, [row], evaluated=1))


def _kit_score(context: MetricContext) -> dict[str, float]:
    """The mean code activation and its spread: a metric for the check's own suite."""
    code = context.model.encode(context.data.test.x)
    return {"kit_score": code.mean().item(), "kit_spread": code.std().item()}


KIT_SCORE = Metric(_kit_score, columns=[Column("kit_score", "higher"), Column("kit_spread")])


class _ObservedPlugins:
    """The dataset, model, regularizer and metric of ``check_observer``'s own suite, registered
    for the check only (``load_plugins(extra=...)``): the kit's coin-flip images, its linear
    autoencoder, the contract's do-nothing regularizer and a small metric of the code."""

    @hookimpl
    def aebench_register_datasets(self, register: Callable[..., None]) -> None:
        register("coin-flips", _metric_data)

    @hookimpl
    def aebench_register_models(self, register: Callable[..., None]) -> None:
        register("linear-autoencoder", _LinearAutoencoder)

    @hookimpl
    def aebench_register_regularizers(self, register: Callable[..., None]) -> None:
        register("unregularized", Regularizer)

    @hookimpl
    def aebench_register_metrics(self, register: Callable[..., None]) -> None:
        register("kit_score", KIT_SCORE)


_OBSERVED_SUITE = """
[suite]
name = "observed"
device = "cpu"

[[datasets]]
plugin = "coin-flips"
params = { labelled = true }

[[models]]
plugin = "linear-autoencoder"
params = { latent_dim = 2 }

[[regularizers]]
plugin = "unregularized"
"""
