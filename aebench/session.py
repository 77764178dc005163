"""A session: one suite with its plugins, output folder, device, data, observers and executor,
assembled once and used by every entry point: ``aebench run``, ``aebench.run_suite`` and
``aebench evaluate`` (``aebench.measure_again``).

The output folder is resolved here, once (``--output``, else ``[suite] output``, else
``results/<name>``); everything after reads ``session.output``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from aebench.plugins.manager import Plugins, load_plugins
from aebench.results.lock import check_output
from aebench.results.table import check_owner, read_results
from aebench.run.data import DataCache
from aebench.run.executors import Executor
from aebench.run.loop import build_observers, run_trials
from aebench.run.observing import SuiteObserver, SuiteRun
from aebench.run.plan import Plan, declined, load_datasets, plan
from aebench.run.suite import Suite, load_suite
from aebench.run.trial import resolve_device


@dataclass
class Session:
    """What a run needs, built once: ``Session.open`` for a suite, then ``run``."""

    suite: Suite
    plugins: Plugins
    output: Path  # resolved: every later step reads this
    device: torch.device
    cache: DataCache
    executor: Executor | None = None  # None: here, one trial after another
    observers: list[SuiteObserver] = field(default_factory=list)  # the registered ones

    @classmethod
    def open(
        cls,
        suite: str | Path | dict[str, Any] | Suite,
        *,
        plugins: Plugins | None = None,
        output: str | Path | None = None,
        device: str | None = None,
        threads: int | str | None = None,
        executor: Executor | None = None,
    ) -> Session:
        """The suite loaded and validated (a file, a dict or a ``Suite``), its output folder and
        device resolved; nothing is loaded or written yet. A bad suite raises ``SuiteError``."""
        plugins = plugins or load_plugins()
        if not isinstance(suite, Suite):
            suite = load_suite(suite, plugins)
        if threads is not None:  # `aebench run --threads` over [suite] threads
            suite.spec.suite = suite.spec.suite.model_copy(update={"threads": threads})
        folder = suite.output_dir(output)
        chosen = resolve_device(device or suite.spec.suite.device)
        return cls(suite, plugins, folder, chosen, DataCache(plugins), executor)

    def check_folder(self, rerun: bool = False) -> pd.DataFrame:
        """The folder writable, no other run in it, not another suite's: said before anything
        loads (``FolderError``). Returns its results table (``rerun`` replaces an unusable one)."""
        check_output(self.output)
        check_owner(self.output, self.suite.name)
        return read_results(self.output, replace_unusable=rerun)

    def load_data(self) -> None:
        """Every dataset of the suite, loaded once (a missing file is a ``SuiteError``)."""
        self.cache = load_datasets(self.suite, self.plugins, self.device)

    def plan(self, table: pd.DataFrame, rerun: bool = False) -> Plan:
        """What the run will do, given the folder's ``table``."""
        return plan(self.suite, table, self.output, rerun)

    def declined(self) -> dict[str, str]:
        """Trial id -> why its model or regularizer declines its data (after ``load_data``)."""
        return declined(self.suite, self.plugins, self.cache, self.device)

    def start_observers(self) -> None:
        """One observer from each registered factory (MLflow, figures, report, third parties')."""
        self.observers = build_observers(self.suite, self.plugins)

    def run(
        self,
        *,
        rerun: bool = False,
        observers: Sequence[SuiteObserver] = (),
        work: Plan | None = None,
    ) -> SuiteRun:
        """Every trial not finished in the folder (or ``work``), heard by ``observers`` and then
        the registered ones."""
        return run_trials(
            self.suite,
            self.plugins,
            output=self.output,
            device=str(self.device),
            observers=[*observers, *self.observers],
            rerun=rerun,
            cache=self.cache,
            executor=self.executor,
            work=work,
        )


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
    session = Session.open(suite, plugins=plugins, output=output, device=device, executor=executor)
    session.load_data()
    session.start_observers()
    return session.run(rerun=rerun, observers=observers)
