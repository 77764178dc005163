"""A third-party model plugin that misbehaves on request, for the fault and resume tests.

Tests install it as a fake distribution (see ``fake_plugins.py``) and run it in subprocesses:
it sleeps in every training step, leaves a file named ``<sleepy|killer>-<pid>`` in ``$MARKERS``
when it starts training (so a test knows a trial is under way, and in which process), and with
``kill`` set it sends its own process that signal (``"exit"``: calls ``sys.exit(3)``).
"""

import math
import os
import pathlib
import signal
import time
from typing import Literal

import torch

from aebench import ModelOutput, hookimpl


class Fragile(torch.nn.Module):
    """A linear autoencoder that sleeps in every step, and may kill its own process."""

    def __init__(
        self,
        info,
        latent_dim: int = 2,
        delay: float = 0.05,
        kill: Literal["none", "SIGSEGV", "SIGKILL", "exit"] = "none",
        noise: float = 0.0,
    ):
        super().__init__()
        self.shape, self.delay, self.kill, self.noise = info.shape, delay, kill, noise
        self.encoder = torch.nn.Linear(math.prod(info.shape), latent_dim)
        self.decoder = torch.nn.Linear(latent_dim, math.prod(info.shape))

    def encode(self, x):
        return self.encoder(x.flatten(1))

    def decode(self, z):
        return torch.sigmoid(self.decoder(z)).view(-1, *self.shape)

    def forward(self, x):
        if self.training:
            if os.environ.get("MARKERS"):
                kind = "sleepy" if self.kill == "none" else "killer"
                pathlib.Path(os.environ["MARKERS"], f"{kind}-{os.getpid()}").touch()
            if self.kill == "exit":  # a plugin's own sys.exit
                raise SystemExit(3)
            if self.kill != "none":
                os.kill(os.getpid(), getattr(signal, self.kill))
            time.sleep(self.delay)
        code = self.encode(x)
        if self.training and self.noise:  # drawn from torch's global stream, as a VAE's samples
            code = code + self.noise * torch.randn_like(code)
        return ModelOutput(code=code, recon=self.decode(code))

    def loss(self, x, out):
        return (out.recon - x).pow(2).flatten(1).sum(1)


@hookimpl
def aebench_register_models(register):
    register("fragile", Fragile)
