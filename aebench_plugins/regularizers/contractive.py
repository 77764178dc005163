"""The contractive autoencoder's penalty (Rifai et al. 2011): weight * ||J_f(x)||_F^2.

J_f(x) is the Jacobian of the encoder (``model.encode``) at one sample. It is computed exactly with
torch.func (a vmap of jacrev: one backward pass per code unit) when the code has at most
EXACT_MAX_CODE units, and above that by the unbiased random-projection estimate
||J||_F^2 = E_v ||v^T J||^2, v ~ N(0, I), averaged over ``projections`` draws of v (one
vector-Jacobian product each), so its cost does not grow with the code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.func import jacrev, vjp, vmap

from aebench import ModelOutput, Regularizer

EXACT_MAX_CODE = 32

Encoder = Callable[[Tensor], Tensor]


def jacobian_norm_exact(encode: Encoder, x: Tensor) -> Tensor:
    """||J_f(x_b)||_F^2 per sample b, (B,), exactly; differentiable in the encoder's weights."""

    def one(sample: Tensor) -> Tensor:
        return encode(sample.unsqueeze(0)).squeeze(0)

    jacobians = vmap(jacrev(one))(x)  # (B, latent, *shape)
    return jacobians.pow(2).flatten(1).sum(1)


def jacobian_norm_estimate(encode: Encoder, x: Tensor, projections: int = 1) -> Tensor:
    """An unbiased estimate of ||J_f(x_b)||_F^2 per sample, (B,), from random projections.

    The encoder must treat samples independently (no batch statistics), so that one batched
    vector-Jacobian product gives every sample's v_b^T J_f(x_b).
    """
    code, pullback = vjp(encode, x)
    total = torch.zeros(len(x), device=x.device, dtype=x.dtype)
    for _ in range(projections):
        (projected,) = pullback(torch.randn_like(code))
        total = total + projected.pow(2).flatten(1).sum(1)
    return total / projections


class Contractive(Regularizer):
    """Contractive: weight * ||J||_F^2 of the encoder; exact up to 32 code units, else estimated."""

    def __init__(
        self,
        weight: Annotated[float, Field(ge=0)] = 0.1,
        method: Literal["auto", "exact", "estimate"] = "auto",
        projections: Annotated[int, Field(ge=1)] = 1,
    ) -> None:
        self.weight = weight
        self.method = method
        self.projections = projections

    def penalty(self, x_in: Tensor, out: ModelOutput, model: nn.Module) -> Tensor:
        exact = self.method == "exact" or (
            self.method == "auto" and out.code.shape[-1] <= EXACT_MAX_CODE
        )
        if exact:
            return self.weight * jacobian_norm_exact(model.encode, x_in)
        return self.weight * jacobian_norm_estimate(model.encode, x_in, self.projections)
