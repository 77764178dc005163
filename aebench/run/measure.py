"""Measuring a trained trial: every metric in its own guard, NaN with a reason where one cannot,
and a note on every value that its column's declaration says not to trust."""

from __future__ import annotations

import json
import logging
import math
import time
import traceback
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from aebench.contract.checks import check_metric_reasons, check_metric_values
from aebench.contract.columns import (
    STACK_GROUP,
    START_DIGEST,
    TEST_DATA,
    Column,
    metric_time_column,
)
from aebench.contract.data import Data
from aebench.contract.metric import Measurement, MetricContext
from aebench.contract.model import LatentVariableModel
from aebench.plugins.blame import culprit
from aebench.plugins.manager import Plugins
from aebench.plugins.registry import Entry
from aebench.results.rows import canonical, flatten, is_missing
from aebench.run import stopping
from aebench.run.data import digest_of_test_split
from aebench.run.nan_reasons import column_reasons, nan_reasons, parse_nan_reasons
from aebench.run.observing import Row
from aebench.run.suite import Trial
from aebench.run.threads import adjust as adjust_threads

log = logging.getLogger("aebench")


PEAK_MEMORY_UNMEASURED = "peak memory is measured on CUDA devices only"

# The columns training writes: a kept model evaluated again keeps them from its first run.
TRAINING_COLUMNS = (
    *("train_s", "train_samples_per_s", "final_loss", "peak_mem_mb", "warnings"),
    *("stopped_epoch", "best_epoch", "best_val_loss", START_DIGEST, STACK_GROUP),
    *("threads", "device"),  # what it trained on, which its speed is of
)


@dataclass(frozen=True)
class Kept:
    """A metric's earlier columns (its time column among them) and why those that are NaN are."""

    columns: Row
    reasons: dict[str, str]
    test_data: str = ""  # the test split they were measured on ("": a row older than the column)


# Trial id -> metric -> what ``measure_all`` keeps of it instead of measuring again, within
# ``keeping``.
_KEPT: ContextVar[Mapping[str, Mapping[str, Kept]] | None] = ContextVar("kept", default=None)


@contextmanager
def keeping(kept: Mapping[str, Mapping[str, Kept]]) -> Iterator[None]:
    """Within: ``measure_all`` gives these trials' metrics (trial id -> metric -> what is kept)
    their earlier values and reasons instead of measuring them again. A metric not named is
    measured. ``unchanged_metrics`` says which may be kept."""
    token = _KEPT.set(kept)
    try:
        yield
    finally:
        _KEPT.reset(token)


def unchanged_metrics(
    trial: Trial, earlier: Row, plugins: Plugins, again: Collection[str] = ()
) -> dict[str, Kept]:
    """Metric -> its columns in ``earlier`` (the trial's row in the table) and the reasons there
    for those that are NaN, for each metric of
    ``trial`` that need not be measured again on the same kept model: it was measured in that
    row with the same parameters (its ``eval.<metric>.*`` columns) and the same version of its
    distribution (``version.<distribution>``), did not fail there, has a value in one of its
    columns at least (an all-NaN metric is asked again, for its reason) and the user did not name
    it (``again``). A row with no record of a metric's version is of older code."""
    if earlier.get("status") != "ok":
        return {}
    before = earlier.get("eval.metrics")
    measured = json.loads(before) if isinstance(before, str) else []
    failed = str(earlier.get("metric_errors") or "")
    metrics = trial.eval["metrics"]
    declared = [c for name in metrics for c in plugins.metrics.get(name).factory.column_names]
    known = {*metrics, *declared, "peak_mem_mb"}  # what a reason may be keyed by
    reasons = parse_nan_reasons(str(earlier.get("nan_reasons") or ""), known)
    kept: dict[str, Kept] = {}
    for name in trial.eval["metrics"]:
        if name not in measured or name in again or f"metric {name!r}" in failed:
            continue
        entry = plugins.metrics.get(name)
        now = flatten(f"eval.{name}", trial.eval["params"].get(name, {}))
        then = {k: v for k, v in earlier.items() if k.startswith(f"eval.{name}.")}
        if {k: canonical(v) for k, v in now.items() if not is_missing(v)} != {
            k: canonical(v) for k, v in then.items() if not is_missing(v)
        }:
            continue
        if entry.distribution and earlier.get(f"version.{entry.distribution}") != entry.version:
            continue
        names = entry.factory.column_names
        if all(is_missing(earlier.get(column)) for column in names):
            continue
        columns = (*names, metric_time_column(name).name)
        values = {c: math.nan if is_missing(earlier.get(c)) else earlier[c] for c in columns}
        own = {c: values[c] for c in names}  # its time column has no reason to keep
        split = str(earlier.get(TEST_DATA) or "")
        kept[name] = Kept(values, column_reasons(own, reasons), split)
    return kept


