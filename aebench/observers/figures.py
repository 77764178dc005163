"""Each trial's figures under ``<output>/trials/<trial_id>/`` (see ``aebench.figures``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aebench.contract.hookspecs import hookimpl

if TYPE_CHECKING:
    from aebench.run.observing import SuiteObserver
    from aebench.run.suite import Suite


def figures(suite: Suite) -> SuiteObserver:
    """Figures of every trial: latent scatter, reconstructions, prior samples, latent traversals
    and interpolations (latent-variable models), loss curves."""
    from aebench.observers.trial_figures import TrialFigures

    return TrialFigures()


@hookimpl(tryfirst=True)  # before the trackers that log its files
def aebench_register_observers(register):
    register("figures", figures)
