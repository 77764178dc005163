"""Sparsity penalties on the code (hidden) activations: ``l1`` and ``kl-sparsity``."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn

from aebench import DataInfo, ModelOutput, Regularizer

Weight = Annotated[float, Field(ge=0)]

# rho_hat is clamped this far inside (0, 1): a saturated sigmoid unit would give log(0).
_EDGE = 1e-6


class L1Sparsity(Regularizer):
    """L1 sparsity: weight * sum_i |a_i| over the code activations, per sample."""

    def __init__(self, weight: Weight = 0.1) -> None:
        self.weight = weight

    def penalty(self, x_in: Tensor, out: ModelOutput, model: nn.Module) -> Tensor:
        return self.weight * out.activations.abs().flatten(1).sum(1)


def bernoulli_kl(rho: float, rho_hat: Tensor) -> Tensor:
    """KL(Bernoulli(rho) || Bernoulli(rho_hat)), elementwise."""
    return rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))


class KLSparsity(Regularizer):
    """KL sparsity: weight * sum_j KL(rho || rho_hat_j), rho_hat_j unit j's mean over the batch."""

    def __init__(
        self, rho: Annotated[float, Field(gt=0, lt=1)] = 0.05, weight: Weight = 1.0
    ) -> None:
        self.rho = rho
        self.weight = weight

    def decline(self, model: nn.Module, info: DataInfo) -> str | None:
        # Models state where their code lies as ``code_range`` (see aebench.Autoencoder).
        code_range = getattr(model, "code_range", None)
        if code_range is not None and 0 <= code_range[0] and code_range[1] <= 1:
            return None
        where = "is unbounded" if code_range is None else f"lies in {list(code_range)}"
        return (
            "kl-sparsity needs code activations in (0, 1), such as a sigmoid code"
            f" (code_activation = 'sigmoid'); this model's code {where}"
        )

    def penalty(self, x_in: Tensor, out: ModelOutput, model: nn.Module) -> Tensor:
        rho_hat = out.activations.flatten(1).mean(0).clamp(_EDGE, 1 - _EDGE)
        return self.weight * bernoulli_kl(self.rho, rho_hat).sum()  # one number for the batch