def metric_context(
    trial: Trial, model: nn.Module, data: Data, device: torch.device, training: Row
) -> MetricContext:
    """The trial's metric context: its shared work (the test split's codes, ...) is computed once
    for the health checks and every metric; its generator is seeded from the trial's seed."""
    return MetricContext(
        model=model,
        data=data,
        settings=trial.eval,
        device=device,
        generator=torch.Generator(device=device).manual_seed(trial.seed + 1),
        training={k: training[k] for k in ("train_s", "train_samples_per_s", "peak_mem_mb")},
    )


def measure_all(
    trial: Trial,
    plugins: Plugins,
    model: nn.Module,
    data: Data,
    device: torch.device,
    training: Row,
    tracebacks: list[str] | None = None,
    context: MetricContext | None = None,
) -> Row:
    """Every metric of the trial on the trained ``model``: their columns, ``eval_s``, status ok.

    Each metric's wall time is its ``eval_s_<metric>`` column (``metric_time_column``; NaN for
    one that did not apply, whose reason its columns carry), and the version of the distribution
    it comes from a ``version.<distribution>`` column (what ``aebench evaluate`` compares to tell
    changed code). The metrics share the test split's encoding through the context
    (``MetricContext.codes()``): the first that asks pays for it. Within ``keeping``, a metric
    given earlier columns keeps them and is not measured; ``eval_s`` is then the time spent now
    plus the kept metrics' earlier times (the cost of the row).

    A metric that raises, or returns what it does not declare, gets NaN columns and an entry in
    ``metric_errors`` naming the plugin whose code raised: the metric, or the model or dataset
    whose method it was calling (``blame.culprit``, the innermost frame); the trial and the other
    metrics go on. Each such failure's traceback, headed by the same plugin, is appended to
    ``tracebacks`` (for ``aebench.log``). A value above its column's ``flag_above`` gets an entry
    in ``notes`` (``estimate_notes``). ``context``: the trial's (``metric_context``), where the
    caller has read its shared work already (the health checks); else one is made here."""
    model.eval()
    adjust_threads()  # "auto" threads for the load now, not the last epoch's (workers come, go)
    context = context or metric_context(trial, model, data, device, training)
    split = digest_of_test_split(data)
    row: Row = likelihood_protocol(model, data) | {TEST_DATA: split}
    reasons: dict[str, str] = {}  # metric, or one of its columns -> why it is NaN
    errors: list[str] = []  # metrics that broke: one entry each, naming the plugin
    declared: list[Column] = []  # the measured columns, for their flags
    # Who else's code a metric runs: the model's methods and the dataset's (render, log_density).
    others = [plugins.models.get(trial.model.plugin), plugins.datasets.get(trial.dataset.plugin)]
    kept = (_KEPT.get() or {}).get(trial.id, {})
    # columns of another test split (the dataset's code drew another) are measured again
    kept = {name: k for name, k in kept.items() if k.test_data in ("", split)}
    kept_s = 0.0  # the kept metrics' earlier times
    start = time.perf_counter()
    for name in trial.eval["metrics"]:
        stopping.check()  # SIGTERM, Ctrl-C or the trial's time limit, between metrics
        adjust_threads()
        entry = plugins.metrics.get(name)
        declared += entry.factory.columns
        if entry.distribution:
            row[f"version.{entry.distribution}"] = entry.version
        timed = metric_time_column(name).name
        if name in kept:
            row |= kept[name].columns
            reasons |= kept[name].reasons
            earlier_s = kept[name].columns.get(timed)
            kept_s += earlier_s if isinstance(earlier_s, int | float) and earlier_s >= 0 else 0.0
            continue
        began = time.perf_counter()
        try:  # one broken metric costs its own columns, not the trial and the other metrics
            measured = measure(entry, context, trial.eval["params"].get(name, {}))
            values, reason = measured.values, measured.reason
            if not reason:  # it measured: a NaN column has its own reason, or is said to lack one
                reasons |= column_reasons(values, measured.reasons)
        except Exception as exc:
            values, reason = dict.fromkeys(entry.factory.column_names, math.nan), ""
            who = metric_culprit(exc, entry, others)
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            errors.append(f"{who}: {type(exc).__name__}: {message}")
            if tracebacks is not None:
                tracebacks.append(f"{who}:\n{traceback.format_exc()}")
        row |= values
        row[timed] = time.perf_counter() - began
        if reason:
            reasons[name] = reason
            if all(is_missing(v) for v in values.values()):
                row[timed] = math.nan  # it did not apply: it has no cost to show, only its reason
    stopping.check()  # a trial past its limit is failed, even if only its last metric ran over
    row["eval_s"] = time.perf_counter() - start + kept_s
    peak = training.get("peak_mem_mb")
    if peak is None or math.isnan(peak):
        reasons["peak_mem_mb"] = PEAK_MEMORY_UNMEASURED
    row["nan_reasons"] = nan_reasons(reasons)
    row["metric_errors"] = "; ".join(errors)
    row["notes"] = estimate_notes(declared, row)
    row["status"] = "ok"
    return row


