"""The ``[search]`` section of a suite: what is the same for every configuration's search (its
budget, sampler, pruner, seed and objective). Apart from the spaces (``aebench.run.search_space``)
so that reading a suite imports no Optuna: a run without a search never loads it (0.16 s).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from aebench.run.sections import SuiteSpec

DEFAULT_TRIALS = 20
# The seed every search trial trains at: none of the suite's seeds, so that no row of the
# leaderboard is the search trial its parameters were picked by (the last seed numpy takes).
SEARCH_TRIAL_SEED = 2**32 - 1


class SearchSection(BaseModel):
    """``[search]``: one budget, sampler, pruner and objective for every configuration."""

    model_config = ConfigDict(extra="forbid", strict=True)
    # The budget per configuration, one of the two: trials, or seconds of training.
    trials: Annotated[int, Field(ge=1)] | None = None
    budget_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    pruner: Literal["none", "median", "hyperband"] = "none"  # on each epoch's validation loss
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0  # the sampler's
    # The seed the search trials train at: one the leaderboard does not use (a suite error if
    # [suite] seeds has it). At the suite's first seed, that seed's row of the leaderboard was the
    # search trial that won, trained again: its validation luck, picked, counted as a sample.
    trial_seed: Annotated[int, Field(ge=0, lt=2**32)] = SEARCH_TRIAL_SEED
    # A declared column measured on the validation split: best_val_loss, or a metric's column.
    objective: str = "best_val_loss"
    train: dict[str, Any] = {}  # [train] settings searched: name -> space

    @pydantic.model_validator(mode="after")
    def _one_budget(self) -> SearchSection:
        if self.trials is not None and self.budget_s is not None:
            raise ValueError("give the budget as trials or as budget_s, not both")
        return self

    @property
    def budget_trials(self) -> int | None:
        """Trials per configuration (the default when no budget is given), or None (seconds)."""
        if self.budget_s is not None:
            return None
        return self.trials if self.trials is not None else DEFAULT_TRIALS


def tunes(spec: SuiteSpec) -> bool:
    """Whether a suite searches anything: a ``[search]``, or a space written on an entry (a
    mistake without one). Only then does a run import Optuna."""
    entries = [*spec.datasets, *spec.models, *(spec.regularizers or [])]
    return spec.search is not None or any(entry.search for entry in entries)
