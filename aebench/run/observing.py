"""What observers of a run hear (``SuiteObserver``), and what they are handed: a trial's ``Row``
and ``TrialOutcome``, and the ``SuiteRun``.

Kept apart from the runner, and free of torch, so that what only reads results (``aebench report``,
``aebench ui``) starts in a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from aebench.contract.data import Data
    from aebench.run.suite import Suite, Trial

Row = dict[str, Any]


@dataclass
class TrialOutcome:
    """What a trial leaves besides its row, for observers (tracking, figures)."""

    curves: dict[str, list[float]] = field(default_factory=dict)  # per epoch, from 1
    model: nn.Module | None = None  # trained, in eval mode; None when it never trained
    data: Data | None = None
    traceback: str = ""
    resumed_after: int = 0  # training resumed from a checkpoint saved after this epoch
    # Each metric that raised: its traceback, headed by the plugin blamed (``metric_errors``).
    metric_tracebacks: list[str] = field(default_factory=list)


class SuiteObserver:
    """Hears what a suite run does: subclass it and override what you need.

    Observers are plugins (``aebench_register_observers``): MLflow tracking, the trial figures and
    the report are built-in ones, and a third party adds a W&B, TensorBoard or CSV logger the same
    way. All run in the process that writes the results table, in order, one event at a time:

    - ``suite_started(suite, output, trials)``: before the first trial; ``trials`` are those left
      to run (a resumed suite skips finished ones), ``output`` the results folder.
    - ``trial_started(trial)``: a trial was handed to the executor.
    - ``trial_finished(trial, row, outcome)``: its row (as written to the table: configuration,
      status, reason, every metric) and its outcome (per-epoch curves, the trained model and the
      data, or None when it never trained; a failure's traceback). The row is already on disk.
    - ``suite_finished(run)``: after the last trial, also when the run was interrupted
      (``run.interrupted``) or failed; ``run.rows`` are this invocation's rows.

    The factory, ``factory(suite, **settings)``, is called once per run, before the first trial.
    Its parameters after ``suite`` are its settings, the suite's ``[observers.NAME]`` table
    validated against the signature (as a model's parameters are), with defaults; every observer
    also takes ``enabled`` (default true; false: the factory is not called). A factory declaring
    ``enabled_by_default = False`` (a function or class attribute) is opt-in: called only where
    the suite has its table. Returning None also keeps it out of the run. What ``suite`` offers,
    and keeps stable:

    - ``suite.name``: the ``[suite] name``;
    - ``suite.path``: the suite file (``<dict>`` for a suite given as a dict);
    - ``suite.trials``: every trial of the suite (``Trial``: ``id``, ``seed``, ``dataset``,
      ``model``, ``regularizer``, ``train``, ``eval``, ``config()``, ``label()``); those left
      to run come with ``suite_started``;
    - ``suite.spec``: the validated file, read-only: ``spec.suite`` (``seeds``, ``device``,
      ``isolate``, ...), ``spec.train``, ``spec.eval``, ``spec.references``, and
      ``spec.observers`` (every observer's table as given);
    - ``suite.output_dir()``: the suite's own results folder (``[suite] output``, else
      ``results/<name>``). The run's folder may differ (``--output``): it is the ``output`` of
      ``suite_started``, so write there, not from the factory.

    Every event of every observer is guarded: one that raises is named on stderr with its plugin
    and distribution, its traceback goes to ``aebench.log``, and it hears nothing more of the run
    (the next run starts it again); the other observers, ``suite_finished`` included, and the run
    go on (see ``aebench.testing.check_observer``).
    """

    def suite_started(self, suite: Suite, output: Path, trials: list[Trial]) -> None:
        """Before the first trial runs."""

    def trial_started(self, trial: Trial) -> None:
        """A trial was handed out to run."""

    def trial_finished(self, trial: Trial, row: Row, outcome: TrialOutcome) -> None:
        """A trial finished, whatever its status; its row is in the table."""

    def suite_finished(self, run: SuiteRun) -> None:
        """The run ended (completed, interrupted or failed)."""


@dataclass
class SuiteRun:
    output: Path
    rows: list[Row]
    already_done: int = 0  # trials found finished in the output folder and not run again
    interrupted: bool = False  # Ctrl-C or SIGTERM stopped the run; finished rows are on disk
    evaluated: int = 0  # of the rows, trials measured again from kept weights, not trained
    # ``aebench evaluate``: trained trials it left as they were, having no kept model
    without_model: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows:
            out[row["status"]] = out.get(row["status"], 0) + 1
        return out
