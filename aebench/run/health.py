"""Training health: what a trained model's row should warn about, rather than average away.

Dead code units (never active on the test split), posterior collapse (no active latent unit),
and a training loss that stopped improving. Each is a line in the row's ``warnings`` column,
shown in the report and at the end of ``aebench run``.
"""

from __future__ import annotations

import torch
from torch import nn

from aebench.contract.data import Data
from aebench.contract.model import LatentVariableModel
from aebench.estimators.likelihood import count_active_units, posterior_means

DEAD = 0.05  # a code unit is dead when |a| <= DEAD on every test input
EVAL_BATCH = 1024


@torch.no_grad()
def health_warnings(model: nn.Module, data: Data, curves: dict[str, list[float]]) -> list[str]:
    """The warnings of a trained model (in eval mode) and its training curves."""
    warnings = []
    x = data.test.x
    codes = torch.cat([model.encode(b).flatten(1) for b in x.split(EVAL_BATCH)])
    dead = int((codes.abs() <= DEAD).all(dim=0).sum())
    if dead:
        warnings.append(
            f"{dead} of {codes.shape[1]} code units dead (|a| <= {DEAD} on every test input)"
        )
    if (
        isinstance(model, LatentVariableModel)
        and count_active_units(posterior_means(model, x)) == 0
    ):
        warnings.append("posterior collapse: no active latent unit")
    losses = curves.get("loss", [])
    if len(losses) >= 4:
        best = min(range(len(losses)), key=losses.__getitem__) + 1
        if best <= len(losses) // 2:
            warnings.append(
                f"the training loss stopped improving after epoch {best} of {len(losses)}"
            )
    return warnings
