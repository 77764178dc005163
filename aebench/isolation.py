"""A trial in a process of its own (``[suite] isolate = true``), and its result carried back.

A segfault or an out-of-memory kill then ends the child, not the suite: the parent records the
trial as failed and goes on. The child loads the plugins afresh through their entry points.

``PortableResult`` is how a trial run elsewhere (a child process here, a Dask worker in
``aebench.executors``) comes back: plain picklable data, the trained model as its state_dict's
bytes, rebuilt from the registry in the receiving process for the observers (figures, MLflow).
"""

from __future__ import annotations

import io
import multiprocessing
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import torch

from aebench.data import DataCache
from aebench.plugins import Plugins, load_plugins
from aebench.runner import Row, TrialOutcome, failed_row, run_trial
from aebench.suite import Trial
from aebench.trials import state_bytes


@dataclass
class PortableResult:
    """A trial's row and outcome with nothing tied to the process that ran it."""

    row: Row
    curves: dict[str, list[float]]
    weights: bytes | None  # the trained model's state_dict (torch.save), None if it never trained
    traceback: str = ""
    resumed_after: int = 0


def to_portable(row: Row, outcome: TrialOutcome) -> PortableResult:
    weights = None
    if outcome.model is not None:  # plain bytes: torch's shared-memory handoff dies with us
        weights = state_bytes(outcome.model.state_dict())
    return PortableResult(row, outcome.curves, weights, outcome.traceback, outcome.resumed_after)


def from_portable(
    result: PortableResult,
    trial: Trial,
    plugins: Plugins,
    device: torch.device,
    cache: DataCache,
) -> tuple[Row, TrialOutcome]:
    """The row, and an outcome whose model is rebuilt here from its weights alone."""
    outcome = TrialOutcome(
        curves=result.curves, traceback=result.traceback, resumed_after=result.resumed_after
    )
    if result.weights is None:
        return result.row, outcome
    data = cache.get(trial.dataset, device)
    model = plugins.models.get(trial.model.plugin).factory(data.info, **trial.model.params)
    state = torch.load(io.BytesIO(result.weights), map_location=device, weights_only=True)
    model.to(device).load_state_dict(state)
    model.eval()
    outcome.model, outcome.data = model, data
    return result.row, outcome


def _child(trial: Trial, device: str, output: Path | None, connection: Connection) -> None:
    plugins = load_plugins()
    row, outcome = run_trial(trial, plugins, torch.device(device), DataCache(plugins), output)
    connection.send(to_portable(row, outcome))
    connection.close()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"trial process was killed by {signal.Signals(-exitcode).name}"
    return f"trial process exited with status {exitcode} before reporting"


def run_isolated(
    trial: Trial,
    plugins: Plugins,
    device: torch.device,
    cache: DataCache,
    output: Path | None = None,
) -> tuple[Row, TrialOutcome]:
    context = multiprocessing.get_context("spawn")  # no forked copies of threads or CUDA state
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(trial, str(device), output, sender), daemon=True)
    process.start()
    sender.close()  # the child holds the only sending end: its death ends recv() with EOFError
    try:
        result: PortableResult = receiver.recv()
    except EOFError:
        process.join()
        return failed_row(trial, plugins, device, _death(process.exitcode)), TrialOutcome()
    except BaseException:  # Ctrl-C or SIGTERM: the child goes too, at once
        process.kill()
        raise
    process.join(timeout=10)
    if process.is_alive():
        process.kill()
    return from_portable(result, trial, plugins, device, cache)
