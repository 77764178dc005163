"""A third-party plugin that takes its time, for the timeout and SIGTERM tests.

- model ``hangs``: a linear autoencoder whose training steps sleep ``step_s``, hang for good
  (``hang = true``: a call that never returns, as a deadlocked library call), or spend their time
  in a destructor (``del_s``: where a signal handler's exception is swallowed, "Exception ignored
  in ..."). When it starts training it leaves a file ``hangs-<pid>`` in ``$MARKERS``, if set, so
  a test knows which process trains it.
- metric ``sleepy``: sleeps ``seconds``, then measures nothing of interest.

Tests import it directly (in-process) or install it as a fake distribution (``fake_plugins.py``)
for subprocesses and isolated trials.
"""

import math
import os
import pathlib
import time

import torch

from aebench import Column, Metric, ModelOutput, hookimpl


class _Slow:
    """An object whose destructor takes ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __del__(self) -> None:
        time.sleep(self.seconds)


class Hangs(torch.nn.Module):
    """A linear autoencoder whose training steps take as long as asked, or forever."""

    def __init__(
        self,
        info,
        latent_dim: int = 2,
        step_s: float = 0.0,
        hang: bool = False,
        del_s: float = 0.0,
    ):
        super().__init__()
        self.shape, self.step_s, self.hang, self.del_s = info.shape, step_s, hang, del_s
        self.encoder = torch.nn.Linear(math.prod(info.shape), latent_dim)
        self.decoder = torch.nn.Linear(latent_dim, math.prod(info.shape))
        self.marked = False

    def encode(self, x):
        return self.encoder(x.flatten(1))

    def decode(self, z):
        return torch.sigmoid(self.decoder(z)).view(-1, *self.shape)

    def forward(self, x):
        if self.training:
            if os.environ.get("MARKERS") and not self.marked:
                pathlib.Path(os.environ["MARKERS"], f"hangs-{os.getpid()}").touch()
                self.marked = True
            if self.hang:
                time.sleep(3600)
            time.sleep(self.step_s)
            if self.del_s:
                _Slow(self.del_s)  # dropped at once: the time goes by in its destructor
        code = self.encode(x)
        return ModelOutput(code=code, recon=self.decode(code))

    def loss(self, x, out):
        return (out.recon - x).pow(2).flatten(1).sum(1)


def sleepy(context, seconds: float = 1.0) -> dict[str, float]:
    """Sleeps, then measures nothing of interest."""
    time.sleep(seconds)
    return {"sleepy": 0.0}


@hookimpl
def aebench_register_models(register):
    register("hangs", Hangs)


@hookimpl
def aebench_register_metrics(register):
    register("sleepy", Metric(sleepy, columns=[Column("sleepy")]))
