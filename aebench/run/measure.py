"""Measuring a trained trial: every metric in its own guard, NaN with a reason where one cannot,
and a note on every value that its column's declaration says not to trust."""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from aebench.contract.checks import check_metric_values
from aebench.contract.columns import Column
from aebench.contract.data import Data
from aebench.contract.metric import MetricContext
from aebench.contract.model import LatentVariableModel
from aebench.plugins.blame import culprit
from aebench.plugins.manager import Plugins
from aebench.plugins.registry import Entry
from aebench.run import stopping
from aebench.run.observing import Row
from aebench.run.suite import Trial

if TYPE_CHECKING:
    pass

log = logging.getLogger("aebench")


PEAK_MEMORY_UNMEASURED = "peak memory is measured on CUDA devices only"

# The columns training writes: a kept model evaluated again keeps them from its first run.
TRAINING_COLUMNS = (
    *("train_s", "train_samples_per_s", "final_loss", "peak_mem_mb", "warnings"),
    *("stopped_epoch", "best_epoch", "best_val_loss"),
)


def measure_all(
    trial: Trial,
    plugins: Plugins,
    model: nn.Module,
    data: Data,
    device: torch.device,
    training: Row,
    tracebacks: list[str] | None = None,
) -> Row:
    """Every metric of the trial on the trained ``model``: their columns, ``eval_s``, status ok.

    A metric that raises, or returns what it does not declare, gets NaN columns and an entry in
    ``metric_errors`` naming the plugin whose code raised: the metric, or the model or dataset
    whose method it was calling (``blame.culprit``, the innermost frame); the trial and the other
    metrics go on. Each such failure's traceback, headed by the same plugin, is appended to
    ``tracebacks`` (for ``aebench.log``). A value above its column's ``flag_above`` gets an entry
    in ``notes`` (``estimate_notes``)."""
    model.eval()
    context = MetricContext(
        model=model,
        data=data,
        settings=trial.eval,
        device=device,
        generator=torch.Generator(device=device).manual_seed(trial.seed + 1),
        training={k: training[k] for k in ("train_s", "train_samples_per_s", "peak_mem_mb")},
    )
    row: Row = likelihood_protocol(model, data)
    reasons: dict[str, str] = {}  # metric -> why its columns are NaN
    errors: list[str] = []  # metrics that broke: one entry each, naming the plugin
    declared: list[Column] = []  # the measured columns, for their flags
    # Who else's code a metric runs: the model's methods and the dataset's (render, log_density).
    others = [plugins.models.get(trial.model.plugin), plugins.datasets.get(trial.dataset.plugin)]
    start = time.perf_counter()
    for name in trial.eval["metrics"]:
        stopping.check()  # SIGTERM, Ctrl-C or the trial's time limit, between metrics
        entry = plugins.metrics.get(name)
        declared += entry.factory.columns
        try:  # one broken metric costs its own columns, not the trial and the other metrics
            values, reason = measure(entry, context, trial.eval["params"].get(name, {}))
        except Exception as exc:
            values, reason = dict.fromkeys(entry.factory.column_names, math.nan), ""
            who = metric_culprit(exc, entry, others)
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            errors.append(f"{who}: {type(exc).__name__}: {message}")
            if tracebacks is not None:
                tracebacks.append(f"{who}:\n{traceback.format_exc()}")
        row |= values
        if reason:
            reasons[name] = reason
    stopping.check()  # a trial past its limit is failed, even if only its last metric ran over
    row["eval_s"] = time.perf_counter() - start
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


def nan_reasons(reasons: dict[str, str]) -> str:
    """``"metric_a, metric_b: why; metric_c: why"``: metrics sharing a reason share its entry."""
    by_reason: dict[str, list[str]] = {}
    for metric, reason in reasons.items():
        by_reason.setdefault(reason, []).append(metric)
    return "; ".join(f"{', '.join(metrics)}: {reason}" for reason, metrics in by_reason.items())


def measure(entry: Entry, context: MetricContext, params: dict[str, Any]) -> tuple[Row, str]:
    """One metric's columns and why they are NaN (empty when measured): NaN where it does not
    apply, else its values, checked against the columns it declares (a ``ContractError``
    otherwise)."""
    with torch.no_grad():
        measurement = entry.factory.measure(context, **params)
    return check_metric_values(entry.factory, measurement.values), measurement.reason
