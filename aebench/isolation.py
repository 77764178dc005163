"""A trial in a process of its own (``[suite] isolate = true``).

A segfault or an out-of-memory kill then ends the child, not the suite: the parent records the
trial as failed and goes on. The child loads the plugins afresh through their entry points.
"""

from __future__ import annotations

import io
import multiprocessing
import signal
from multiprocessing.connection import Connection

import torch

from aebench.data import DataCache
from aebench.plugins import Plugins, load_plugins
from aebench.runner import Row, TrialOutcome, base_row, run_trial
from aebench.suite import Trial


def _child(trial: Trial, device: str, connection: Connection) -> None:
    plugins = load_plugins()
    row, outcome = run_trial(trial, plugins, torch.device(device), DataCache(plugins))
    weights = None
    if outcome.model is not None:  # plain bytes: torch's shared-memory handoff dies with us
        buffer = io.BytesIO()
        torch.save(outcome.model.state_dict(), buffer)
        weights = buffer.getvalue()
    connection.send((row, outcome.curves, weights, outcome.traceback))
    connection.close()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"trial process was killed by {signal.Signals(-exitcode).name}"
    return f"trial process exited with status {exitcode} before reporting"


def run_isolated(
    trial: Trial, plugins: Plugins, device: torch.device, cache: DataCache
) -> tuple[Row, TrialOutcome]:
    context = multiprocessing.get_context("spawn")  # no forked copies of threads or CUDA state
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(trial, str(device), sender), daemon=True)
    process.start()
    sender.close()  # the child holds the only sending end: its death ends recv() with EOFError
    try:
        row, curves, weights, traceback = receiver.recv()
    except EOFError:
        process.join()
        row = base_row(trial, plugins, device)
        return row | {"status": "failed", "reason": _death(process.exitcode)}, TrialOutcome()
    except BaseException:  # Ctrl-C or SIGTERM: the child goes too, at once
        process.kill()
        raise
    process.join(timeout=10)
    if process.is_alive():
        process.kill()
    if weights is None:
        return row, TrialOutcome(curves=curves, traceback=traceback)
    # The trained model, rebuilt here for the observers (figures, MLflow) from its weights alone.
    data = cache.get(trial.dataset, device)
    model = plugins.models.get(trial.model.plugin).factory(data.info, **trial.model.params)
    state = torch.load(io.BytesIO(weights), map_location=device, weights_only=True)
    model.to(device).load_state_dict(state)
    model.eval()
    return row, TrialOutcome(curves=curves, model=model, data=data, traceback=traceback)
