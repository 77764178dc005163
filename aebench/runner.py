"""Runs trials: build dataset, model and regularizer from the registries, train, measure, record."""

from __future__ import annotations

import contextlib
import importlib.metadata
import itertools
import json
import logging
import math
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from aebench import stopping
from aebench.blame import failure_reason
from aebench.checkpoint import Checkpoints
from aebench.checks import ContractError, check_first_batch, check_metric_values
from aebench.columns import declared
from aebench.contracts import Data, DataInfo, LatentVariableModel, MetricContext
from aebench.data import DataCache
from aebench.files import FolderError, cannot_write, write_atomically
from aebench.health import health_warnings
from aebench.lock import folder_lock
from aebench.observing import Row, SuiteObserver, SuiteRun, TrialOutcome
from aebench.optim import DEFAULTS as OPTIMIZER_SETTINGS
from aebench.plugins import Plugins
from aebench.registry import Entry
from aebench.results import SUITE_FILE, check_owner, flatten, record_row, settle, write_vocabulary
from aebench.suite import Suite, SuiteError, Trial
from aebench.threads import follow as follow_threads
from aebench.train import train_model
from aebench.trials import (
    CHECKPOINT,
    WEIGHTS,
    read_curves,
    read_weights,
    state_bytes,
    trial_folder,
    write_trial,
)
from aebench.validation import empty_split, hold_out

if TYPE_CHECKING:
    from aebench.executors import Executor

log = logging.getLogger("aebench")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def base_row(trial: Trial, plugins: Plugins, device: torch.device) -> Row:
    """The columns every row has, whatever happened to the trial."""
    row: Row = {
        "trial_id": trial.id,
        "dataset": trial.dataset.plugin,
        "model": trial.model.plugin,
        "regularizer": trial.regularizer.plugin,
        "seed": trial.seed,
        "status": "",
        "reason": "",
        "warnings": "",
    }
    row |= flatten("dataset", trial.dataset.params)
    row |= flatten("model", trial.model.params)
    row |= flatten("regularizer", trial.regularizer.params)
    row |= flatten("train", trial.train)
    row["eval_id"] = trial.eval_id
    row |= flatten("eval", {"metrics": trial.eval["metrics"]})
    for metric, params in trial.eval["params"].items():
        row |= flatten(f"eval.{metric}", params)
    row["device"] = str(device)
    row["threads"] = torch.get_num_threads()  # throughput depends on it
    row["version.aebench"] = _version("aebench")
    row["version.torch"] = torch.__version__
    entries = [
        plugins.datasets.get(trial.dataset.plugin),
        plugins.models.get(trial.model.plugin),
        plugins.regularizers.get(trial.regularizer.plugin),
    ]
    for entry in entries:
        if entry.distribution:
            row[f"version.{entry.distribution}"] = entry.version
    return row


def failed_row(trial: Trial, plugins: Plugins, device: torch.device, reason: str) -> Row:
    """The row of a trial that died where it ran (a child process, a Dask worker)."""
    return base_row(trial, plugins, device) | {"status": "failed", "reason": reason}


def describe_plugin(plugins: Plugins, kind: str, name: str) -> str:
    """``model 'vae' (aebench-plugin-example 0.1.0)``: who to blame for a broken contract."""
    return plugins.registries[f"{kind}s"].get(name).origin


