"""The progress of a running suite, on stderr: a bar on a terminal, plain lines elsewhere.

Where stderr is not a terminal (CI, ``nohup``, a pipe, a log file) a bar cannot redraw itself, so
each finished trial gets one line instead: ``[3/12] digits/vae/none seed=0: ok (4.1 s, 0:00:13)``:
the trial's own seconds, then the suite's elapsed time.

A trial's own seconds are its training and measuring as its row records them: for trials trained
together (``[train] stack``), its share of the group's training, not the group's time (all of a
group start together, and each is measured after all are trained). A row without them (a failed
trial) gets the wall time since that trial started, its own start: trials on a cluster overlap.
"""

from __future__ import annotations

import math
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aebench.run.observing import Row, SuiteObserver, SuiteRun, TrialOutcome
from aebench.run.suite import Suite, Trial


class SuiteProgress(SuiteObserver):
    """A bar over the trials (or one line per trial), and a line for each trial not ``ok``."""

    def __init__(self, stream: TextIO | None = None, announced: set[str] | None = None) -> None:
        console = Console(file=stream or sys.stderr)
        self._announced = announced or set()  # reasons said before the run: not said again
        self._lines = not console.is_terminal
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = self._progress.add_task("starting", total=None)
        self._stream = console.file
        self._total = self._done = 0
        self._suite_start = time.monotonic()
        self._started: dict[str, float] = {}  # each running trial's start, by trial id

    def suite_started(self, suite: Suite, output: Path, trials: list[Trial]) -> None:
        self._total, self._done = len(trials), 0  # those left to run, after a resume
        self._suite_start = time.monotonic()
        if not self._lines:  # only now: a suite refused before it starts shows no bar
            self._progress.start()
            self._progress.update(self._task, total=len(trials))

    def suite_finished(self, run: SuiteRun) -> None:
        if not self._lines:
            self._progress.stop()

    def trial_started(self, trial: Trial) -> None:
        self._started[trial.id] = time.monotonic()
        if not self._lines:
            self._progress.update(self._task, description=trial.label())

    def trial_finished(self, trial: Trial, row: Row, outcome: TrialOutcome) -> None:
        self._done += 1
        status = row["status"]
        if status != "ok":
            seen = row["reason"] in self._announced
            status += " (as announced above)" if seen else f" {row['reason']}"
        if self._lines:
            took = self._own_seconds(trial, row)
            elapsed = timedelta(seconds=round(time.monotonic() - self._suite_start))
            print(
                f"[{self._done}/{self._total}] {trial.label()}: {status} ({took:.1f} s, {elapsed})",
                file=self._stream,
                flush=True,
            )
            return
        self._started.pop(trial.id, None)
        self._progress.advance(self._task)
        if row["status"] != "ok" and row["reason"] not in self._announced:
            self._progress.console.print(f"{trial.label()}: {status}")

    def _own_seconds(self, trial: Trial, row: Row) -> float:
        """The trial's training and measuring from its row; else the wall time since it started."""
        started = self._started.pop(trial.id, self._suite_start)
        recorded = [row.get("train_s"), row.get("eval_s")]
        if all(isinstance(s, (int, float)) and math.isfinite(s) for s in recorded):
            return float(sum(recorded))
        return time.monotonic() - started
