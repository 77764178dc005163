"""A third-party plugin distribution that needs none of the built-ins: its own dataset, model,
regularizer and metric, written against ``aebench``'s public API alone. Its regularizer declares
itself the default, so that a suite without ``[[regularizers]]`` trains with it when the built-in
``none`` is not installed. The tests install it as a fake distribution (``fake_plugins.py``).
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn

from aebench import Column, Data, DataInfo, Metric, ModelOutput, Regularizer, Split, hookimpl


def blobs(n: Annotated[int, Field(ge=16)] = 256, seed: int = 0) -> Data:
    """Two Gaussian blobs in 8 dimensions: a train and a test split."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-2.0] * 8, [2.0] * 8])

    def split(size: int) -> Split:
        labels = torch.randint(0, 2, (size,), generator=generator)
        return Split(centres[labels] + torch.randn(size, 8, generator=generator), labels)

    return Data(DataInfo(shape=(8,), kind="real", n_classes=2), split(n), split(n // 4))


class LinearAE(nn.Module):
    """A linear autoencoder with a squared-error loss."""

    def __init__(self, info: DataInfo, latent_dim: Annotated[int, Field(ge=1)] = 2) -> None:
        super().__init__()
        self.shape = info.shape
        self.encoder = nn.Linear(math.prod(info.shape), latent_dim)
        self.decoder = nn.Linear(latent_dim, math.prod(info.shape))

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z).view(-1, *self.shape)

    def forward(self, x: Tensor) -> ModelOutput:
        code = self.encode(x)
        return ModelOutput(code=code, recon=self.decode(code))

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        return (out.recon - x).pow(2).flatten(1).sum(1)


class CodeDecay(Regularizer):
    """A small squared-norm penalty on the code: this package's default regularizer."""

    default = True

    def __init__(self, weight: Annotated[float, Field(ge=0)] = 1e-3) -> None:
        self.weight = weight

    def penalty(self, x_in: Tensor, out: ModelOutput, model: nn.Module) -> Tensor:
        return self.weight * out.activations.pow(2).sum(1)


def held_out_error(context) -> dict[str, float]:
    """The mean squared reconstruction error on the test split."""
    x = context.data.test.x
    recon = context.model(x).recon
    return {"held_out_error": (recon - x).pow(2).flatten(1).sum(1).mean().item()}


@hookimpl
def aebench_register_datasets(register):
    register("blobs", blobs)


@hookimpl
def aebench_register_models(register):
    register("linear-ae", LinearAE)


@hookimpl
def aebench_register_regularizers(register):
    register("code-decay", CodeDecay)


@hookimpl
def aebench_register_metrics(register):
    columns = [Column("held_out_error", "lower", description="squared error on the test split")]
    register("held-out-error", Metric(held_out_error, columns=columns))
