"""A third-party plugin distribution written for the v1 contract: its metric is a plain function,
``compute(context, **params) -> {column: number}``, registered without declaring its columns."""

from aebench import hookimpl


def code_energy(context, scale: float = 1.0) -> dict[str, float]:
    """The mean squared test code, times ``scale``."""
    codes = context.model.encode(context.data.test.x).flatten(1)
    return {"code_energy": scale * codes.pow(2).mean().item()}


@hookimpl
def aebench_register_metrics(register):
    register("code_energy", code_energy)
