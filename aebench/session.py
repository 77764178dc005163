"""``aebench.run_suite``: what ``aebench run`` does, from Python."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aebench.plugins.manager import Plugins, load_plugins
from aebench.run.executors import Executor
from aebench.run.loop import build_observers, run_trials
from aebench.run.observing import SuiteObserver, SuiteRun
from aebench.run.plan import load_datasets
from aebench.run.suite import Suite, load_suite
from aebench.run.trial import resolve_device


def run_suite(
    suite: str | Path | dict[str, Any] | Suite,
    *,
    output: str | Path | None = None,
    device: str | None = None,
    rerun: bool = False,
    plugins: Plugins | None = None,
    observers: Sequence[SuiteObserver] = (),
    executor: Executor | None = None,
) -> SuiteRun:
    """Run every trial of a suite not already finished in its output folder, as ``aebench run``.

    ``suite`` is a suite file, the same as a dict (``{"suite": {"name": "mine"}, "datasets":
    [{"plugin": "digits"}], "models": [{"plugin": "vae"}]}``), or a suite loaded with
    ``aebench.load_suite``; ``output`` overrides
    its results folder, ``device`` its ``[suite] device``. Every registered observer runs (MLflow
    unless ``[tracking] enabled = false``, the figures, the report), after the ``observers`` given
    here. ``plugins`` defaults to the installed ones (``aebench.load_plugins()``).

    Returns the run: ``run.rows`` are this invocation's rows, ``run.output`` the folder holding
    ``results.parquet``. A bad suite raises ``aebench.SuiteError`` before anything is written::

        import aebench

        run = aebench.run_suite("benchmarks/quick.toml", output="results/mine")
        print(run.counts)  # {'ok': 12}
    """
    plugins = plugins or load_plugins()
    if not isinstance(suite, Suite):
        suite = load_suite(suite, plugins)
    chosen = resolve_device(device or suite.spec.suite.device)
    cache = load_datasets(suite, plugins, chosen)
    return run_trials(
        suite,
        plugins,
        output=None if output is None else Path(output),
        device=str(chosen),
        observers=[*observers, *build_observers(suite, plugins)],
        rerun=rerun,
        cache=cache,
        executor=executor,
    )
