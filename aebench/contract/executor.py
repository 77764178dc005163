"""The executor contract: where a suite's trials run, as a plugin registers it.

A plugin registers a factory with ``aebench_register_executors``; ``aebench run --executor NAME``
builds one from the command line's parameters and hands it the trials still to run. Everything
else (observers, the results table, resume, Ctrl-C) stays in the submitting process: an executor
only runs trials and hands back each one's row. The run-layer types it names are imported for
type checking only, so that this contract imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    from aebench.run.executors import Workload
    from aebench.run.observing import Row, TrialOutcome
    from aebench.run.suite import Trial

# A finished trial: the trial, its row (as the results table records it) and its outcome.
Finished: TypeAlias = "tuple[Trial, Row, TrialOutcome]"


@runtime_checkable
class Executor(Protocol):
    """Runs a suite's trials somewhere: here, in child processes, on a cluster.

    ``run(work, started)`` gets an ``aebench.Workload`` (``work.trials`` to run, with the plugins,
    device, datasets, output folder and time limit they need) and must:

    - call ``started(trial)`` once for each trial, as it is handed out;
    - yield ``(trial, row, outcome)`` for each trial as it finishes, in any order, every trial
      exactly once. ``work.run_here(trial)`` runs one trial in this process (in a child process
      where ``work.isolate`` says so) and returns its ``(row, outcome)``; a trial lost on the
      way (a dead worker) is yielded as ``(trial, *work.failed(trial, reason))``;
    - stop cleanly when the generator is closed (Ctrl-C or SIGTERM close it): cancel whatever
      still runs elsewhere, in a ``finally``.

    The submitting process alone writes the table and notifies observers, from the yielded rows.
    A factory is registered with ``register(name, factory)``; its keyword parameters are the
    executor's parameters, validated like a model's (``aebench run --executor NAME --executor-set
    KEY=VALUE``). A factory that cannot build one (a missing dependency, say) raises
    ``ValueError`` with a one-line message.
    """

    def run(self, work: Workload, started: Callable[[Trial], None]) -> Iterator[Finished]:
        """Call ``started`` for each trial as it is handed out; yield each one as it finishes."""
        ...