def run_trial(
    trial: Trial,
    plugins: Plugins,
    device: torch.device,
    cache: DataCache,
    output: Path | None = None,
    timeout: float | None = None,
) -> tuple[Row, TrialOutcome]:
    """Train and measure one trial; every outcome, failures included, becomes one row.

    A failure's reason names the plugin whose code raised, read from the traceback. With an
    ``output`` folder, training saves checkpoints in the trial's folder there and resumes from
    the last one. A trial still running after ``timeout`` seconds is failed ("timed out after
    N s") at the next training step or metric: a cooperative limit (``aebench.stopping``).
    """
    row = base_row(trial, plugins, device)
    outcome = TrialOutcome()
    suspects = _suspects(trial, plugins)  # the plugin running now is moved to the front
    checkpoints = None
    if output is not None:
        path = trial_folder(output, trial.id) / CHECKPOINT
        checkpoints = Checkpoints(path, trial.id, trial.train.get("checkpoint_every"))
    try:
        with stopping.deadline(timeout):
            row |= _train_and_measure(trial, plugins, device, cache, outcome, suspects, checkpoints)
    except stopping.TrialTimeout as exc:  # no plugin to blame, no traceback worth keeping
        row["status"], row["reason"] = "failed", str(exc)
    except Exception as exc:  # a failing trial is recorded; the suite goes on
        row["status"] = "failed"
        row["reason"] = failure_reason(exc, suspects)
        outcome.traceback = traceback.format_exc()
    return row, outcome


def _suspects(trial: Trial, plugins: Plugins) -> list[Entry]:
    entries = [
        plugins.datasets.get(trial.dataset.plugin),
        plugins.models.get(trial.model.plugin),
        plugins.regularizers.get(trial.regularizer.plugin),
    ]
    return entries  # metrics are not suspects: each runs in its own guard (``measure_all``)


def _now_running(suspects: list[Entry], entry: Entry) -> None:
    suspects.remove(entry)
    suspects.insert(0, entry)


def _train_and_measure(
    trial: Trial,
    plugins: Plugins,
    device: torch.device,
    cache: DataCache,
    outcome: TrialOutcome,
    suspects: list[Entry],
    checkpoints: Checkpoints | None,
) -> Row:
    data = outcome.data = cache.get(trial.dataset, device)
    torch.manual_seed(trial.seed)  # the model's initial weights
    model_entry = plugins.models.get(trial.model.plugin)
    _now_running(suspects, model_entry)
    if reason := _wrong_kind(model_entry, data.info):
        return {"status": "skipped", "reason": reason}
    model = model_entry.factory(data.info, **trial.model.params).to(device)
    regularizer = plugins.regularizers.get(trial.regularizer.plugin).factory(
        **trial.regularizer.params
    )
    reason = regularizer.decline(model, data.info)
    if reason:
        return {"status": "skipped", "reason": reason}

    broken = check_first_batch(
        model, regularizer, data.info, data.train.x[: trial.train["batch_size"]]
    )
    if broken:
        kind, error = broken
        component = trial.model if kind == "model" else trial.regularizer
        raise ContractError(f"{describe_plugin(plugins, kind, component.plugin)}: {error}")

    generator = torch.Generator(device=device).manual_seed(trial.seed)
    train = {k: trial.train[k] for k in ("epochs", "batch_size", "lr", "precision", "compile")}
    fraction = trial.train.get("val_fraction", 0.0)
    training, val = data, data.val
    if fraction:  # held out of the training split: the rest trains
        rest, val = hold_out(data.train, fraction, seed=trial.seed)
        training = replace(data, train=rest, val=val)
    if hasattr(model, "fit_before_training"):  # a start fitted to the data (an output bias)
        with torch.no_grad():
            model.fit_before_training(training.train.x)
    result = train_model(
        model,
        regularizer,
        training,
        generator=generator,
        checkpoints=checkpoints,
        optimizer={k: trial.train[k] for k in OPTIMIZER_SETTINGS if k in trial.train},
        schedule=trial.train.get("schedule"),
        clip_norm=trial.train.get("clip_norm"),
        val=val,
        early_stopping=trial.train.get("early_stopping"),
        restore_best=trial.train.get("restore_best", False),
        anneal=trial.train.get("anneal"),
        **train,
    )
    outcome.curves, outcome.resumed_after = result.curves, result.resumed_after
    row: Row = {
        "train_s": result.train_s,
        "train_samples_per_s": result.samples_per_s,
        "final_loss": result.curves["loss"][-1],
        "peak_mem_mb": result.peak_mem_mb,
        "stopped_epoch": result.stopped_epoch,
        "best_epoch": result.best_epoch if result.best_epoch is not None else math.nan,
        "best_val_loss": result.best_val_loss,
    }
    if result.diverged_at is not None:
        row |= {"status": "diverged", "reason": f"loss is not finite at epoch {result.diverged_at}"}
        return row

    outcome.model = model
    model.eval()
    row["warnings"] = "; ".join(health_warnings(model, data, result.curves))
    return row | measure_all(trial, plugins, model, data, device, row)


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
) -> Row:
    """Every metric of the trial on the trained ``model``: their columns, ``eval_s``, status ok.

    A metric that raises, or returns what it does not declare, gets NaN columns and an entry in
    ``metric_errors`` naming it and its plugin; the trial and the other metrics go on."""
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
    start = time.perf_counter()
    for name in trial.eval["metrics"]:
        stopping.check()  # SIGTERM, Ctrl-C or the trial's time limit, between metrics
        entry = plugins.metrics.get(name)
        try:  # one broken metric costs its own columns, not the trial and the other metrics
            values, reason = measure(entry, context, trial.eval["params"].get(name, {}))
        except Exception as exc:
            values, reason = dict.fromkeys(entry.factory.column_names, math.nan), ""
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            errors.append(f"{entry.origin}: {type(exc).__name__}: {message}")
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
    row["status"] = "ok"
    return row


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


