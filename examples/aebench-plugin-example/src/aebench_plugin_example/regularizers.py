"""An activity penalty: weight * ||a||^2, the squared L2 norm of each sample's code."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from torch import Tensor, nn

from aebench import ModelOutput, Regularizer


class CodeL2(Regularizer):
    """Code L2: weight * sum_i a_i^2 over each sample's code activations."""

    def __init__(self, weight: Annotated[float, Field(ge=0)] = 0.01) -> None:
        self.weight = weight

    def penalty(self, x_in: Tensor, out: ModelOutput, model: nn.Module) -> Tensor:
        return self.weight * out.activations.pow(2).flatten(1).sum(1)
