"""Who hears a search: the observers whose factory declares ``hears_search_trials = True`` (the
MLflow tracker: each search trial a run, in the experiment of the search's folder). They hear
the whole search as one run of ``<output>/search/``: started once, every search trial as it
finishes, finished once; a search trial's own run of the runner passes them its trials only."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from aebench.run.loop import Registered
from aebench.run.observing import Row, SuiteObserver, SuiteRun, TrialOutcome
from aebench.run.suite import Suite, Trial

HEARS_SEARCH = "hears_search_trials"  # the observer factory's attribute that opts in


def search_observers(registered: Sequence[Registered]) -> list[Registered]:
    """Of a run's observers (fresh ones: a search is a run of its own), those that opt in."""
    return [one for one in registered if getattr(one.entry.factory, HEARS_SEARCH, False) is True]


class TrialsOnly(SuiteObserver):
    """An observer heard one trial at a time: the search starts and ends it (``observed``)."""

    def __init__(self, inner: SuiteObserver) -> None:
        self.inner = inner

    def trial_started(self, trial: Trial) -> None:
        self.inner.trial_started(trial)

    def trial_finished(self, trial: Trial, row: Row, outcome: TrialOutcome) -> None:
        self.inner.trial_finished(trial, row, outcome)


@contextlib.contextmanager
def observed(observers: Sequence[Registered], suite: Suite, folder: Path) -> Iterator[None]:
    """Within: the search, heard by ``observers`` as one run of ``folder``. One that raises as
    it starts or ends is named on stderr; the search goes on."""
    listening = [
        one for one in observers if _told(one, lambda o: o.suite_started(suite, folder, []))
    ]
    try:
        yield
    finally:
        for one in listening:
            _told(one, lambda o: o.suite_finished(SuiteRun(folder, [])))


def _told(one: Registered, event: Callable[[SuiteObserver], None]) -> bool:
    try:
        event(one.observer)
    except Exception as exc:  # an observer's view of the search is not worth the search
        print(f"aebench: {one.entry.origin} failed on the search: {exc}", file=sys.stderr)
        return False
    return True


def trials_only(observers: Sequence[Registered]) -> list[Registered]:
    """``observers`` as one search trial's run of the runner passes them: its trial alone."""
    return [Registered(TrialsOnly(one.observer), one.entry) for one in observers]
