"""A third-party executor package for the executor hook's tests, installed as a fake distribution
(see ``fake_plugins.py``): it runs the trials in this process in reverse order, and appends each
trial's id to a log file as it hands it out, so that a test can tell it ran them."""

from collections.abc import Callable, Iterator
from pathlib import Path

from aebench import Executor, Trial, Workload, hookimpl


class ReverseExecutor:
    """Runs the trials here, last first, logging each one's id."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def run(self, work: Workload, started: Callable[[Trial], None]) -> Iterator[tuple]:
        for trial in reversed(work.trials):
            started(trial)
            with self.log.open("a") as log:
                log.write(trial.id + "\n")
            yield trial, *work.run_here(trial)


def toy(log: str) -> Executor:
    """Trials here, last first, each id appended to LOG."""
    return ReverseExecutor(Path(log))


@hookimpl
def aebench_register_executors(register):
    register("toy", toy)
