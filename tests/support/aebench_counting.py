"""A plugin for the tests of what measuring costs: a model whose ``encode`` records every call,
and metrics that count their own calls, one of them expensive with no requirement (so not among
the default metrics) and one expensive that asks for data with factors.

Counts are kept in this module's ``CALLS`` (metric name -> calls) and ``ENCODED`` (one entry per
``encode`` call: its number of inputs and whether it ran in inference mode); ``reset()`` empties
them.
"""

from __future__ import annotations

import math
import time
from collections import Counter

import torch

from aebench import Column, Metric, MetricContext, ModelOutput, hookimpl

CALLS: Counter[str] = Counter()
ENCODED: list[tuple[int, bool]] = []  # (inputs, in inference mode) per encode call


def reset() -> None:
    CALLS.clear()
    ENCODED.clear()


class CountingAE(torch.nn.Module):
    """A linear autoencoder that records each ``encode`` call in ``ENCODED``."""

    def __init__(self, info, latent_dim: int = 2):
        super().__init__()
        self.shape = info.shape
        self.encoder = torch.nn.Linear(math.prod(info.shape), latent_dim)
        self.decoder = torch.nn.Linear(latent_dim, math.prod(info.shape))

    def encode(self, x):
        ENCODED.append((len(x), torch.is_inference_mode_enabled()))
        return self.encoder(x.flatten(1))

    def decode(self, z):
        return self.decoder(z).view(-1, *self.shape)

    def forward(self, x):
        code = self.encoder(x.flatten(1))  # not counted: training is not measuring
        return ModelOutput(code=code, recon=self.decode(code))

    def loss(self, x, out):
        return (out.recon - x).pow(2).flatten(1).sum(1)


def counted_mean(context: MetricContext, scale: float = 1.0) -> dict[str, float]:
    """The mean test code, times ``scale`` (counts its calls)."""
    CALLS["counted_mean"] += 1
    return {"counted_mean": scale * context.codes().mean().item()}


def counted_spread(context: MetricContext) -> dict[str, float]:
    """The spread of the test codes (counts its calls)."""
    CALLS["counted_spread"] += 1
    return {"counted_spread": context.codes().std().item()}


SLOW_S = 0.3


def slow_metric(context: MetricContext) -> dict[str, float]:
    """Sleeps ``SLOW_S`` seconds: an expensive metric that requires nothing."""
    CALLS["slow_metric"] += 1
    time.sleep(SLOW_S)
    return {"slow_value": 1.0}


def factor_hungry(context: MetricContext) -> dict[str, float]:
    """An expensive metric for data with ground-truth factors."""
    CALLS["factor_hungry"] += 1
    return {"factor_value": 1.0}


METRICS = {
    "counted_mean": Metric(counted_mean, columns=[Column("counted_mean")]),
    "counted_spread": Metric(counted_spread, columns=[Column("counted_spread")]),
    "slow_metric": Metric(slow_metric, columns=[Column("slow_value")], cost="expensive"),
    "factor_hungry": Metric(
        factor_hungry,
        columns=[Column("factor_value")],
        requires=["ground-truth factors"],
        cost="expensive",
    ),
}


@hookimpl
def aebench_register_metrics(register):
    for name, metric in METRICS.items():
        register(name, metric)


@hookimpl
def aebench_register_models(register):
    register("counting-ae", CountingAE)