def kept_model(
    trial: Trial, plugins: Plugins, device: torch.device, cache: DataCache, output: Path
) -> tuple[nn.Module, Data]:
    """The trial's model as it was trained: built from the registry, kept weights loaded."""
    data = cache.get(trial.dataset, device)
    model = plugins.models.get(trial.model.plugin).factory(data.info, **trial.model.params)
    model.to(device).load_state_dict(read_weights(trial_folder(output, trial.id), device))
    return model.eval(), data


def evaluate_trial(
    trial: Trial,
    trained: Row,
    plugins: Plugins,
    device: torch.device,
    cache: DataCache,
    output: Path,
) -> tuple[Row, TrialOutcome]:
    """Measure a kept model again with the trial's (new) evaluation settings; nothing trains.

    The row keeps what training measured (``trained``, the trial's earlier row) and has every
    metric afresh; an earlier metric that is no longer selected is gone from it.
    """
    row = base_row(trial, plugins, device) | {
        k: trained[k] for k in TRAINING_COLUMNS if k in trained
    }
    outcome = TrialOutcome(curves=read_curves(trial_folder(output, trial.id)))
    suspects = _suspects(trial, plugins)
    try:
        model, data = kept_model(trial, plugins, device, cache, output)
        outcome.model, outcome.data = model, data
        row |= measure_all(trial, plugins, model, data, device, row)
    except Exception as exc:  # a kept model that cannot be measured: retrained next time
        row["status"] = "failed"
        row["reason"] = failure_reason(exc, suspects)
        outcome.traceback = traceback.format_exc()
    return row, outcome


def measure(entry: Entry, context: MetricContext, params: dict[str, Any]) -> tuple[Row, str]:
    """One metric's columns and why they are NaN (empty when measured): NaN where it does not
    apply, else its values, checked against the columns it declares (a ``ContractError``
    otherwise)."""
    with torch.no_grad():
        measurement = entry.factory.measure(context, **params)
    return check_metric_values(entry.factory, measurement.values), measurement.reason


def load_datasets(suite: Suite, plugins: Plugins, device: torch.device) -> DataCache:
    """Every dataset of the suite, loaded before anything trains: a dataset that cannot be loaded
    (missing files, say) is a ``SuiteError`` naming its place in the file."""
    cache = DataCache(plugins)
    for component in {t.dataset.source: t.dataset for t in suite.trials}.values():
        try:
            data = cache.get(component, device)
        except Exception as exc:
            raise SuiteError(
                f"{suite.path}: {component.source}: cannot load dataset {component.plugin!r}: {exc}"
            ) from None
        for trial in suite.trials:
            if trial.dataset.source == component.source:
                _check_validation(suite, trial, data)
    return cache


