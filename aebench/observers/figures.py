"""Each trial's figures under ``<output>/trials/<trial_id>/`` (see ``aebench.figures``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aebench.contract.hookspecs import hookimpl

if TYPE_CHECKING:
    from aebench.run.observing import SuiteObserver
    from aebench.run.suite import Suite


def figures(suite: Suite, per_seed: bool = False, background: bool = True) -> SuiteObserver:
    """Figures of a trial: latent scatter, reconstructions, prior samples, latent traversals
    and interpolations (latent-variable models), loss curves.

    ``per_seed``: every trial's; false, one seed's per configuration (the first to finish), which
    the report shows. ``background``: drawn in a worker process while the next trial trains (the
    run waits for the last at its end); false, here, as each trial ends."""
    if background:
        from aebench.observers.background_figures import BackgroundFigures

        return BackgroundFigures(per_seed=per_seed)
    from aebench.observers.trial_figures import TrialFigures

    return TrialFigures(per_seed=per_seed)


@hookimpl(tryfirst=True)  # before the trackers that log its files
def aebench_register_observers(register):
    register("figures", figures)
