"""A third-party plugin distribution that collides with the built-ins: a metric that writes the
built-in ``recon_mse`` column, a model named ``ae`` like the built-in one, and, registered after
both, a metric and a model of its own that must still load."""

import torch

from aebench import Column, Metric, hookimpl


def my_recon_mse(context) -> dict[str, float]:
    """A reconstruction error that writes a column the built-ins already write."""
    return {"recon_mse": 0.0}


def code_mean(context) -> dict[str, float]:
    """The mean test code."""
    return {"collides_code_mean": context.model.encode(context.data.test.x).mean().item()}


class Identity(torch.nn.Module):
    """A model that shares its name with a built-in (its body does not matter)."""

    def __init__(self, info):
        super().__init__()


@hookimpl
def aebench_register_metrics(register):
    register("my_recon_mse", Metric(my_recon_mse, columns=[Column("recon_mse", "lower")]))
    register("collides_code_mean", Metric(code_mean, columns=[Column("collides_code_mean")]))


@hookimpl
def aebench_register_models(register):
    register("ae", Identity)
    register("collides-own", Identity)
