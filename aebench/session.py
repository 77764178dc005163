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
from aebench.results.confined import check_links
from aebench.results.lock import check_output, folder_lock
from aebench.results.table import check_owner, read_results
from aebench.run.data import DataCache
from aebench.run.executors import Executor, LocalExecutor
from aebench.run.loop import Registered, build_observers, run_trials
from aebench.run.observing import SuiteObserver, SuiteRun
from aebench.run.plan import Plan, declined, load_datasets, plan
from aebench.run.search_section import tunes
from aebench.run.sections import threads_problem
from aebench.run.suite import Suite, SuiteError, load_suite
from aebench.run.threads import available_cores
from aebench.run.trial import DeviceError, resolve_device


@dataclass
class Session:
    """What a run needs, built once: ``Session.open`` for a suite, then ``run``."""

    suite: Suite
    plugins: Plugins
    output: Path  # resolved: every later step reads this
    device: torch.device
    cache: DataCache
    executor: Executor | None = None  # None: here, one trial after another
    # The registered observers the suite runs, each beside its registry entry (``start_observers``).
    registered: list[Registered] = field(default_factory=list)

    @property
    def observers(self) -> list[SuiteObserver]:
        """The registered observers the suite runs (MLflow, figures, report, third parties')."""
        return [one.observer for one in self.registered]

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
        if tunes(suite.spec):  # the search's modules import Optuna: only a search needs it
            from aebench.run.search_checks import check_search
            from aebench.run.search_rounds import check_executor

            check_search(suite, plugins)  # the [search] and each entry's search spaces
            check_executor(suite, executor)  # a pruner hears training here: the local executor
        if threads is not None:  # `aebench run --threads` over [suite] threads
            if why := threads_problem(threads):
                raise SuiteError(f"--threads: {why}")
            suite.spec.suite = suite.spec.suite.model_copy(update={"threads": threads})
        folder = suite.output_dir(output)
        try:
            chosen = resolve_device(device or suite.spec.suite.device)
        except DeviceError as exc:
            where = "--device" if device else f"{suite.path}: suite.device"
            raise SuiteError(f"{where}: {exc}") from None
        return cls(suite, plugins, folder, chosen, DataCache(plugins), executor)

    def check_folder(self, rerun: bool = False) -> pd.DataFrame:
        """The folder writable, no other run in it, not another suite's: said before anything
        loads (``FolderError``). Returns its results table (``rerun`` replaces an unusable one)."""
        check_output(self.output)
        check_links(self.output)  # a link where trials or figures go (checked again, locked)
        check_owner(self.output, self.suite.name)
        return read_results(self.output, replace_unusable=rerun)

    def load_data(self) -> None:
        """Every dataset of the suite, loaded once (a missing file is a ``SuiteError``)."""
        self.cache = load_datasets(self.suite, self.plugins, self.device)
        if self.suite.spec.search is not None:
            from aebench.run.search_checks import check_search_data

            check_search_data(self.suite, self.cache, self.device)  # a validation split to tune

    def plan(self, table: pd.DataFrame, rerun: bool = False) -> Plan:
        """What the run will do, given the folder's ``table``."""
        return plan(self.suite, table, self.output, rerun)

    def declined(self) -> dict[str, str]:
        """Trial id -> why its model or regularizer declines its data (after ``load_data``)."""
        return declined(self.suite, self.plugins, self.cache, self.device)

    def start_observers(self) -> None:
        """One observer from each registered factory the suite runs, with its
        ``[observers.NAME]`` settings (MLflow, figures, report, third parties'); a bad setting,
        or a factory that raises, is a ``SuiteError``."""
        self.registered = build_observers(self.suite, self.plugins)

    def run(
        self,
        *,
        rerun: bool = False,
        observers: Sequence[SuiteObserver] = (),
        work: Plan | None = None,
    ) -> SuiteRun:
        """Every trial not finished in the folder (or ``work``), heard by ``observers`` and then
        the registered ones. A suite with a ``[search]`` first tunes each configuration on
        validation (``aebench.run.search``), then runs its best parameters on every seed."""
        suite, executor, untuned, studies = self.suite, self.executor, [], []
        if suite.spec.search is not None and work is None:
            from aebench.run.search import Search
            from aebench.run.search_leaderboard import WithSearchColumns, leaderboard
            from aebench.run.search_observers import search_observers
            from aebench.run.search_rounds import runs_side_by_side, search_in_rounds

            hearing = search_observers(build_observers(suite, self.plugins))  # MLflow's
            search = Search(suite, self.plugins, self.output, self.device, self.cache, hearing)
            with folder_lock(self.output):
                if runs_side_by_side(executor):  # every configuration's trials at once
                    slots = getattr(executor, "workers", None) or available_cores()
                    tuned = search_in_rounds(search, executor, slots)
                else:
                    tuned = search.run()
            untuned = [t.label for t in tuned if not t.configuration.dimensions]
            studies = [t.configuration.study_name for t in tuned if t.configuration.dimensions]
            suite, extras = leaderboard(suite, tuned, self.plugins)
            executor = WithSearchColumns(executor or LocalExecutor(), extras)
        run = run_trials(
            suite,
            self.plugins,
            output=self.output,
            device=str(self.device),
            observers=[*observers, *self.registered],
            rerun=rerun,
            cache=self.cache,
            executor=executor,
            work=work,
        )
        if suite.spec.search is not None and work is None:  # search.md, its figures
            from aebench.views.search_figures import write_search_report

            write_search_report(self.output, suite.spec.search, untuned, studies)
        return run


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
    unless ``[observers.mlflow] enabled = false``, the figures, the report), after the
    ``observers`` given here. ``plugins`` defaults to the installed ones
    (``aebench.load_plugins()``).

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
