"""``aebench evaluate --checkpoint``: a trial's last checkpoint measured while its run goes on.

A long protocol (Burda et al.'s 3,280 epochs: hours on a CPU) checkpoints its trial as it trains
(``aebench.run.checkpoint``); this measures the model a checkpoint holds with the trial's metrics
(or others, or other settings), as its row would be measured, and returns the columns. It writes
nothing and takes no lock: a run may hold the folder, and a checkpoint is replaced atomically, so
what is read is one whole checkpoint. The trial comes from the folder's saved suite, since a
trial still training has no config in its folder yet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aebench.measure_again import kept_folder, new_eval
from aebench.plugins.manager import Plugins, load_plugins
from aebench.results.table import SUITE_FILE
from aebench.results.trials import CHECKPOINT
from aebench.run.checkpoint import Checkpoints, UnusableCheckpoint
from aebench.run.data import DataCache
from aebench.run.kept import KeptTrialError, saved_suite
from aebench.run.measure import measure_all
from aebench.run.observing import Row
from aebench.run.suite import SuiteError, Trial, load_suite
from aebench.run.trial import DeviceError, resolve_device


@dataclass
class CheckpointMeasure:
    """A checkpoint's model, measured: the trial, the epochs it had trained, and the row."""

    trial: Trial
    epoch: int  # epochs trained when the checkpoint was saved
    train_s: float  # seconds trained by then
    row: Row  # the metrics' columns, as ``measure_all`` gives them

    def lines(self, plugins: Plugins) -> list[str]:
        """What ``aebench evaluate --checkpoint`` prints: the checkpoint, then each metric's
        columns in their declared order, then why any is NaN, errors and estimate notes."""
        trial, row = self.trial, self.row
        out = [
            f"{trial.label()} ({trial.id}): its checkpoint after epoch {self.epoch} of"
            f" {trial.settings().epochs} ({self.train_s:.0f} s trained), measured; nothing written"
        ]
        for name in trial.eval["metrics"]:
            for column in plugins.metrics.get(name).factory.columns:
                value = row.get(column.name)
                out.append(
                    f"  {column.name} = {value:.6g}"
                    if isinstance(value, float)
                    else f"  {column.name} = {value}"
                )
        out += [
            f"  {what}: {row[what]}"
            for what in ("nan_reasons", "metric_errors", "notes")
            if row.get(what)
        ]
        return out


def measure_checkpoint(
    folder: str | Path,
    trial_id: str,
    *,
    metrics: Sequence[str] | None = None,
    sets: Sequence[str] = (),
    plugins: Plugins | None = None,
    device: str = "cpu",
) -> CheckpointMeasure:
    """Measure trial ``trial_id``'s last checkpoint in ``folder`` with ``metrics`` (else its
    own) and ``sets`` (``metric.param=value``) applied; a ``KeptTrialError`` (one line) for a
    trial the folder's suite does not hold, or one with no checkpoint to read."""
    folder = Path(folder)
    where = kept_folder(folder, trial_id)
    plugins = plugins or load_plugins()
    trial = _suite_trial(folder, trial_id, plugins)
    trial = trial.with_eval(new_eval(trial, metrics, sets, plugins, folder))
    try:
        state = Checkpoints(where / CHECKPOINT, trial_id).read()
    except UnusableCheckpoint as exc:
        raise KeptTrialError(f"{where / CHECKPOINT}: cannot be measured: {exc}") from None
    if state is None:
        raise KeptTrialError(f"{where}: no {CHECKPOINT}: the trial has not saved one, or it ended")
    try:
        torch_device = resolve_device(device)
    except DeviceError as exc:
        raise KeptTrialError(f"--device: {exc}") from None
    data = DataCache(plugins).get(trial.dataset, torch_device)
    model = plugins.models.get(trial.model.plugin).factory(data.info, **trial.model.params)
    try:
        model.to(torch_device).load_state_dict(state["model"])
    except RuntimeError as exc:  # weights of another model (its suite changed since)
        raise KeptTrialError(f"{where / CHECKPOINT}: {exc}".splitlines()[0]) from None
    samples, seconds = state.get("timed_samples", 0), state.get("timed_s", 0.0)
    training = {
        "train_s": state["train_s"],
        "train_samples_per_s": samples / seconds if seconds > 0 else math.nan,
        "peak_mem_mb": math.nan,  # not kept in a checkpoint
    }
    row = measure_all(trial, plugins, model, data, torch_device, training)
    return CheckpointMeasure(trial, int(state["epoch"]), float(state["train_s"]), row)


def _suite_trial(folder: Path, trial_id: str, plugins: Plugins) -> Trial:
    """The trial of that id among the folder's saved suite's."""
    suite = saved_suite(folder, plugins)
    try:
        trials = load_suite(suite.spec.model_dump(mode="json"), plugins).trials
    except SuiteError as exc:
        raise KeptTrialError(f"{folder / SUITE_FILE}: {exc}".splitlines()[0]) from None
    for trial in trials:
        if trial.id == trial_id:
            return trial
    raise KeptTrialError(f"{folder}: no trial {trial_id!r} in its {SUITE_FILE}")
