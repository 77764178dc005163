"""One trial: build dataset, model and regularizer from the registries, train, measure."""

from __future__ import annotations

import importlib.metadata
import logging
import math
import re
import traceback
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from aebench.contract.checks import ContractError, check_first_batch
from aebench.contract.columns import STACK_GROUP, START_DIGEST
from aebench.contract.data import Data
from aebench.plugins.blame import failure_reason
from aebench.plugins.manager import Plugins
from aebench.plugins.registry import Entry
from aebench.results.rows import flatten
from aebench.results.trials import CHECKPOINT, read_curves, read_weights, trial_folder
from aebench.run import stopping
from aebench.run.checkpoint import Checkpoints
from aebench.run.data import DataCache
from aebench.run.health import health_warnings
from aebench.run.measure import TRAINING_COLUMNS, measure_all, metric_context
from aebench.run.observing import Row, TrialOutcome
from aebench.run.plan import wrong_kind
from aebench.run.suite import Trial
from aebench.run.train import TrainResult, train_model
from aebench.run.validation import hold_out

log = logging.getLogger("aebench")


DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


class DeviceError(ValueError):
    """A device name that is none, or a device this machine does not have."""


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA where there is one, else the CPU; else the device named, which must be on
    this machine (a ``DeviceError`` saying why not, before any data is put there)."""
    if not DEVICE_NAME.fullmatch(name):
        raise DeviceError(f"{name!r} is not one of cpu, cuda, cuda:N, mps or auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            have = f"{count} CUDA device{'s' * (count != 1)}" if count else "no CUDA device"
            raise DeviceError(f"{name}: this machine has {have}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"{name}: this machine has no MPS device")
    return device


_WARM: set[str] = set()  # the devices this process has warmed up


def warm_up(device: torch.device) -> None:
    """What torch loads on first use, loaded once per process and device, before a trial's time
    limit starts: the first optimizer imports ``torch._dynamo`` (seconds on an idle machine,
    more than ten on a loaded one), the first tensor on a GPU creates its context."""
    if str(device) in _WARM:
        return
    weight = torch.zeros(1, device=device, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=0.0)
    weight.sum().backward()
    optimizer.step()
    _WARM.add(str(device))


def distribution_version(distribution: str) -> str | None:
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
    row["version.aebench"] = distribution_version("aebench")
    row["version.torch"] = str(torch.__version__)  # a TorchVersion would unpickle into torch
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
    if timeout is not None:
        warm_up(device)  # what torch loads on first use is not the first trial's time
    try:
        with stopping.deadline(timeout):
            row |= _train_and_measure(trial, plugins, device, cache, outcome, suspects, output)
    except stopping.TrialTimeout as exc:  # no plugin to blame, no traceback worth keeping
        row["status"], row["reason"] = "failed", str(exc)
    except (Exception, SystemExit) as exc:  # a failing trial (a plugin's sys.exit too) is
        # recorded; the suite goes on
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
    output: Path | None,
) -> Row:
    settings = trial.settings()  # typed once here; the trial keeps its dict as its identity
    data = outcome.data = cache.get(trial.dataset, device)
    torch.manual_seed(trial.seed)  # the model's initial weights
    model_entry = plugins.models.get(trial.model.plugin)
    _now_running(suspects, model_entry)
    if reason := wrong_kind(model_entry, data.info):
        return {"status": "skipped", "reason": reason}
    model = model_entry.factory(data.info, **trial.model.params).to(device)
    regularizer = plugins.regularizers.get(trial.regularizer.plugin).factory(
        **trial.regularizer.params
    )
    reason = regularizer.decline(model, data.info)
    if reason:
        return {"status": "skipped", "reason": reason}

    broken = check_first_batch(model, regularizer, data.info, data.train.x[: settings.batch_size])
    if broken:
        kind, error = broken
        component = trial.model if kind == "model" else trial.regularizer
        raise ContractError(f"{describe_plugin(plugins, kind, component.plugin)}: {error}")

    generator = torch.Generator(device=device).manual_seed(trial.seed)
    training, val = data, data.val
    if settings.val_fraction:  # held out of the training split: the rest trains
        rest, val = hold_out(
            data.train, settings.val_fraction, seed=trial.seed, transform=data.batch_transform
        )
        training = replace(data, train=rest, val=val)
    if hasattr(model, "fit_before_training"):  # a start fitted to the data (an output bias)
        with torch.no_grad():
            model.fit_before_training(training.train.x)
    checkpoints = None
    if output is not None:
        path = trial_folder(output, trial.id) / CHECKPOINT
        checkpoints = Checkpoints(path, trial.id, settings.checkpoint_every, root=output)
    result = train_model(
        model,
        regularizer,
        training,
        settings,
        generator=generator,
        checkpoints=checkpoints,
        val=val,
    )
    # Metrics that fit on the training split (a kNN, a probe) fit on what the model trained on:
    # a held-out fraction is no more theirs than the model's (a search measures on it).
    measured = replace(data, train=training.train)
    return trained_row(trial, plugins, model, measured, device, result, outcome)


def without_held_out(trial: Trial, data: Data) -> Data:
    """``data`` whose training split is what the trial trained on: without the rows its
    ``[train] val_fraction`` held out (the same rows as in training: same fraction, same seed)."""
    fraction = trial.settings().val_fraction
    if not fraction:
        return data
    return replace(data, train=hold_out(data.train, fraction, seed=trial.seed)[0])


def trained_row(
    trial: Trial,
    plugins: Plugins,
    model: nn.Module,
    data: Data,
    device: torch.device,
    result: TrainResult,
    outcome: TrialOutcome,
) -> Row:
    """What a trained model's row adds to ``base_row``: its training columns and, unless it
    diverged, its health warnings and metrics (``model`` is measured in eval mode). Trials
    trained together (``aebench.run.stacked``) each come here with their own rebuilt model."""
    outcome.curves, outcome.resumed_after = result.curves, result.resumed_after
    row: Row = {
        "train_s": result.train_s,
        "train_samples_per_s": result.samples_per_s,
        "final_loss": result.curves["loss"][-1],
        "peak_mem_mb": result.peak_mem_mb,
        "stopped_epoch": result.stopped_epoch,
        "best_epoch": result.best_epoch if result.best_epoch is not None else math.nan,
        "best_val_loss": result.best_val_loss,
        START_DIGEST: result.start_digest,
        STACK_GROUP: result.stack_group,
        "threads": torch.get_num_threads(),  # the last epoch's ("auto" follows the load)
    }
    if result.diverged_at is not None:
        row |= {"status": "diverged", "reason": f"loss is not finite at epoch {result.diverged_at}"}
        return row

    outcome.model = model
    model.eval()
    context = metric_context(trial, model, data, device, row)  # one encoding for both
    row["warnings"] = "; ".join(health_warnings(model, data, result.curves, context))
    tracebacks = outcome.metric_tracebacks
    return row | measure_all(trial, plugins, model, data, device, row, tracebacks, context)


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
        data = without_held_out(trial, data)  # what it trained on, as when it was measured
        outcome.model, outcome.data = model, data
        row |= measure_all(trial, plugins, model, data, device, row, outcome.metric_tracebacks)
    except Exception as exc:  # a kept model that cannot be measured: retrained next time
        row["status"] = "failed"
        row["reason"] = failure_reason(exc, suspects)
        outcome.traceback = traceback.format_exc()
    return row, outcome
