"""The figures observer that draws in a worker process (``BackgroundFigures``): the trained model
is reduced to its arrays here, as the trial ends (it is in this process alone), and the PNGs are
drawn from them by the worker of ``aebench.views.background`` while the next trial trains."""

from __future__ import annotations

from pathlib import Path

from aebench.observers.trial_figures import TrialFigures
from aebench.run.observing import Row, SuiteRun, TrialOutcome
from aebench.run.suite import Suite, Trial
from aebench.views import background
from aebench.views.drawing import render_trial


class BackgroundFigures(TrialFigures):
    """``TrialFigures`` with the drawing handed to a worker: the run waits for none of it but the
    last, at its end (``suite_finished``), after which nothing more is drawn. A drawing that fails
    is named as one drawn here is (``aebench: figures of <trial> failed: ...``)."""

    def __init__(self, per_seed: bool = True) -> None:
        super().__init__(per_seed=per_seed)
        self.render = self._hand_out
        self._label = ""  # the trial being drawn, for its errors

    def suite_started(self, suite: Suite, output: Path, trials: list[Trial]) -> None:
        super().suite_started(suite, output, trials)
        if trials:  # the worker imports matplotlib while the first trial trains; none on no-op
            background.start()

    def trial_finished(self, trial: Trial, row: Row, outcome: TrialOutcome) -> None:
        self._label = trial.label()
        super().trial_finished(trial, row, outcome)
        background.collect()  # failures named as they come, not all at the end

    def _hand_out(self, folder: Path, title: str) -> list[Path]:
        """Draw ``folder``'s PNGs in the worker; none is written yet, so none is returned."""
        background.draw(folder, self._label, render_trial, folder, title)
        return []

    def suite_finished(self, run: SuiteRun) -> None:
        if run.interrupted:  # Ctrl-C: what is still queued is not worth the wait
            background.drop_queued()
        background.drawings_done()