def _check_validation(suite: Suite, trial: Trial, data: Data) -> None:
    """A validation split that can be made, where the protocol needs one."""
    fraction = trial.train.get("val_fraction", 0.0)
    where = f"{suite.path}: train"
    if fraction and empty_split(len(data.train), fraction):
        raise SuiteError(
            f"{where}.val_fraction: {fraction} of {trial.dataset.plugin}'s"
            f" {len(data.train)} training samples leaves an empty split"
        )
    needs = [k for k in ("early_stopping", "restore_best") if trial.train.get(k)]
    if needs and not fraction and data.val is None:
        raise SuiteError(
            f"{where}.{needs[0]}: needs a validation split; set train.val_fraction"
            f" ({trial.dataset.plugin} has none of its own)"
        )


def declined(suite: Suite, plugins: Plugins, cache: DataCache, device: torch.device) -> dict:
    """Trials that will be skipped, found before anything trains: trial id -> the reason.

    A model that does not take the data's kind, or a regularizer that declines the model, is
    known from the model's class and a model built on the meta device (no memory, no compute).
    A model that cannot be built that way is left to be checked when its trial runs."""
    reasons: dict[str, str] = {}
    found: dict[str, str | None] = {}  # by what decides it: dataset, model, regularizer
    for trial in suite.trials:
        model, regularizer = trial.model, trial.regularizer
        key = json.dumps(
            [
                trial.dataset.source,
                model.plugin,
                model.params,
                regularizer.plugin,
                regularizer.params,
            ],
            sort_keys=True,
            default=str,
        )
        if key not in found:
            found[key] = _decline(trial, plugins, cache.get(trial.dataset, device).info)
        if found[key]:
            reasons[trial.id] = found[key]
    return reasons


def _wrong_kind(entry: Entry, info: DataInfo) -> str | None:
    """Why a model does not take this data, from what its class declares: the kinds it takes
    (``data_kinds``), and whether it takes images only (``image_only``: conv networks)."""
    kinds = getattr(entry.factory, "data_kinds", None)
    if kinds is not None and info.kind not in kinds:
        return f"{entry.origin} takes {', '.join(kinds)} data, not {info.kind}"
    if getattr(entry.factory, "image_only", False) and len(info.shape) != 3:
        return f"{entry.origin} takes (C, H, W) images, not samples of shape {tuple(info.shape)}"
    return None


def _decline(trial: Trial, plugins: Plugins, info: DataInfo) -> str | None:
    entry = plugins.models.get(trial.model.plugin)
    if reason := _wrong_kind(entry, info):
        return reason
    try:
        with torch.device("meta"):
            model = entry.factory(info, **trial.model.params)
        regularizer = plugins.regularizers.get(trial.regularizer.plugin).factory(
            **trial.regularizer.params
        )
        return regularizer.decline(model, info) or None
    except Exception:  # its trial will tell, with the plugin to blame
        return None


# Statuses that a rerun does not repeat. A failed trial is tried again: its cause may be fixed.
FINISHED = frozenset({"ok", "skipped", "diverged"})


@dataclass
class Plan:
    """What a run does: trials to train, and finished trials whose kept model is measured again
    (their evaluation settings changed), each with its earlier row."""

    train: list[Trial]
    evaluate: list[tuple[Trial, Row]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.train) + len(self.evaluate)


def plan(suite: Suite, table: Any, output: Path, rerun: bool = False) -> Plan:
    """What of ``suite`` the results ``table`` does not hold as finished with the same
    evaluation settings. A trial measured differently is evaluated again when its weights were
    kept, else trained again."""
    if rerun or table.empty:
        return Plan(list(suite.trials))
    finished = table[table["status"].isin(FINISHED)]
    rows = {row["trial_id"]: row for row in finished.to_dict("records")}
    out = Plan([])
    for trial in suite.trials:
        row = rows.get(trial.id)
        if row is None:
            out.train.append(trial)
        elif row["status"] != "ok" or row.get("eval_id") == trial.eval_id:
            continue  # done: skipped and diverged trials have nothing to measure
        elif (trial_folder(output, trial.id) / WEIGHTS).is_file():
            out.evaluate.append((trial, row))
        else:
            out.train.append(trial)
    return out


