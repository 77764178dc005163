"""A progress bar for a running suite, on stderr (rich)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aebench.runner import Row, SuiteObserver, SuiteRun, TrialOutcome
from aebench.suite import Suite, Trial


class SuiteProgress(SuiteObserver):
    """A bar over the trials, and a line for each trial that did not end ``ok``."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self._task = self._progress.add_task("starting", total=None)

    def suite_started(self, suite: Suite, output: Path, trials: list[Trial]) -> None:
        self._progress.start()  # only now: a suite refused before it starts shows no bar
        self._progress.update(self._task, total=len(trials))  # those left to run, after a resume

    def suite_finished(self, run: SuiteRun) -> None:
        self._progress.stop()

    def trial_started(self, trial: Trial) -> None:
        self._progress.update(self._task, description=trial.label())

    def trial_finished(self, trial: Trial, row: Row, outcome: TrialOutcome) -> None:
        self._progress.advance(self._task)
        if row["status"] != "ok":
            self._progress.console.print(f"{trial.label()}: {row['status']} {row['reason']}")
