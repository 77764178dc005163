"""Built-in datasets."""

from aebench_plugins.datasets.digits import digits

from aebench import hookimpl


@hookimpl
def aebench_register_datasets(register):
    register("digits", digits)
