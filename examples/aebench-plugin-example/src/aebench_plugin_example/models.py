"""A tied-weights autoencoder: the decoder is the transpose of the encoder."""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from aebench import DataInfo, ModelOutput


class TiedAutoencoder(nn.Module):
    """Tied-weights autoencoder: one weight matrix W, code sigmoid(W x + b), decoder W^T."""

    code_range = (0.0, 1.0)  # sigmoid codes: the KL-sparsity regularizer accepts this model

    def __init__(self, info: DataInfo, latent_dim: Annotated[int, Field(ge=1)] = 32) -> None:
        super().__init__()
        self.shape = info.shape
        self.real = info.kind == "real"
        size = math.prod(info.shape)
        self.weight = nn.Parameter(torch.randn(latent_dim, size) / math.sqrt(size))
        self.code_bias = nn.Parameter(torch.zeros(latent_dim))
        self.output_bias = nn.Parameter(torch.zeros(size))

    def encode(self, x: Tensor) -> Tensor:
        return torch.sigmoid(F.linear(x.flatten(1), self.weight, self.code_bias))

    def _logits(self, code: Tensor) -> Tensor:
        return F.linear(code, self.weight.t(), self.output_bias).view(-1, *self.shape)

    def decode(self, z: Tensor) -> Tensor:
        logits = self._logits(z)
        return logits if self.real else torch.sigmoid(logits)

    def forward(self, x: Tensor) -> ModelOutput:
        code = self.encode(x)
        logits = self._logits(code)
        recon = logits if self.real else torch.sigmoid(logits)
        return ModelOutput(code=code, recon=recon, extras={"logits": logits})

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        """Per sample: squared error for real data, Bernoulli cross-entropy for [0, 1] data."""
        logits = out.extras["logits"]
        if self.real:
            return 0.5 * (logits - x).pow(2).flatten(1).sum(1)
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
