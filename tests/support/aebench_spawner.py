"""A third-party plugin for the isolated-trial tests: slow to load, and one that starts processes.

- dataset ``slow_blobs``: two Gaussian blobs that take ``load_s`` seconds to load in a trial's
  own process (an isolated trial's child), as from a slow disk; the run's process loads them at
  once, so that only the child's start-up is slow.
- model ``spawner``: a linear autoencoder that, when it starts training, starts ``sleep 300`` as
  a library might start a helper (same process group, nothing detached), leaves a file
  ``sleep-<pid>`` in ``$MARKERS``, and then (``hang = true``) never returns from its step.

Installed as a fake distribution (``fake_plugins.py``) so that an isolated trial's child finds it.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pathlib
import subprocess
import time

import torch
from torch import Tensor, nn

from aebench import Data, DataInfo, ModelOutput, Split, hookimpl

_started: list[subprocess.Popen] = []  # kept, so that none is collected (and warned of) running


def slow_blobs(load_s: float = 0.0, n: int = 128) -> Data:
    """Two Gaussian blobs in 8 dimensions, ``load_s`` seconds to load in a trial's process."""
    if multiprocessing.parent_process() is not None:  # the isolated trial's child
        time.sleep(load_s)
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-2.0] * 8, [2.0] * 8])

    def split(size: int) -> Split:
        labels = torch.randint(0, 2, (size,), generator=generator)
        return Split(centres[labels] + torch.randn(size, 8, generator=generator), labels)

    return Data(DataInfo(shape=(8,), kind="real", n_classes=2), split(n), split(n // 4))


class Spawner(nn.Module):
    """A linear autoencoder that starts ``sleep 300`` when it starts training."""

    def __init__(self, info: DataInfo, spawn: bool = False, hang: bool = False) -> None:
        super().__init__()
        self.shape, self.spawn, self.hang = info.shape, spawn, hang
        self.encoder = nn.Linear(math.prod(info.shape), 2)
        self.decoder = nn.Linear(2, math.prod(info.shape))
        self.spawned = False

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z).view(-1, *self.shape)

    def forward(self, x: Tensor) -> ModelOutput:
        if self.training and self.spawn and not self.spawned:
            _started.append(subprocess.Popen(["sleep", "300"]))
            self.spawned = True
            if os.environ.get("MARKERS"):
                pathlib.Path(os.environ["MARKERS"], f"sleep-{_started[-1].pid}").touch()
        if self.training and self.hang:
            time.sleep(3600)
        code = self.encode(x)
        return ModelOutput(code=code, recon=self.decode(code))

    def loss(self, x: Tensor, out: ModelOutput) -> Tensor:
        return (out.recon - x).pow(2).flatten(1).sum(1)


@hookimpl
def aebench_register_datasets(register):
    register("slow_blobs", slow_blobs)


@hookimpl
def aebench_register_models(register):
    register("spawner", Spawner)
