"""Built-in models."""

from aebench_plugins.models.ae import AE

from aebench import hookimpl


@hookimpl
def aebench_register_models(register):
    register("ae", AE)
