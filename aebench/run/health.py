"""Training health: what a trained model's row should warn about, rather than average away.

Dead code units (never active on the test split), posterior collapse (no active latent unit),
and a training loss that stopped improving. Each is a line in the row's ``warnings`` column,
shown in the report and at the end of ``aebench run``.

The checks read the test split's code from the trial's metric context (``MetricContext.codes()``)
so that the split is encoded once for them and every metric, not once more here. The contract
makes ``encode`` a latent-variable model's posterior mean, so the same codes count its active
units.
"""

from __future__ import annotations

import torch
from torch import nn

from aebench.contract.data import Data
from aebench.contract.metric import MetricContext
from aebench.contract.model import LatentVariableModel
from aebench.estimators.likelihood import count_active_units

DEAD = 0.05  # a code unit is dead when |a| <= DEAD on every test input


def own_context(model: nn.Module, data: Data) -> MetricContext:
    """A context of its own for a caller without the trial's: its codes are encoded afresh."""
    device = data.test.x.device
    return MetricContext(model, data, {}, device, torch.Generator(device=device))


@torch.no_grad()
def health_warnings(
    model: nn.Module,
    data: Data,
    curves: dict[str, list[float]],
    context: MetricContext | None = None,
) -> list[str]:
    """The warnings of a trained model (in eval mode) and its training curves. ``context``: the
    trial's metric context, whose shared test codes are read (computed there if no metric has
    asked yet); without one, the test split is encoded here."""
    warnings = []
    codes = (context or own_context(model, data)).codes()
    dead = int((codes.abs() <= DEAD).all(dim=0).sum())
    if dead:
        warnings.append(
            f"{dead} of {codes.shape[1]} code units dead (|a| <= {DEAD} on every test input)"
        )
    if isinstance(model, LatentVariableModel) and count_active_units(codes) == 0:
        warnings.append("posterior collapse: no active latent unit")
    losses = curves.get("loss", [])
    if len(losses) >= 4:
        best = min(range(len(losses)), key=losses.__getitem__) + 1
        if best <= len(losses) // 2:
            warnings.append(
                f"the training loss stopped improving after epoch {best} of {len(losses)}"
            )
    return warnings
