"""Every trial as an MLflow run (``aebench.tracking``), configured by the suite's
``[observers.mlflow]`` table (once ``[tracking]``, still read as it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from aebench.contract.hookspecs import hookimpl
from aebench.results.paths import sqlite_file, writable_place_problem

if TYPE_CHECKING:
    from aebench.run.observing import SuiteObserver
    from aebench.run.suite import Suite


def _writable_store(uri: str | None) -> str | None:
    """A SQLite store anywhere but in a system folder (a team's shared one may live elsewhere):
    checked with the suite, before anything is written (``aebench.paths``)."""
    database = sqlite_file(uri or "")
    if database is not None and (why := writable_place_problem(database)):
        raise PydanticCustomError("store_place", "{why}", {"why": why})
    return uri


def mlflow(
    suite: Suite,
    uri: Annotated[str | None, AfterValidator(_writable_store)] = None,
    log_model: bool = False,
    experiment: str | None = None,
) -> SuiteObserver:
    """MLflow: a run per trial and one per invocation.

    ``uri``: the tracking store (None: ``$MLFLOW_TRACKING_URI``, else ``results/mlflow.db``);
    ``log_model``: each trained model's weights as an artifact; ``experiment``: None names it
    after the suite (and its folder)."""
    from aebench.observers.tracking import MlflowTracker
    from aebench.run.suite import TrackingSection

    return MlflowTracker(TrackingSection(uri=uri, log_model=log_model, experiment=experiment))


# A search's trials are runs too: in the experiment of the search's folder (``<output>/search``).
mlflow.hears_search_trials = True  # type: ignore[attr-defined]


@hookimpl(trylast=True)  # last: it logs the figures and the report that the others wrote
def aebench_register_observers(register):
    register("mlflow", mlflow)


@hookimpl
def aebench_register_commands(register) -> None:  # as the observers' hook above
    """``aebench ui``: MLflow's own server on the store the tracker wrote."""
    from aebench.contract.command import Command
    from aebench.observers.tracking_ui import UI_HELP, run_ui, ui_arguments

    register("ui", Command(help=UI_HELP, run=run_ui, arguments=ui_arguments))
