"""The undercomplete (or overcomplete) MLP autoencoder."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from aebench import DataInfo, ModelOutput

CodeActivation = Literal["linear", "relu", "sigmoid"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "linear": nn.Identity,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
}


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def reconstruction_loss(x: Tensor, logits: Tensor, kind: str) -> Tensor:
    """Per-sample loss: Bernoulli cross-entropy for data in [0, 1], squared error for real data."""
    if kind == "real":
        return 0.5 * (logits - x).pow(2).flatten(1).sum(1)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return bce.flatten(1).sum(1)


class AE(nn.Module):
    """MLP autoencoder: encoder and decoder with hidden layers, a code of latent_dim units."""

    def __init__(
        self,
        info: DataInfo,
        latent_dim: Annotated[int, Field(ge=1)] = 16,
        hidden: list[Annotated[int, Field(ge=1)]] = (128,),
        code_activation: CodeActivation = "linear",
    ) -> None:
        super().__init__()
        self.info = info
        d = math.prod(info.shape)
        self.encoder = mlp([d, *hidden, latent_dim])
        self.code_activation = _ACTIVATIONS[code_activation]()
        self.decoder = mlp([latent_dim, *reversed(hidden), d])

    def encode(self, x: Tensor) -> Tensor:
        return self.code_activation(self.encoder(x.flatten(1)))

    def _logits(self, z: Tensor) -> Tensor:
        return self.decoder(z).view(-1, *self.info.shape)

    def decode(self, z: Tensor) -> Tensor:
        logits = self._logits(z)
        return logits if self.info.kind == "real" else torch.sigmoid(logits)

    def forward(self, x: Tensor) -> ModelOutput:
        code = self.encode(x)
        logits = self._logits(code)
        recon = logits if self.info.kind == "real" else torch.sigmoid(logits)
        return ModelOutput(code=code, recon=recon, extras={"logits": logits})

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        return reconstruction_loss(x, out.extras["logits"], self.info.kind)
