"""After a search: the suite's trials with each configuration's best parameters, on every seed,
and the executor that adds to each of their rows how its configuration was tuned."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace

from aebench.plugins.manager import Plugins
from aebench.run.executors import Executor, Finished, Workload
from aebench.run.observing import Row
from aebench.run.search import Tuned
from aebench.run.suite import Suite, Trial


def leaderboard(suite: Suite, tuned: list[Tuned], plugins: Plugins) -> tuple[Suite, dict[str, Row]]:
    """The suite with each configuration's best parameters, at every seed, measured on test;
    and each of its trials' search columns and warnings (trial id -> extra row)."""
    first = suite.spec.suite.seeds[0]
    by_base = {t.configuration.base.id: t for t in tuned}
    trials, extras = [], {}
    for trial in suite.trials:
        found = by_base[replace(trial, seed=first).id]
        final = found.configuration.trial(found.best, plugins, trial.eval, trial.seed)
        trials.append(final)
        extras[final.id] = found.columns() | {"search.warnings": found.warnings}
    return Suite(suite.path, suite.spec, trials), extras


class WithSearchColumns:
    """An executor whose rows carry their configuration's search columns and warnings."""

    def __init__(self, inner: Executor, extras: dict[str, Row]) -> None:
        self.inner, self.extras = inner, extras

    def run(self, work: Workload, started: Callable[[Trial], None]) -> Iterator[Finished]:
        with contextlib.closing(self.inner.run(work, started)) as finished:  # type: ignore[arg-type]
            for trial, row, outcome in finished:
                extra = dict(self.extras.get(trial.id, {}))
                warnings = [
                    w for w in (row.get("warnings"), *extra.pop("search.warnings", [])) if w
                ]
                yield trial, row | extra | {"warnings": "; ".join(warnings)}, outcome