def metric_culprit(exc: BaseException, metric: Entry, others: list[Entry]) -> str:
    """``metric 'x' (pkg 1.0)``, or ``model 'y' (pkg 1.0), in metric 'x'`` where the innermost
    plugin frame of the traceback is the model's (or the dataset's) code that the metric called.
    An error raised by the core's own checks of the metric's result is the metric's."""
    who = culprit(exc, [metric, *others]) or metric
    return metric.origin if who is metric else f"{who.origin}, in metric {metric.name!r}"


def estimate_notes(columns: Iterable[Column], row: Row) -> str:
    """``"estimate_convergence 0.78 > 0.1; ..."``: every measured value above its column's
    declared ``flag_above``, in declaration order. They are notes on an estimate (an estimator
    that has not converged), not warnings about training: the report shows them apart."""
    notes = []
    for column in columns:
        value, limit = row.get(column.name), column.flag_above
        if limit is not None and isinstance(value, int | float) and value > limit:  # NaN: no
            notes.append(f"{column.name} {value:.3g} > {limit:g}")
    return "; ".join(notes)


def likelihood_protocol(model: nn.Module, data: Data) -> Row:
    """What a likelihood in this row is of: the model's p(x|z) and the data's binarisation.

    Rows of different protocols are not comparable (``aebench compare`` refuses them): a mass
    over {0, 1} of binarised digits is not a density of grey levels.
    """
    likelihood = ""
    if isinstance(model, LatentVariableModel):
        likelihood = getattr(model, "likelihood_name", None) or "unnamed"
    return {"likelihood": likelihood, "binarize": data.info.binarize or ""}


def measure(entry: Entry, context: MetricContext, params: dict[str, Any]) -> Measurement:
    """One metric's columns and why they are NaN: NaN where it does not apply, else its values
    and the reasons it gave, checked against the columns it declares (a ``ContractError``
    otherwise)."""
    with torch.no_grad():
        measurement = entry.factory.measure(context, **params)
    values = check_metric_values(entry.factory, measurement.values)
    reasons = check_metric_reasons(values, measurement.reasons)
    return Measurement(values, measurement.reason, reasons)


def costliest_metrics(rows: Iterable[Row], count: int = 3) -> list[tuple[str, float]]:
    """The ``count`` metrics that took longest over ``rows``, (name, seconds) costliest first,
    where the metrics took longer than training (their ``eval_s`` above ``train_s``, summed);
    else none: where measuring dominates a run, what it was spent on."""
    rows = list(rows)
    evaluation, training = (
        sum(_seconds(row.get(k)) for row in rows) for k in ("eval_s", "train_s")
    )
    if not evaluation > training:
        return []
    totals: dict[str, float] = {}
    for row in rows:
        names = row.get("eval.metrics")
        for name in json.loads(names) if isinstance(names, str) else []:
            spent = _seconds(row.get(metric_time_column(name).name))
            totals[name] = totals.get(name, 0.0) + spent
    return sorted(totals.items(), key=lambda item: -item[1])[:count]


def _seconds(value: Any) -> float:
    """A time column's value, 0 where it has none."""
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else 0.0
