"""``report.md`` and ``report.html`` beside the results table when a run ends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aebench.contract.hookspecs import hookimpl

if TYPE_CHECKING:
    from aebench.run.observing import SuiteObserver
    from aebench.run.suite import Suite


def report(suite: Suite) -> SuiteObserver:
    """The report of the results folder, at the end: per dataset a ranked headline table, detail
    tables per group of metrics, and each configuration's median-seed figures."""
    from aebench.views.report import ReportBuilder

    return ReportBuilder()


@hookimpl(tryfirst=True)  # before the trackers that log the report
def aebench_register_observers(register):
    register("report", report)
