"""Every trial as an MLflow run (``aebench.tracking``), configured by the suite's ``[tracking]``
section."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aebench.contract.hookspecs import hookimpl

if TYPE_CHECKING:
    from aebench.run.observing import SuiteObserver
    from aebench.run.suite import Suite


def mlflow(suite: Suite) -> SuiteObserver | None:
    """MLflow: a run per trial and one per invocation ([tracking] enabled: on/off)."""
    if not suite.spec.tracking.enabled:
        return None
    from aebench.observers.tracking import MlflowTracker

    return MlflowTracker(suite.spec.tracking)


@hookimpl(trylast=True)  # last: it logs the figures and the report that the others wrote
def aebench_register_observers(register):
    register("mlflow", mlflow)