def build_observers(suite: Suite, plugins: Plugins) -> list[SuiteObserver]:
    """One observer from each registered observer factory, in registration order (pluggy's)."""
    observers = []
    for entry in plugins.observers.in_order():
        try:
            observer = entry.factory(suite)
        except Exception as exc:  # a tracking store it cannot use, say: the suite cannot start
            raise SuiteError(f"{suite.path}: {entry.origin}: {exc}") from None
        if observer is not None:  # None: not wanted by this suite ([tracking] enabled = false)
            observers.append(observer)
    return observers


def _notify(event: Callable[..., None], trial: Trial, *args: Any) -> None:
    """An observer's record of one trial; if it fails, the others and the suite go on."""
    try:
        event(trial, *args)
    except Exception as exc:  # the row is on disk; an observer's view of it is not worth a suite
        owner = type(getattr(event, "__self__", event)).__name__
        log.error("observer %s failed on trial %s: %s", owner, trial.id, traceback.format_exc())
        print(f"aebench: {owner} failed on {trial.label()}: {exc}", file=sys.stderr)


def keep_trial(
    output: Path,
    trial: Trial,
    suite: Suite,
    row: Row,
    outcome: TrialOutcome,
    keep_model: bool,
    trained: bool = True,
) -> None:
    """The trial's folder: its configuration, curves and (unless told not to) its weights. A
    finished trial's checkpoint is removed; a failed one's is kept, to resume from next time.
    A trial measured again without training (``trained=False``) keeps the weights it has.
    A file that cannot be written (a full disk) is a ``FolderError`` naming the trial's folder."""
    folder = trial_folder(output, trial.id)
    config = trial.config() | {
        "trial_id": trial.id,
        "eval_id": trial.eval_id,
        "suite": suite.name,
        "status": row["status"],
        "aebench": _version("aebench"),
    }
    weights = None
    if trained and keep_model and outcome.model is not None:
        weights = state_bytes(outcome.model.state_dict())
    try:
        write_trial(folder, config, outcome.curves, weights, replace_weights=trained)
        if trained and row["status"] in FINISHED:
            (folder / CHECKPOINT).unlink(missing_ok=True)
    except OSError as exc:
        raise cannot_write(folder, exc) from None


def run_suite(
    suite: Suite,
    plugins: Plugins,
    *,
    output: Path | None = None,
    device: str | None = None,
    observers: Sequence[SuiteObserver] = (),
    rerun: bool = False,
    cache: DataCache | None = None,
    executor: Executor | None = None,
    work: Plan | None = None,
) -> SuiteRun:
    """Run every trial not already finished, recording its folder and its row as each one ends.

    Trials whose evaluation settings changed are measured again from their kept weights, here,
    first; the ``executor`` trains the rest (default: here, one after another). Rows come back
    here as trials finish, and only this process writes the table and the trial folders.
    Observers hear each step. On KeyboardInterrupt the trials in progress are abandoned,
    observers hear ``suite_finished`` with ``run.interrupted`` set, and the interrupt goes on up.
    ``work`` replaces the plan made from the table (``aebench evaluate`` gives its own).

    The output folder is locked for the whole run (``aebench.lock``). Another run holding it, a
    folder of another suite, a table that cannot be read (``rerun`` replaces it) or a file that
    cannot be written is a ``FolderError``: one line to show. Each trial's row costs O(1) to
    record; the table is rewritten when the run starts with rows a killed run left, and when it
    ends, before observers hear of the end (``aebench.results``).
    """
    output = suite.output_dir(output)
    with folder_lock(output):
        check_owner(output, suite.name)
        table = settle(output, replace_unusable=rerun)
        try:
            write_vocabulary(output, declared({e.name: e.factory for e in plugins.metrics}))
            text = suite.spec.model_dump_json()
            write_atomically(output / SUITE_FILE, lambda p: p.write_text(text))
        except OSError as exc:
            raise cannot_write(output, exc) from None
        return _run_locked(
            suite,
            plugins,
            output,
            table,
            device=device,
            observers=observers,
            rerun=rerun,
            cache=cache,
            executor=executor,
            work=work,
        )


