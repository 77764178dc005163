"""A third-party plugin distribution for the contract tests, installed as a fake distribution
(see ``fake_plugins.py``): a metric that declares itself, an observer that logs every finished
trial, and a model that breaks down in training."""

import json
import math
from typing import Annotated

import torch
from pydantic import Field

from aebench import Column, Metric, ModelOutput, SuiteObserver, hookimpl


def code_spread(context, scale: Annotated[float, Field(gt=0)] = 1.0) -> dict[str, float]:
    """The spread of the test codes (std over inputs, averaged over units), times ``scale``."""
    codes = context.model.encode(context.data.test.x).flatten(1)
    return {"code_spread": scale * codes.std(0).mean().item()}


class TrialLog(SuiteObserver):
    """Appends one JSON line per finished trial to ``<output>/trial-log.jsonl``."""

    def suite_started(self, suite, output, trials):
        self.path = output / "trial-log.jsonl"

    def trial_finished(self, trial, row, outcome):
        line = {"trial_id": trial.id, "status": row["status"], "trained": outcome.model is not None}
        with self.path.open("a") as log:
            log.write(json.dumps(line) + "\n")


def trial_log(suite):
    """A JSON line per finished trial."""
    return TrialLog()


class Exploding(torch.nn.Module):
    """A linear autoencoder whose loss raises after a few training steps."""

    def __init__(self, info, latent_dim: int = 2):
        super().__init__()
        self.shape, self.calls = info.shape, 0
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
        self.calls += 1
        if self.calls > 3:  # past the first-batch check, in the middle of training
            torch.ones(2, 3) @ torch.ones(2, 3)  # a bare torch error: shapes cannot be multiplied
        return (out.recon - x).pow(2).flatten(1).sum(1)


@hookimpl
def aebench_register_metrics(register):
    columns = [Column("code_spread", "higher", floor=0.05, description="std of the codes")]
    register("code_spread", Metric(code_spread, columns=columns))


@hookimpl
def aebench_register_observers(register):
    register("trial-log", trial_log)


@hookimpl
def aebench_register_models(register):
    register("exploding", Exploding)
