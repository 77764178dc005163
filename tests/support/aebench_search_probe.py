"""Plugins for the hyperparameter search's tests: a dataset that counts every read of its test
split, and a model whose validation loss has a known best parameter."""

import math
import os
import sys
from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
from pydantic import Field

from aebench import Data, DataInfo, ModelOutput, Split, hookimpl

BEST_KNOB = 3
READS_LOG = "AEBENCH_PROBE_READS"  # a file each read of the test split is written to, when set


@dataclass
class WatchedSplit(Split):
    """A split that counts every read of its tensors (``WatchedSplit.reads``), kept as it is when
    the core moves the data to the CPU."""

    reads: ClassVar[int] = 0

    def __getattribute__(self, name):
        if name in ("x", "y", "factors"):
            type(self).reads += 1
            if log := os.environ.get(READS_LOG):  # another process's reads (a Dask worker's)
                reader = sys._getframe(1).f_globals.get("__name__", "")
                with open(log, "a") as reads:
                    reads.write(f"{os.getpid()} {name} {reader}\n")
        return object.__getattribute__(self, name)

    def to(self, device):
        return self


def watched(n_train: Annotated[int, Field(ge=8)] = 256, with_val: bool = True) -> Data:
    """Gaussian data in 4 dimensions whose test split counts its reads."""
    generator = torch.Generator().manual_seed(0)

    def draw(n):
        return torch.randn(n, 4, generator=generator)

    return Data(
        info=DataInfo(shape=(4,), kind="real"),
        train=Split(draw(n_train)),
        val=Split(draw(64)) if with_val else None,
        test=WatchedSplit(draw(64)),
    )


class Bowl(torch.nn.Module):
    """A linear autoencoder whose loss adds (knob - 3)^2: the best knob is 3, whatever else."""

    def __init__(self, info: DataInfo, knob: Annotated[int, Field(ge=0)] = 0, latent_dim: int = 2):
        super().__init__()
        self.shape, self.penalty = info.shape, float((knob - BEST_KNOB) ** 2)
        self.encoder = torch.nn.Linear(math.prod(info.shape), latent_dim)
        self.decoder = torch.nn.Linear(latent_dim, math.prod(info.shape))

    def encode(self, x):
        return self.encoder(x.flatten(1))

    def decode(self, z):
        return self.decoder(z).view(-1, *self.shape)

    def forward(self, x):
        code = self.encode(x)
        return ModelOutput(code=code, recon=self.decode(code))

    def loss(self, x, out):
        return (out.recon - x).pow(2).flatten(1).mean(1) + self.penalty


@hookimpl
def aebench_register_datasets(register):
    register("watched", watched)


@hookimpl
def aebench_register_models(register):
    register("bowl", Bowl)
