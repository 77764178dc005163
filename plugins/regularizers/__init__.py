"""Built-in regularizers."""

from aebench import Regularizer, hookimpl


class NoRegularizer(Regularizer):
    """No corruption and no penalty: the plain training objective."""


@hookimpl
def aebench_register_regularizers(register):
    register("none", NoRegularizer)