def _run_locked(
    suite: Suite,
    plugins: Plugins,
    output: Path,
    table: Any,
    *,
    device: str | None,
    observers: Sequence[SuiteObserver],
    rerun: bool,
    cache: DataCache | None,
    executor: Executor | None,
    work: Plan | None,
) -> SuiteRun:
    """``run_suite`` in its folder, locked, from the folder's results ``table``."""
    from aebench.executors import LocalExecutor, Workload

    chosen = resolve_device(device or suite.spec.suite.device)
    # This process's trials and evaluations ("auto" chosen again before every epoch); an
    # isolated trial's process follows the same setting.
    follow_threads(suite.spec.suite.threads)
    cache = cache or DataCache(plugins)
    executor = executor or LocalExecutor()
    work = work or plan(suite, table, output, rerun)
    run = SuiteRun(output, [], already_done=len(suite.trials) - len(work))
    run.evaluated = len(work.evaluate)
    training = Workload(
        work.train,
        plugins,
        chosen,
        cache,
        isolate=suite.spec.suite.isolate,
        output=output,
        timeout=suite.spec.suite.trial_timeout,
        threads=suite.spec.suite.threads,
    )

    def started(trial: Trial) -> None:
        for observer in observers:
            observer.trial_started(trial)

    measured_again = {trial.id for trial, _ in work.evaluate}

    def evaluated() -> Iterator[tuple[Trial, Row, TrialOutcome]]:
        for trial, trained in work.evaluate:
            started(trial)
            yield trial, *evaluate_trial(trial, trained, plugins, chosen, cache, output)

    listening: list[SuiteObserver] = []  # those that started: they alone hear the end
    try:
        for observer in observers:
            observer.suite_started(suite, output, [t for t, _ in work.evaluate] + work.train)
            listening.append(observer)
        # closing(): an interrupt stops the executor's generator at once (a cluster cancels).
        # cooperative(): SIGTERM and Ctrl-C set a flag, acted on between steps, metrics, trials.
        with stopping.cooperative(), contextlib.closing(executor.run(training, started)) as trained:
            for trial, row, outcome in itertools.chain(evaluated(), trained):
                if outcome.traceback:
                    log.error("trial %s failed:\n%s", trial.id, outcome.traceback)
                if outcome.resumed_after:
                    print(
                        f"aebench: {trial.label()} resumed from its checkpoint after epoch"
                        f" {outcome.resumed_after}",
                        file=sys.stderr,
                    )
                keep = suite.spec.suite.keep_models
                keep_trial(output, trial, suite, row, outcome, keep, trial.id not in measured_again)
                run.rows.append(row)
                record_row(output, row)  # O(1): the table is rewritten once, at the end
                for observer in observers:
                    _notify(observer.trial_finished, trial, row, outcome)
                stopping.check()  # between trials
    except KeyboardInterrupt:
        run.interrupted = True
        raise
    finally:
        unwritten = _write_table(output)  # before observers read it (the report, MLflow)
        for observer in listening:
            observer.suite_finished(run)
    if unwritten is not None:  # raised only now: an error already on its way up comes first
        raise unwritten
    return run


def _write_table(output: Path) -> FolderError | None:
    """Fold the run's rows into the table; the error, if it cannot be written (the rows stay in
    the journal and the trial folders, for the next run)."""
    try:
        settle(output)
    except FolderError as exc:
        return exc
    return None
