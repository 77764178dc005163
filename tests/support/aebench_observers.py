"""A third-party observer distribution for the observer tests, installed as a fake distribution
(see ``fake_plugins.py``): an observer with settings (``jsonl-tracker``), one that raises (or
hangs) at the event its settings name (``faulty``, opt-in), and an opt-in one that needs a setting
(``cloud-log``, as a W&B logger needs its project). Each writes what it hears to a file in the
results folder, so that a test reads what reached it."""

import json
import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from aebench import SuiteObserver, hookimpl

Event = Literal["suite_started", "trial_started", "trial_finished", "suite_finished"]


class Heard(SuiteObserver):
    """Appends one JSON line per event it hears to ``<output>/<file>``, with ``settings``."""

    def __init__(self, file: str, settings: dict) -> None:
        self.file = file
        self.settings = settings
        self.path: Path | None = None

    def _write(self, event: str) -> None:
        if self.path is not None:
            with self.path.open("a") as out:
                out.write(json.dumps({"event": event, **self.settings}) + "\n")

    def suite_started(self, suite, output, trials):
        self.path = Path(output) / self.file
        self._write("suite_started")

    def trial_started(self, trial):
        self._write("trial_started")

    def trial_finished(self, trial, row, outcome):
        self._write("trial_finished")

    def suite_finished(self, run):
        self._write("suite_finished")


def jsonl_tracker(
    suite, file: str = "tracker.jsonl", level: Annotated[int, Field(ge=0)] = 1
) -> SuiteObserver:
    """Every event as a JSON line in the results folder, tagged with its level."""
    return Heard(file, {"level": level, "suite": suite.name})


class Faulty(Heard):
    """Hears like ``Heard`` (in ``faulty.jsonl``), and raises at its ``at`` event, or hangs
    there (``fault = "hang"``: a server that never answers), swallowing what ``Exception``s
    it gets, as careless I/O code does."""

    def __init__(self, at: str, fault: str = "raise") -> None:
        super().__init__("faulty.jsonl", {"at": at})
        self.at = at
        self.fault = fault

    def _write(self, event: str) -> None:
        super()._write(event)
        if event == self.at and self.fault == "hang":
            for _ in range(600):
                try:
                    time.sleep(1)
                except Exception:
                    pass
        if event == self.at:
            raise OSError(f"disk full at {event}")


def faulty(
    suite, at: Event = "trial_finished", fault: Literal["raise", "hang"] = "raise"
) -> SuiteObserver:
    """Raises (or hangs) at one event; only where a suite asks for it."""
    return Faulty(at, fault)


faulty.enabled_by_default = False


class CloudLog(Heard):
    """An observer that needs an account: opt-in (``enabled_by_default``, a class attribute)."""

    enabled_by_default = False

    def __init__(self, suite, project: str) -> None:
        super().__init__("cloud.jsonl", {"project": project})


@hookimpl
def aebench_register_observers(register):
    register("jsonl-tracker", jsonl_tracker)
    register("faulty", faulty)
    register("cloud-log", CloudLog)
