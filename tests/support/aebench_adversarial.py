"""A third-party adversarial autoencoder, written against aebench's public contract alone.

It imports nothing of aebench but ``aebench`` itself: the tests register it with
``aebench.load_plugins(extra=[aebench_adversarial])`` and train it through ``aebench.run_suite``.
A deterministic encoder, a decoder, and a discriminator of codes with an optimizer of its own
(the auxiliary hook): the codes are pushed towards N(0, I), as in Makhzani et al. 2016.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from aebench import DataInfo, ModelOutput, hookimpl


class TinyAdversarialAE(nn.Module):
    """A linear autoencoder whose codes a discriminator pushes towards N(0, I) (test plugin)."""

    def __init__(
        self,
        info: DataInfo,
        latent_dim: Annotated[int, Field(ge=1)] = 2,
        weight: Annotated[float, Field(ge=0)] = 1.0,
    ) -> None:
        super().__init__()
        self.info, self.latent_dim, self.weight = info, latent_dim, weight
        size = math.prod(info.shape)
        self.encoder = nn.Linear(size, latent_dim)
        self.decoder = nn.Linear(latent_dim, size)
        self.critic = nn.Sequential(nn.Linear(latent_dim, 16), nn.ReLU(), nn.Linear(16, 1))
        self.auxiliary_optimizer = {"lr": 1e-3}  # its own rate: the trial's is the autoencoder's

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z).view(-1, *self.info.shape)

    def forward(self, x: Tensor) -> ModelOutput:
        code = self.encode(x)
        return ModelOutput(code=code, recon=self.decode(code))

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        fooled = F.softplus(-self.critic(out.code).squeeze(-1))  # -log D(code)
        return (out.recon - x).pow(2).flatten(1).sum(1) + self.weight * fooled

    def auxiliary_parameters(self) -> Iterator[nn.Parameter]:
        return self.critic.parameters()

    def auxiliary_loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        real, fake = self.critic(torch.randn_like(out.code)), self.critic(out.code)
        return (F.softplus(-real) + F.softplus(fake)).squeeze(-1)


@hookimpl
def aebench_register_models(register):
    register("tiny-adversarial-ae", TinyAdversarialAE)
